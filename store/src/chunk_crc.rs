//! Chunk CRCs: the CRC-32 of each `CHUNK`-sized run of a blob's bytes (the last run may be
//! shorter), taken while the blob is written and kept in its `blobs` record.
//!
//! Why: a push gzips a plain layer tar into one gzip member per `CHUNK` of the tar
//! (`archive::gzip`), and every member's trailer carries the CRC-32 of its chunk, computed
//! anyway. Comparing those with the CRCs taken when the tar was written checks that the
//! tar being compressed is the tar that was written, without hashing it again: sha256 of
//! the tar is the largest single cost of a first push (docs/design.md §4.4), CRC-32 runs
//! about six times faster. A CRC catches damage (a flipped bit, a torn or truncated file,
//! another file in the blob's place), not a forgery made to match; whoever can forge the
//! blob can rewrite the record too. `system verify` still re-hashes every blob.

use serde::{Deserialize, Serialize};

use crate::archive::gzip::CHUNK;

/// A blob's chunk CRCs as recorded (`BlobRecord::chunk_crc32`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCrc32 {
    /// The length of every run but the last: `CHUNK` when recorded. Records made with
    /// another length are not used (`ChunkCrc32::for_blob`).
    pub chunk: u64,
    /// One CRC-32 (gzip's, ISO-HDLC) per run, in order.
    pub crcs: Vec<u32>,
}

impl ChunkCrc32 {
    /// The CRCs, if they describe a blob of `size` bytes cut at `CHUNK`: one per run, at
    /// least one byte long.
    pub fn for_blob(&self, size: u64) -> Option<&[u32]> {
        let runs = size.div_ceil(CHUNK as u64);
        (size > 0 && self.chunk == CHUNK as u64 && self.crcs.len() as u64 == runs)
            .then_some(&self.crcs[..])
    }
}

/// Takes chunk CRCs of bytes as they are written, in pieces of any length.
#[derive(Debug, Default)]
pub struct ChunkCrcs {
    done: Vec<u32>,
    /// The CRC of the current run so far, and its length.
    crc: u32,
    len: usize,
}

impl ChunkCrcs {
    pub fn new() -> ChunkCrcs {
        ChunkCrcs::default()
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = bytes.len().min(CHUNK - self.len);
            self.crc = zlib_rs::crc32::crc32(self.crc, &bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            if self.len == CHUNK {
                self.done.push(self.crc);
                (self.crc, self.len) = (0, 0);
            }
        }
    }

    /// The chunk CRCs of `bytes`, whole.
    pub fn of(bytes: &[u8]) -> ChunkCrc32 {
        let mut crcs = ChunkCrcs::new();
        crcs.update(bytes);
        crcs.finish()
    }

    pub fn finish(mut self) -> ChunkCrc32 {
        if self.len > 0 {
            self.done.push(self.crc);
        }
        ChunkCrc32 {
            chunk: CHUNK as u64,
            crcs: self.done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_cut_at_chunk_whatever_the_pieces() {
        let data: Vec<u8> = (0..CHUNK * 2 + 1000).map(|i| (i * 7 % 251) as u8).collect();
        let whole = ChunkCrcs::of(&data);
        let pieces = {
            let mut c = ChunkCrcs::new();
            for piece in data.chunks(12_345) {
                c.update(piece);
            }
            c.finish()
        };
        assert_eq!(whole, pieces);
        let want: Vec<u32> = data
            .chunks(CHUNK)
            .map(|run| zlib_rs::crc32::crc32(0, run))
            .collect();
        assert_eq!(whole.crcs, want);
        assert_eq!(whole.for_blob(data.len() as u64), Some(&want[..]));
        assert_eq!(whole.for_blob(data.len() as u64 + CHUNK as u64), None);
        let other_cut = ChunkCrc32 {
            chunk: CHUNK as u64 / 2,
            ..whole.clone()
        };
        assert_eq!(other_cut.for_blob(data.len() as u64), None);
    }

    #[test]
    fn an_empty_blob_has_no_runs() {
        let crcs = ChunkCrcs::new().finish();
        assert!(crcs.crcs.is_empty());
        assert_eq!(crcs.for_blob(0), None);
    }
}
