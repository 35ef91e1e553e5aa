//! A layer blob's plain tar: undoing its compression, as a reader or as a writer.
//!
//! Layers come plain, gzip (`tar+gzip`, docker's `tar.gzip`) or zstd (`tar+zstd`, what
//! docker ≥ 23 and BuildKit push with `compression=zstd`). Both compressed formats may
//! hold several members/frames back to back (our own gzip writer makes one member per
//! chunk; zstd writers that work in parallel make one frame per chunk): every one is
//! decoded, in order, as one stream. A truncated last member or frame is an error,
//! never a short tar.
//!
//! The caller still hashes what comes out: the diff_id is the digest of the plain tar,
//! so a blob that decodes to the wrong bytes is caught there, whatever its compression.

use std::io::{self, BufRead, Read, Write};

use crate::media_types::Compression;

/// The largest zstd window accepted, as a power of two: 512 MiB, the limit of the
/// decoder containerd and docker use (klauspost/compress), so every layer they unpack
/// unpacks here too. libzstd's own default (128 MiB) would refuse layers written with
/// `zstd --long=28` and up. Memory is taken per frame as its header asks, so ordinary
/// layers (windows of a few MiB) cost no more.
const ZSTD_WINDOW_LOG_MAX: u32 = 29;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression of a blob from its first bytes (for archives, whose entries carry
/// no media type): gzip and zstd by their magic numbers, anything else plain.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader of the plain tar inside `blob`, compressed as `compression`. Errors only
/// when a zstd decoder cannot be set up (out of memory); bad data shows as read errors.
pub fn plain_reader<'a>(
    compression: Compression,
    blob: impl BufRead + 'a,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
        Compression::Zstd => {
            // `with_buffer`: `blob` is already buffered. The decoder reads frame after
            // frame until the input ends (it is not set to stop after one).
            let mut z = zstd::stream::read::Decoder::with_buffer(blob)?;
            z.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(z)
        }
    })
}

/// A writer that decompresses what it is given into `out`: for callers that must pass
/// the compressed bytes on as well (load writes the blob and learns its diff_id in
/// one pass). Call [`PlainWriter::finish`]: it reports a truncated stream.
pub struct PlainWriter<W: Write>(Decoder<W>);

enum Decoder<W: Write> {
    None(W),
    // Boxed: its inflate state is ~10 times the size of the other variants.
    Gzip(Box<flate2::write::MultiGzDecoder<W>>),
    Zstd(zstd::stream::write::Decoder<'static, W>),
}

impl<W: Write> PlainWriter<W> {
    pub fn new(compression: Compression, out: W) -> io::Result<PlainWriter<W>> {
        Ok(PlainWriter(match compression {
            Compression::None => Decoder::None(out),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(out))),
            Compression::Zstd => {
                let mut z = zstd::stream::write::Decoder::new(out)?;
                z.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Decoder::Zstd(z)
            }
        }))
    }

    /// Flushes the decoder and returns `out`; fails when the input stopped inside a
    /// gzip member or a zstd frame.
    pub fn finish(self) -> io::Result<W> {
        match self.0 {
            Decoder::None(w) => Ok(w),
            Decoder::Gzip(g) => g.finish(),
            Decoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for PlainWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Decoder::None(w) => w.write(buf),
            Decoder::Gzip(g) => g.write(buf),
            Decoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Decoder::None(w) => w.flush(),
            Decoder::Gzip(g) => g.flush(),
            Decoder::Zstd(z) => z.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn zstd_frames(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend(zstd::encode_all(*p, 3).expect("zstd"));
        }
        out
    }

    fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            g.write_all(p).expect("gzip");
            out.extend(g.finish().expect("gzip"));
        }
        out
    }

    /// zstd's skippable frame (magic 0x184D2A5?): a decoder passes over it.
    fn skippable_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x50, 0x2a, 0x4d, 0x18];
        f.extend((payload.len() as u32).to_le_bytes());
        f.extend(payload);
        f
    }

    fn read_all(c: Compression, blob: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        plain_reader(c, blob)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn write_all(c: Compression, blob: &[u8]) -> io::Result<Vec<u8>> {
        let mut w = PlainWriter::new(c, Vec::new())?;
        // Odd-sized pieces: frame boundaries fall inside writes.
        for piece in blob.chunks(977) {
            w.write_all(piece)?;
        }
        w.finish()
    }

    #[test]
    fn every_frame_and_member_is_decoded() {
        let data = sample(300_000);
        let (a, b) = data.split_at(123_457);
        let mut with_skippable = zstd_frames(&[a]);
        with_skippable.extend(skippable_frame(b"not layer content"));
        with_skippable.extend(zstd_frames(&[b]));
        let cases = [
            ("plain", Compression::None, data.clone()),
            ("one zstd frame", Compression::Zstd, zstd_frames(&[&data])),
            ("two zstd frames", Compression::Zstd, zstd_frames(&[a, b])),
            (
                "zstd with a skippable frame",
                Compression::Zstd,
                with_skippable,
            ),
            ("two gzip members", Compression::Gzip, gzip_members(&[a, b])),
        ];
        for (name, c, blob) in cases {
            assert_eq!(sniff(&blob), c, "{name}: sniff");
            assert!(read_all(c, &blob).expect(name) == data, "{name}: reader");
            assert!(write_all(c, &blob).expect(name) == data, "{name}: writer");
        }
    }

    #[test]
    fn a_truncated_or_damaged_stream_is_an_error() {
        let data = sample(200_000);
        let (a, b) = data.split_at(100_000);
        for (name, c, full) in [
            ("zstd", Compression::Zstd, zstd_frames(&[a, b])),
            ("gzip", Compression::Gzip, gzip_members(&[a, b])),
        ] {
            let cut = &full[..full.len() - 5];
            assert!(read_all(c, cut).is_err(), "{name}: truncated, reader");
            assert!(write_all(c, cut).is_err(), "{name}: truncated, writer");
            let mut bad = full.clone();
            let mid = bad.len() / 2;
            bad[mid..mid + 16].fill(0xAA);
            let read = read_all(c, &bad);
            assert!(
                read.as_ref().map_or(true, |out| *out != data),
                "{name}: damaged input decoded to the original"
            );
        }
    }
}
