//! `BlobWriter`: the only way content enters `blobs/`.
//!
//! A blob's life: `Store::writer(lease)` creates `ingest/<random>`; `write` streams
//! bytes into it while hashing; `commit(size, digest)` checks both against what the
//! caller promised, adds the digest to the writer's lease, fsyncs, renames to
//! `blobs/sha256/<hex>`, fsyncs the directory and records `{size, media type, added
//! at}` in the metadata, with the blob's chunk CRCs when the writer was asked to take them
//! (`with_chunk_crcs`, `chunk_crc`). Until commit the content is
//! invisible to every reader. Commit always consumes the writer; on any error the
//! temp file is removed. Dropping an uncommitted writer (or `abort`) removes it too.
//!
//! Lease before rename: GC never sees the blob unprotected, from the moment it exists
//! until the caller's record or tag refers to it and the lease is dropped (`lease`).
//! Rename before recording in the metadata: a crash leaves an unreferenced blob (GC sweeps
//! it), never a record of a missing one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use crate::chunk_crc::ChunkCrcs;
use crate::digest::{Digest, Sha256Writer};
use crate::error::{Result, StoreError};
use crate::layout::{fsync_dir, unique_name};
use crate::media_types;
use crate::{meta, Descriptor, Lease, Store};

const BUFFER: usize = 1 << 20;

/// Streams one blob into the store. See the module doc for its contract.
pub struct BlobWriter {
    store: Store,
    lease: Lease,
    path: PathBuf,
    out: Option<Sha256Writer<BufWriter<File>>>,
    media_type: String,
    /// Bytes `write_behind` has asked the disk to take so far.
    writeback_from: u64,
    /// Taken while written when asked for (`with_chunk_crcs`), recorded by `commit`.
    chunk_crcs: Option<ChunkCrcs>,
}

impl BlobWriter {
    pub(crate) fn create(store: &Store, lease: &Lease) -> Result<BlobWriter> {
        let dir = store.layout().ingest_dir();
        let path = dir.join(unique_name(""));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io("creating ingest file", &path))?;
        Ok(BlobWriter {
            store: store.clone(),
            lease: lease.clone(),
            path,
            out: Some(Sha256Writer::new(BufWriter::with_capacity(BUFFER, file))),
            media_type: media_types::OCTET_STREAM.to_string(),
            writeback_from: 0,
            chunk_crcs: None,
        })
    }

    /// The media type recorded for the blob and returned in its descriptor.
    pub fn set_media_type(&mut self, media_type: &str) {
        self.media_type = media_type.to_string();
    }

    /// Builder form of `set_media_type`.
    pub fn with_media_type(mut self, media_type: &str) -> Self {
        self.set_media_type(media_type);
        self
    }

    /// Takes the blob's chunk CRCs while it is written and records them with it
    /// (`commit`; `commit_unrecorded` drops them): for a plain layer tar that a push may
    /// gzip later (`chunk_crc`). Asked for before the first byte.
    pub fn with_chunk_crcs(mut self) -> Self {
        debug_assert_eq!(self.written(), 0, "chunk CRCs start at the first byte");
        self.chunk_crcs = Some(ChunkCrcs::new());
        self
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.as_ref().map(|o| o.written()).unwrap_or(0)
    }

    /// The digest of every byte written so far (hashed as written: no flush, no read).
    pub fn digest_so_far(&self) -> Digest {
        self.out
            .as_ref()
            .expect("writer is live until commit")
            .digest_so_far()
    }

    /// Flushes what is written, starts writing it back to disk without waiting
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on the bytes not yet asked for), and,
    /// if `drop_written`, drops from the page cache what earlier calls started writing
    /// back and the disk has taken (`posix_fadvise(POSIX_FADV_DONTNEED)`, which leaves
    /// dirty pages and pages still being written alone; the next call tries them again).
    ///
    /// For a large blob: the commit's fsync finds little left to wait for, instead of
    /// every dirty page at once. With `drop_written`, for one this process does not read
    /// again soon (the gzip form a push streams as it makes it), the blob's bytes take a
    /// few megabytes of page cache, reused from call to call, rather than fresh memory
    /// for all of them. Fresh memory is what
    /// costs: on this project's VM, writing 280 MB into page cache took 0.07 s when the
    /// pages had just been used and 0.5–1.0 s after a few idle seconds, and `perf` of a
    /// first push put 0.33 s of its CPU in that copy. Durability is still the commit's
    /// fsync; both calls are hints, so a file system that refuses them costs nothing
    /// more: only the flush can fail.
    pub fn write_behind(&mut self, drop_written: bool) -> io::Result<()> {
        let out = self.out.as_mut().expect("writer is live until commit");
        out.flush()?;
        let written = out.written();
        let (from, len) = (self.writeback_from, written - self.writeback_from);
        if len == 0 {
            return Ok(());
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(out.get_ref().get_ref());
        // SAFETY: `fd` is the open ingest file this writer owns; neither call reads or
        // writes memory of ours. Their results are hints' results: ignored (see above).
        unsafe {
            let _ = libc::sync_file_range(
                fd,
                from as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
            if drop_written {
                let _ = libc::posix_fadvise(fd, 0, from as libc::off_t, libc::POSIX_FADV_DONTNEED);
            }
        }
        self.writeback_from = written;
        Ok(())
    }

    /// The temp file being written (for error messages).
    pub fn ingest_path(&self) -> &std::path::Path {
        &self.path
    }

    /// Verifies, makes durable, publishes and records the blob; see the module doc.
    /// An existing blob with the same digest is not rewritten (the call succeeds).
    pub fn commit(
        mut self,
        expected_size: Option<u64>,
        expected: Option<&Digest>,
    ) -> Result<Descriptor> {
        let store = self.store.clone();
        let chunk_crc32 = self.chunk_crcs.take().map(ChunkCrcs::finish);
        let desc = self.commit_unrecorded(expected_size, expected)?;
        meta::record_blobs_with(&store, [(&desc, chunk_crc32)])?;
        Ok(desc)
    }

    /// Like `commit` but leaves the metadata record to the caller, who batches many
    /// blobs into one `Store::record_blobs` transaction (load, pull). A blob whose
    /// record is never written is still valid content; GC treats it as unreferenced.
    pub fn commit_unrecorded(
        self,
        expected_size: Option<u64>,
        expected: Option<&Digest>,
    ) -> Result<Descriptor> {
        self.commit_inner(expected_size, expected).map(|(d, _)| d)
    }

    /// `commit_unrecorded` that also says whether this call created the blob
    /// (`false`: it already existed), so a failed load can remove only its own.
    pub(crate) fn commit_inner(
        mut self,
        expected_size: Option<u64>,
        expected: Option<&Digest>,
    ) -> Result<(Descriptor, bool)> {
        let out = self.out.take().expect("commit consumes the writer once");
        let (buf, digest, size) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| StoreError::io("writing", &self.path)(e.into_error()))?;
        if let Some(want) = expected_size {
            if want != size {
                return Err(StoreError::SizeMismatch {
                    path: self.path.clone(),
                    expected: want,
                    actual: size,
                });
            }
        }
        if let Some(want) = expected {
            if *want != digest {
                return Err(StoreError::DigestMismatch {
                    path: self.path.clone(),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let desc = Descriptor {
            media_type: self.media_type.clone(),
            digest: digest.clone(),
            size,
        };
        // Lease first, then check and publish: from here on no GC removes the blob,
        // whether it exists already or appears with the rename below.
        self.lease.add_digest(&digest)?;
        let target = self.store.blob_path(&digest);
        if target.exists() {
            return Ok((desc, false)); // Drop removes the temp file.
        }
        file.sync_all()
            .map_err(StoreError::io("fsync", &self.path))?;
        drop(file);
        fs::rename(&self.path, &target).map_err(StoreError::io("renaming into place", &target))?;
        self.path = PathBuf::new(); // renamed: nothing left for Drop to remove
        fsync_dir(&self.store.layout().blobs_dir())?;
        Ok((desc, true))
    }

    /// Drops the partial blob. Same as dropping the writer.
    pub fn abort(self) {}
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .out
            .as_mut()
            .expect("writer is live until commit")
            .write(buf)?;
        if let Some(crcs) = self.chunk_crcs.as_mut() {
            crcs.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out
            .as_mut()
            .expect("writer is live until commit")
            .flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        self.out.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn lease(store: &Store) -> crate::Lease {
        store.lease(std::time::Duration::from_secs(60)).unwrap()
    }

    fn entries(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_rejects_wrong_digest_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut w = store.writer(&lease(&store)).unwrap();
        w.write_all(b"payload").unwrap();
        let wrong = Digest::sha256_of(b"something else");
        let err = w.commit(None, Some(&wrong)).unwrap_err();
        assert!(
            matches!(&err, StoreError::DigestMismatch { expected, actual, .. }
                if *expected == wrong && *actual == Digest::sha256_of(b"payload")),
            "{err}"
        );
        assert!(entries(&store.layout().ingest_dir()).is_empty());
        assert!(entries(&store.layout().blobs_dir()).is_empty());
        assert!(!store.has_blob(&Digest::sha256_of(b"payload")));
        assert!(crate::meta::read(&store, |m| m.all(meta::BLOBS))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn commit_rejects_wrong_size() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut w = store.writer(&lease(&store)).unwrap();
        w.write_all(b"payload").unwrap();
        let err = w.commit(Some(3), None).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SizeMismatch {
                    expected: 3,
                    actual: 7,
                    ..
                }
            ),
            "{err}"
        );
        assert!(entries(&store.layout().ingest_dir()).is_empty());
        assert!(entries(&store.layout().blobs_dir()).is_empty());
    }

    #[test]
    fn commit_publishes_records_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let d = Digest::sha256_of(b"payload");
        for _ in 0..2 {
            let mut w = store
                .writer(&lease(&store))
                .unwrap()
                .with_media_type("text/plain");
            w.write_all(b"pay").unwrap();
            w.write_all(b"load").unwrap();
            let desc = w.commit(Some(7), Some(&d)).unwrap();
            assert_eq!(desc.digest, d);
            assert_eq!(desc.size, 7);
        }
        assert_eq!(store.read_blob(&d).unwrap(), b"payload");
        assert!(entries(&store.layout().ingest_dir()).is_empty());
        let recs = crate::meta::read(&store, |m| m.all(meta::BLOBS)).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].1.size, 7);
        assert_eq!(recs[0].1.media_type, "text/plain");
    }

    #[test]
    fn dropped_writer_removes_its_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut w = store.writer(&lease(&store)).unwrap();
        w.write_all(b"partial").unwrap();
        assert_eq!(entries(&store.layout().ingest_dir()).len(), 1);
        drop(w);
        assert!(entries(&store.layout().ingest_dir()).is_empty());
    }

    #[test]
    fn missing_blob_error_names_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let d = Digest::sha256_of(b"nope");
        let err = store.read_blob(&d).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
        assert!(err.to_string().contains(d.as_str()));
    }
}
