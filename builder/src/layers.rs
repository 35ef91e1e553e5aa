//! Turning a step's result into a stored layer, and layers back into snapshot directories.
//!
//! Layer blobs are kept as plain tar locally (docs/design.md §4.4): the tar's digest is both
//! the blob digest and the diff_id, so a layer is hashed once while it is written and never
//! compressed on the build's critical path. Compression happens once, on the first push or
//! save that needs it.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use store::read_full::read_full;
use store::{media_types, Descriptor, LayerRef, Lease, Store};

use crate::copy::clean_abs;

/// Size of the buffer between the tar writer and the blob writer: big enough that the
/// hashing and write syscalls see large chunks.
const WRITE_BUFFER: usize = 1 << 20;

/// Write a layer with `write_tar` into the store; returns the committed layer, which
/// `lease` covers from before it appears in `blobs/`.
///
/// The writer passed to `write_tar` hashes as it goes; nothing is re-read. On error the
/// ingest file is removed and nothing is recorded.
pub fn commit_layer<E>(
    store: &Store,
    lease: &Lease,
    write_tar: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<LayerRef, LayerError<E>> {
    let blob = write_and_commit(store, lease, media_types::OCI_LAYER_TAR, None, write_tar)?;
    Ok(LayerRef {
        diff_id: blob.digest.clone(),
        blob,
    })
}

/// The layer `write_tar` writes, hashed but stored nowhere: the diff_id and size of a layer
/// of a stage the build does not export, whose blob is made only when something needs
/// its bytes (`crate::unwritten`, docs/design.md §4.8). The returned blob descriptor is the
/// plain tar the layer will be once written.
pub fn hash_layer<E>(
    write_tar: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<LayerRef, LayerError<E>> {
    let mut hasher = crate::hash_thread::HashThread::new().map_err(LayerError::Io)?;
    write_tar(&mut hasher).map_err(LayerError::Write)?;
    let (digest, size) = hasher.finish().map_err(LayerError::Io)?;
    Ok(LayerRef {
        blob: crate::unwritten::planned_blob(&digest, size),
        diff_id: digest,
    })
}

/// `commit_layer` of a layer whose digest and size are known: a tar that comes out
/// otherwise is refused (`StoreError::DigestMismatch`/`SizeMismatch`) and not stored.
pub fn commit_layer_expecting<E>(
    store: &Store,
    lease: &Lease,
    expected: &Descriptor,
    write_tar: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<Descriptor, LayerError<E>> {
    write_and_commit(
        store,
        lease,
        &expected.media_type,
        Some(expected),
        write_tar,
    )
}

/// The body of both: `write_tar` through a large buffer into an ingest writer, committed
/// (checked against `expected`'s size and digest when given) with its chunk CRCs, which
/// spare a push that gzips the layer hashing it again (`store::chunk_crc`).
fn write_and_commit<E>(
    store: &Store,
    lease: &Lease,
    media_type: &str,
    expected: Option<&Descriptor>,
    write_tar: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<Descriptor, LayerError<E>> {
    let writer = store
        .writer(lease)
        .map_err(LayerError::Store)?
        .with_media_type(media_type)
        .with_chunk_crcs();
    let mut buffered = BufWriter::with_capacity(WRITE_BUFFER, writer);
    write_tar(&mut buffered).map_err(LayerError::Write)?;
    let writer = buffered
        .into_inner()
        .map_err(|e| LayerError::Io(e.into_error()))?;
    writer
        .commit(expected.map(|d| d.size), expected.map(|d| &d.digest))
        .map_err(LayerError::Store)
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError<E> {
    #[error(transparent)]
    Store(store::StoreError),
    #[error(transparent)]
    Write(E),
    #[error("writing layer: {0}")]
    Io(io::Error),
}

/// ADD of a local archive: copy the archive's entries into the layer under `dest`, with their
/// names cleaned (a `..` or absolute name cannot climb above `dest`), ownership and modes as
/// in the archive, like docker's auto-extraction. `input` may be plain or gzip tar.
pub fn retar_under<W: Write>(input: impl Read, dest: &str, out: W) -> io::Result<W> {
    let dest = clean_abs(dest);
    let mut archive = tar::Archive::new(decompress(input)?);
    let mut tar = tar::Builder::new(out);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let clean = clean_abs(&name);
        let target = match (dest.is_empty(), clean.is_empty()) {
            (_, true) => continue,
            (true, false) => clean,
            (false, false) => format!("{dest}/{clean}"),
        };
        let mut header = entry.header().clone();
        match header.entry_type() {
            tar::EntryType::Link => {
                let link = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let link = clean_abs(&link);
                let link = if dest.is_empty() {
                    link
                } else {
                    format!("{dest}/{link}")
                };
                tar.append_link(&mut header, &target, &link)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                tar.append_link(&mut header, &target, link)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            _ => {
                let name = if header.entry_type().is_dir() {
                    format!("{target}/")
                } else {
                    target
                };
                tar.append_data(&mut header, &name, &mut entry)?;
            }
        }
    }
    tar.into_inner()
}

/// Whether a file is an archive docker's ADD extracts: a tar, plain or compressed (gzip,
/// zstd). A compressed file that is not a tar inside is copied as it is, as docker does.
pub fn is_archive(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 512];
    let n = match decompress(std::fs::File::open(path)?) {
        Ok(mut plain) => match read_full(&mut plain, &mut head) {
            Ok(n) => n,
            // A damaged or truncated stream is not an archive to extract.
            Err(_) => return Ok(false),
        },
        Err(_) => return Ok(false),
    };
    Ok(n >= 262 && &head[257..262] == b"ustar")
}

/// A reader of the plain tar inside `input`, decompressing gzip or zstd by their magic.
fn decompress<'a>(input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = io::BufReader::new(input);
    let compression = store::decompress::sniff(io::BufRead::fill_buf(&mut buffered)?);
    store::decompress::plain_reader(compression, buffered)
}

/// The entry names of a plain tar, in archive order: what tests of layer writers compare.
#[cfg(test)]
pub(crate) fn entry_names(tar: impl Read) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "bin/x", &b"hi"[..]).expect("append");
        let mut evil = tar::Header::new_gnu();
        evil.set_size(1);
        evil.set_mode(0o644);
        // `append_data` refuses `..`; write the raw name the way a hostile archive would.
        evil.as_gnu_mut().expect("gnu").name[..11].copy_from_slice(b"../../evil\0");
        evil.set_cksum();
        b.append(&evil, &b"e"[..]).expect("append raw");
        b.into_inner().expect("finish")
    }

    #[test]
    fn retar_keeps_entries_under_dest_and_cleans_escapes() {
        let out = retar_under(&sample_tar()[..], "/opt/app", Vec::new()).expect("retar");
        assert_eq!(entry_names(&out[..]), vec!["opt/app/bin/x", "opt/app/evil"]);
    }

    #[test]
    fn gzip_input_is_detected() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&sample_tar()).expect("gzip");
        let bytes = gz.finish().expect("finish");
        let out = retar_under(&bytes[..], "/", Vec::new()).expect("retar");
        assert!(!out.is_empty());
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("a.tar.gz");
        std::fs::write(&p, &bytes).expect("write");
        assert!(is_archive(&p).expect("sniff"));
        std::fs::write(&p, b"just text").expect("write");
        assert!(!is_archive(&p).expect("sniff"));
    }
}
