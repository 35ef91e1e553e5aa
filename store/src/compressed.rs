//! Compressed forms of plain layers (docs/design.md §4.4).
//!
//! `build` stores each layer as a plain tar: its digest is its diff_id and writing it
//! costs no compression. A registry wants gzip, so `push` (and a registry cache
//! export) asks for the layer's gzip form here. It is made once: the first call gzips
//! the tar with the same deterministic writer `import` uses (`archive::gzip`: fixed
//! level and chunk size, so the same tar gives the same gzip digest on any machine)
//! and records the result as one more stored form in the layer's `layers` record;
//! later calls find it there.
//!
//! What keeps a gzip form: GC marks a `layers` record when an image or a build-cache
//! record names its diff_id, and a marked record keeps every stored form
//! (`gc::roots`). So the gzip form lives exactly as long as the layer does, a second
//! push does not compress again, and pruning the last image of a layer frees both
//! forms. `system df` counts the gzip form under the images that hold the layer.

use std::io::{self, Write};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::archive::gzip::{Member, MemberSink, ParallelGzWriter, CHUNK};
use crate::digest::Digest;
use crate::error::{Result, StoreError};
use crate::ingest::BlobWriter;
use crate::media_types::{self, Compression};
use crate::meta::{self, RECORD_VERSION};
use crate::read_full::read_full;
use crate::records::{BlobRecord, LayerRecord, LayerRef};
use crate::{Descriptor, Lease, Store};

/// The gzip media type of the same family as the plain type `plain` (OCI → OCI,
/// docker → docker); `None` when `plain` is not a plain-tar layer type.
pub fn gzip_media_type(plain: &str) -> Option<&'static str> {
    match plain {
        media_types::OCI_LAYER_TAR => Some(media_types::OCI_LAYER_GZIP),
        media_types::DOCKER_LAYER_TAR => Some(media_types::DOCKER_LAYER_GZIP),
        _ => None,
    }
}

impl Store {
    /// The layer as a registry wants it: compressed.
    ///
    /// - A layer whose blob is already compressed (gzip or zstd), or whose media type is
    ///   not a plain layer tar, comes back unchanged.
    /// - A plain tar whose `layers` record names a gzip form still on disk gets that form.
    /// - Otherwise the tar is gzipped into a new blob (streamed through ingest, hashed
    ///   while written, fsync'd, renamed), checked against the layer's digest on the way,
    ///   and recorded in `blobs` and as a stored form of the layer.
    ///
    /// The returned descriptor has the gzip type of the layer's family:
    /// `application/vnd.oci.image.layer.v1.tar+gzip` for an OCI plain layer, docker's
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip` for docker's; `diff_id` is
    /// unchanged. Repeat calls are cheap and return the same digest. The metadata is
    /// opened only for short transactions, never during the compression.
    ///
    /// `lease` covers the gzip form from before it is looked for or written; after the
    /// lease, it stays as long as an image or a cache record holds the layer (see the
    /// module doc).
    pub fn compressed_layer(&self, lease: &Lease, layer: &LayerRef) -> Result<LayerRef> {
        self.compressed_form(lease, layer, None::<Box<dyn GzipCopy>>)
            .map(|(layer, _)| layer)
    }

    /// Like [`Store::compressed_layer`], and when this call compresses the layer, every
    /// gzip member is also handed to `copy` as soon as it is written to the store's
    /// ingest file: a push uploads the layer while it is written to the store, instead
    /// of after. `copy` may make the compression wait (an upload pacing it). The first
    /// error of `copy` stops the copy (the caller then knows its copy is short), never
    /// the compression. Once the
    /// last byte is written and the plain tar checked, `copy` is told the digest and size
    /// of the whole gzip ([`GzipCopy::whole`], from the hash the store takes anyway) and
    /// dropped, before the gzip blob is made durable, so a push can finish its upload
    /// while the store fsyncs; a drop without `whole` means the copy is short. Returns
    /// whether this call compressed the layer (and so wrote all of it to `copy`, unless
    /// `copy` failed); false when it found a stored form or the layer needs none.
    ///
    /// The caller is taken not to read the gzip blob soon (it has every byte from
    /// `copy`): its pages leave the page cache once on disk (`BlobWriter::write_behind`).
    pub fn compressed_layer_copied(
        &self,
        lease: &Lease,
        layer: &LayerRef,
        copy: impl GzipCopy,
    ) -> Result<(LayerRef, bool)> {
        self.compressed_form(lease, layer, Some(copy))
    }

    /// `compressed_layer` (`copy` None: the caller reads the blob next, so its pages
    /// stay cached) or `compressed_layer_copied`.
    fn compressed_form(
        &self,
        lease: &Lease,
        layer: &LayerRef,
        copy: Option<impl GzipCopy>,
    ) -> Result<(LayerRef, bool)> {
        let Some(gzip_type) = gzip_media_type(&layer.blob.media_type) else {
            return Ok((layer.clone(), false));
        };
        if let Some(found) = self.recorded_gzip_form(lease, layer, gzip_type)? {
            return Ok((found, false));
        }
        let blob = self.gzip_plain_layer(lease, layer, gzip_type, copy)?;
        self.record_gzip_form(layer, &blob)?;
        let layer = LayerRef {
            blob,
            diff_id: layer.diff_id.clone(),
        };
        Ok((layer, true))
    }

    /// A gzip form of `layer` its `layers` record names and `blobs/` still holds,
    /// leased before it is looked for.
    fn recorded_gzip_form(
        &self,
        lease: &Lease,
        layer: &LayerRef,
        gzip_type: &str,
    ) -> Result<Option<LayerRef>> {
        let rec = meta::read(self, |m| m.get(meta::LAYERS, &layer.diff_id))?;
        let Some(rec) = rec else { return Ok(None) };
        for b in rec.blobs {
            if media_types::layer_compression(&b.media_type) != Some(Compression::Gzip) {
                continue;
            }
            lease.add_digest(&b.digest)?;
            if self.has_blob(&b.digest) {
                return Ok(Some(LayerRef {
                    // Same bytes whatever family recorded them; name them in the caller's.
                    blob: Descriptor {
                        media_type: gzip_type.to_string(),
                        digest: b.digest,
                        size: b.size,
                    },
                    diff_id: layer.diff_id.clone(),
                }));
            }
        }
        Ok(None)
    }

    /// Gzips the plain blob of `layer` into a committed, unrecorded blob.
    ///
    /// The tar is checked as it passes: against the chunk CRCs its `blobs` record holds
    /// (every gzip member's trailer carries its chunk's CRC, computed anyway: `chunk_crc`),
    /// or, for a blob recorded without them, by hashing it. A damaged plain blob must not
    /// become a gzip blob that claims its diff_id; a member that fails the check is
    /// neither written nor handed to `copy`.
    fn gzip_plain_layer(
        &self,
        lease: &Lease,
        layer: &LayerRef,
        gzip_type: &str,
        copy: Option<impl GzipCopy>,
    ) -> Result<Descriptor> {
        let src = self.blob_path(&layer.blob.digest);
        let recorded = meta::read(self, |m| m.get(meta::BLOBS, &layer.blob.digest))?;
        let chunk_crcs = recorded
            .and_then(|r| r.chunk_crc32)
            .filter(|c| c.for_blob(layer.blob.size).is_some())
            .map(|c| c.crcs);
        let mut input = self.open_blob(&layer.blob.digest)?;
        let out = self.writer(lease)?.with_media_type(gzip_type);
        let ingest = out.ingest_path().to_path_buf();
        let mut plain = chunk_crcs.is_none().then(Sha256::new);
        let mut gz = ParallelGzWriter::new(Members {
            out,
            drop_written: copy.is_some(),
            copy,
            unsynced: 0,
            chunk_crcs,
            members: 0,
        });
        let corrupt = |reason: String| StoreError::CorruptBlob {
            digest: layer.blob.digest.clone(),
            reason: format!("{reason}; the layer was not compressed"),
        };
        let written = |e: io::Error| match ChunkMismatch::of(&e) {
            Some(m) => corrupt(m.to_string()),
            None => StoreError::io("writing gzip layer", &ingest)(e),
        };
        let mut read_size = 0u64;
        loop {
            // Read straight into the chunk the workers compress: no copy of the tar.
            let mut chunk = gz.chunk_buffer();
            let n =
                read_full(&mut input, &mut chunk).map_err(StoreError::io("reading layer", &src))?;
            chunk.truncate(n);
            if let Some(plain) = plain.as_mut() {
                plain.update(&chunk);
            }
            read_size += n as u64;
            if n > 0 {
                gz.write_chunk(chunk).map_err(written)?;
            }
            if n < CHUNK {
                break;
            }
        }
        let size_is_right = read_size == layer.blob.size;
        if let Some(plain) = plain {
            let read_digest = Digest::from_sha256(plain.finalize().into());
            if read_digest != layer.blob.digest || !size_is_right {
                return Err(corrupt(format!(
                    "holds {read_size} bytes with digest {read_digest}, expected {} bytes",
                    layer.blob.size
                )));
            }
        } else if !size_is_right {
            return Err(corrupt(format!(
                "holds {read_size} bytes, expected {}",
                layer.blob.size
            )));
        }
        let Members { out, copy, .. } = gz.finish().map_err(written)?;
        if let Some(mut copy) = copy {
            copy.whole(&out.digest_so_far(), out.written());
        }
        out.commit_unrecorded(None, None)
    }

    /// Records `blob` (committed and leased) in `blobs` and as a stored form of
    /// `layer`, in one transaction.
    fn record_gzip_form(&self, layer: &LayerRef, blob: &Descriptor) -> Result<()> {
        meta::write(self, |m| {
            if m.get(meta::BLOBS, &blob.digest)?.is_none() {
                m.put(
                    meta::BLOBS,
                    &blob.digest,
                    &BlobRecord::new(blob.size, &blob.media_type, meta::now()),
                )?;
            }
            let mut rec = m.get(meta::LAYERS, &layer.diff_id)?.unwrap_or(LayerRecord {
                v: RECORD_VERSION,
                blobs: Vec::new(),
                uncompressed_size: None,
            });
            if !rec.blobs.iter().any(|b| b.digest == blob.digest) {
                rec.blobs.push(blob.clone());
            }
            // The plain tar is the uncompressed form.
            rec.uncompressed_size.get_or_insert(layer.blob.size);
            m.put(meta::LAYERS, &layer.diff_id, &rec)
        })
    }
}

/// Where [`Store::compressed_layer_copied`] copies a gzip form while it makes it.
pub trait GzipCopy {
    /// The next gzip member (a run of the blob's bytes, in order, already written to
    /// the ingest file). An error stops the copy: nothing more is handed on.
    fn member(&mut self, member: Arc<Member>) -> io::Result<()>;

    /// Every byte is written: `digest` and `size` are those of the whole gzip as the
    /// store hashed it. Called once, before the blob is made durable, and only when no
    /// write failed; the copy is dropped right after.
    fn whole(&mut self, digest: &Digest, size: u64);
}

impl<T: GzipCopy + ?Sized> GzipCopy for Box<T> {
    fn member(&mut self, member: Arc<Member>) -> io::Result<()> {
        (**self).member(member)
    }

    fn whole(&mut self, digest: &Digest, size: u64) {
        (**self).whole(digest, size)
    }
}

/// The gzip members go to `out`, then to the copy until it fails once. Every `CHUNK` or
/// so of gzip, `out` writes behind (`BlobWriter::write_behind`): the commit's fsync does
/// not wait for all of a large layer's pages at once, after the last byte (≈ 0.3 s for
/// the 283 MB gzip of the 500 MiB layer of `benches/push-gzip.sh`), and, when a copy
/// takes the bytes (a push, which does not read the blob again), the blob does not take
/// fresh page cache for all of them.
struct Members<C: GzipCopy> {
    out: BlobWriter,
    copy: Option<C>,
    /// Whether written pages leave the page cache once on disk: set when made with a copy.
    drop_written: bool,
    /// Gzip bytes written since the last `write_behind`.
    unsynced: usize,
    /// The CRCs recorded for the tar's chunks, when the tar is checked by them.
    chunk_crcs: Option<Vec<u32>>,
    /// Members written so far.
    members: usize,
}

impl<C: GzipCopy> MemberSink for Members<C> {
    fn member(&mut self, member: Member) -> io::Result<()> {
        if let Some(crcs) = &self.chunk_crcs {
            if crcs.get(self.members) != Some(&member.crc32()) {
                let chunk = ChunkMismatch {
                    from: self.members as u64 * CHUNK as u64,
                    len: member.uncompressed_len(),
                };
                return Err(io::Error::new(io::ErrorKind::InvalidData, chunk));
            }
        }
        self.members += 1;
        self.out.write_all(&member)?;
        self.unsynced += member.len();
        if self.unsynced >= CHUNK {
            self.out.write_behind(self.drop_written)?;
            self.unsynced = 0;
        }
        if let Some(copy) = self.copy.as_mut() {
            if copy.member(Arc::new(member)).is_err() {
                self.copy = None;
            }
        }
        Ok(())
    }
}

/// A chunk of the tar whose CRC is not the one recorded (`Members::member`).
#[derive(Debug, thiserror::Error)]
#[error("its {len} bytes from offset {from} do not match the CRC-32 recorded when it was written")]
struct ChunkMismatch {
    from: u64,
    len: u32,
}

impl ChunkMismatch {
    fn of(e: &io::Error) -> Option<&ChunkMismatch> {
        e.get_ref()?.downcast_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn lease(store: &Store) -> Lease {
        store.lease(std::time::Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn gzip_type_keeps_the_family() {
        let cases = [
            (
                media_types::OCI_LAYER_TAR,
                Some(media_types::OCI_LAYER_GZIP),
            ),
            (
                media_types::DOCKER_LAYER_TAR,
                Some(media_types::DOCKER_LAYER_GZIP),
            ),
            (media_types::OCI_LAYER_GZIP, None),
            (media_types::DOCKER_LAYER_GZIP, None),
            (media_types::OCI_LAYER_ZSTD, None),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                None,
            ),
        ];
        for (plain, want) in cases {
            assert_eq!(gzip_media_type(plain), want, "{plain}");
        }
    }

    #[test]
    fn compressed_layers_pass_through() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        for mt in [
            media_types::OCI_LAYER_GZIP,
            media_types::DOCKER_LAYER_GZIP,
            media_types::OCI_LAYER_ZSTD,
        ] {
            // The blob need not even exist: nothing is read.
            let layer = LayerRef {
                blob: Descriptor {
                    media_type: mt.to_string(),
                    digest: Digest::sha256_of(mt.as_bytes()),
                    size: 1,
                },
                diff_id: Digest::sha256_of(b"diff"),
            };
            assert_eq!(
                store.compressed_layer(&lease(&store), &layer).unwrap(),
                layer
            );
        }
    }

    #[test]
    fn a_damaged_plain_blob_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let tar = vec![7u8; 4096];
        let blob = store
            .put_blob(&lease(&store), &tar, media_types::OCI_LAYER_TAR)
            .unwrap();
        let layer = LayerRef {
            diff_id: blob.digest.clone(),
            blob,
        };
        std::fs::write(store.blob_path(&layer.blob.digest), vec![8u8; 4096]).unwrap();
        refused(&store, &layer);
    }

    /// Compresses `layer`, whose blob is damaged: refused as corrupt, with no temp file
    /// left and no gzip form recorded.
    fn refused(store: &Store, layer: &LayerRef) -> StoreError {
        let err = store.compressed_layer(&lease(store), layer).unwrap_err();
        assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err}");
        assert_eq!(
            std::fs::read_dir(store.layout().ingest_dir())
                .unwrap()
                .count(),
            0
        );
        assert!(meta::read(store, |m| m.get(meta::LAYERS, &layer.diff_id))
            .unwrap()
            .is_none());
        err
    }

    /// A plain tar of a bit more than two chunks written as a build writes layers: with
    /// its chunk CRCs recorded.
    fn layer_with_crcs(store: &Store) -> (LayerRef, Vec<u8>) {
        let tar: Vec<u8> = (0..2 * CHUNK + 5000).map(|i| (i % 251) as u8).collect();
        let mut w = store
            .writer(&lease(store))
            .unwrap()
            .with_media_type(media_types::OCI_LAYER_TAR)
            .with_chunk_crcs();
        w.write_all(&tar).unwrap();
        let blob = w.commit(None, None).unwrap();
        (
            LayerRef {
                diff_id: blob.digest.clone(),
                blob,
            },
            tar,
        )
    }

    #[test]
    fn chunk_crcs_check_the_tar_and_leave_the_gzip_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let (layer, tar) = layer_with_crcs(&store);
        let rec = meta::read(&store, |m| m.get(meta::BLOBS, &layer.blob.digest))
            .unwrap()
            .unwrap();
        let crcs = rec.chunk_crc32.expect("the writer recorded chunk CRCs");
        assert_eq!(crcs.for_blob(layer.blob.size).map(|c| c.len()), Some(3));
        let checked = store.compressed_layer(&lease(&store), &layer).unwrap();

        // The same tar without CRCs (hashed instead) gives the same gzip blob.
        let other = tempfile::tempdir().unwrap();
        let other = Store::open(other.path()).unwrap();
        let blob = other
            .put_blob(&lease(&other), &tar, media_types::OCI_LAYER_TAR)
            .unwrap();
        let hashed = other
            .compressed_layer(
                &lease(&other),
                &LayerRef {
                    diff_id: blob.digest.clone(),
                    blob,
                },
            )
            .unwrap();
        assert_eq!(checked, hashed);
    }

    #[test]
    fn a_damaged_chunk_fails_its_crc() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let (layer, mut tar) = layer_with_crcs(&store);
        tar[CHUNK + 10] ^= 1;
        std::fs::write(store.blob_path(&layer.blob.digest), &tar).unwrap();
        let err = refused(&store, &layer);
        assert!(
            err.to_string().contains(&format!("from offset {CHUNK} ")),
            "{err}"
        );

        // A tar cut short is refused by its size.
        tar.truncate(CHUNK);
        std::fs::write(store.blob_path(&layer.blob.digest), &tar).unwrap();
        let err = refused(&store, &layer);
        assert!(
            err.to_string()
                .contains(&format!("holds {CHUNK} bytes, expected")),
            "{err}"
        );
    }
}
