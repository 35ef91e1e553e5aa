//! Snapshots: unpacked layers in overlay form, one directory per layer chain.
//!
//! `snapshots/<chain hex>/fs` holds only that layer's changes (whiteouts as 0:0
//! character devices, opaque directories marked `trusted.overlay.opaque=y`);
//! `snapshots/<chain hex>/parent` names the parent chain id. A chain is mounted as
//! `lowerdir=snap(Ln)/fs:…:snap(L0)/fs`. A snapshot is complete once its directory
//! has been renamed into place; half-extracted trees live under `snapshots/.tmp-*`.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use crate::chain_id::{chain_ids, ChainId};
use crate::decompress::plain_reader;
use crate::digest::{Digest, Sha256Reader};
use crate::error::{Result, StoreError};
use crate::extract::extract_tar;
use crate::layout::SNAPSHOT_TEMP_PREFIX;
use crate::media_types;
use crate::meta;
use crate::records::{LayerRef, SnapshotRecord};
use crate::single_flight::SingleFlight;
use crate::{Descriptor, Lease, Store};

/// The snapshots a thread of this process is unpacking.
static UNPACKING: LazyLock<SingleFlight> = LazyLock::new(SingleFlight::default);

impl Store {
    /// Unpacks each layer of the image once (safe extraction, whiteouts in overlay
    /// form, diff_id verified while extracting); returns the lowerdirs, top layer
    /// first, ready for `lowerdir=a:b:c`. Safe to call concurrently: threads of one
    /// process unpack a layer once (the others wait for it); between processes the
    /// loser of a race to unpack the same layer discards its copy. Every snapshot is leased by
    /// `lease` before it is looked for or published; the caller must lease the
    /// layer blobs.
    pub fn ensure_snapshots(&self, lease: &Lease, manifest: &Digest) -> Result<Vec<PathBuf>> {
        self.ensure_layer_snapshots(lease, &self.image(manifest)?.layers)
    }

    /// The snapshots of the bottom layers of `layers` (bottom first) that are unpacked
    /// already, up to the first one that is not: their directories, top first. Unpacks
    /// nothing; each snapshot is leased by `lease` before it is looked for.
    pub fn unpacked_layer_snapshots(
        &self,
        lease: &Lease,
        layers: &[LayerRef],
    ) -> Result<Vec<PathBuf>> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let mut dirs = Vec::new();
        for chain in chain_ids(&diff_ids) {
            lease.add_snapshot(&chain)?;
            let dir = self.snapshot_dir(&chain);
            if !dir.is_dir() {
                break;
            }
            dirs.push(dir);
        }
        dirs.reverse();
        Ok(dirs)
    }

    /// `ensure_snapshots` for a stack of layers that need not be an image yet (a
    /// build between steps): bottom layer first in, lowerdirs top first out.
    pub fn ensure_layer_snapshots(
        &self,
        lease: &Lease,
        layers: &[LayerRef],
    ) -> Result<Vec<PathBuf>> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        // Lease first, then check: an existing snapshot cannot be swept after the check.
        for c in &chains {
            lease.add_snapshot(c)?;
        }
        // Each snapshot holds only its own layer's changes, so missing ones unpack
        // independently: on as many threads as there are cores (gunzip and hashing are
        // CPU-bound), each thread taking the next missing layer.
        let missing: Vec<usize> = (0..layers.len())
            .filter(|&i| !self.snapshot_dir(&chains[i]).is_dir())
            .collect();
        // Stages of one build running on threads of their own often need the same
        // snapshot: one thread unpacks it, the others wait and then find it there.
        let unpack = |i: usize| {
            let parent = i.checked_sub(1).map(|p| &chains[p]);
            let dir = self.snapshot_dir(&chains[i]);
            UNPACKING
                .run(
                    &dir,
                    || dir.is_dir(),
                    || self.unpack_layer(&layers[i].blob, &layers[i].diff_id, &chains[i], parent),
                )
                .unwrap_or(Ok(()))
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(missing.len());
        if threads <= 1 {
            for &i in &missing {
                unpack(i)?;
            }
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let results: Vec<Result<()>> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&i) = missing.get(k) else {
                                return Ok(());
                            };
                            unpack(i)?;
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        let mut dirs: Vec<PathBuf> = chains.iter().map(|c| self.snapshot_dir(c)).collect();
        dirs.reverse();
        Ok(dirs)
    }

    fn unpack_layer(
        &self,
        blob: &Descriptor,
        diff_id: &Digest,
        chain: &ChainId,
        parent: Option<&ChainId>,
    ) -> Result<()> {
        let tmp = self.new_snapshot_tmp()?;
        let result = (|| {
            let fs_dir = tmp.join("fs");
            let file = self.open_blob(&blob.digest)?;
            let Some(compression) = media_types::layer_compression(&blob.media_type) else {
                return Err(StoreError::CorruptBlob {
                    digest: blob.digest.clone(),
                    reason: format!("cannot unpack a layer of media type {}", blob.media_type),
                });
            };
            let reader =
                plain_reader(compression, BufReader::with_capacity(1 << 20, file)).map_err(
                    StoreError::io("starting to decompress layer", self.blob_path(&blob.digest)),
                )?;
            let mut hashed = Sha256Reader::new(reader);
            extract_tar(&mut hashed, &fs_dir, blob.digest.as_str())?;
            // Read the end-of-archive padding too: the diff_id covers every byte.
            std::io::copy(&mut hashed, &mut std::io::sink()).map_err(StoreError::io(
                "reading layer",
                self.blob_path(&blob.digest),
            ))?;
            let (_, actual, _) = hashed.finish();
            if actual != *diff_id {
                return Err(StoreError::CorruptBlob {
                    digest: blob.digest.clone(),
                    reason: format!(
                        "uncompressed content is {actual}, the image says diff_id {diff_id}"
                    ),
                });
            }
            self.publish_snapshot(&tmp, chain, parent)
        })();
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|_| ())
    }

    /// `snapshots/.tmp-<unique>/fs`, created empty.
    fn new_snapshot_tmp(&self) -> Result<PathBuf> {
        let tmp = self.layout().snapshot_temp(SNAPSHOT_TEMP_PREFIX);
        let fs_dir = tmp.join("fs");
        fs::create_dir_all(&fs_dir).map_err(StoreError::io("creating", &fs_dir))?;
        Ok(tmp)
    }

    /// Writes `parent`, renames `tmp` to `snapshots/<chain hex>` (atomic: the
    /// snapshot is complete once visible), records it. If another process won the
    /// race, its copy stays and `tmp` is left for the caller to remove.
    fn publish_snapshot(
        &self,
        tmp: &Path,
        chain: &ChainId,
        parent: Option<&ChainId>,
    ) -> Result<PathBuf> {
        if let Some(p) = parent {
            let pf = tmp.join("parent");
            fs::write(&pf, p.as_str()).map_err(StoreError::io("writing", &pf))?;
        }
        let dest = self.layout().snapshots_dir().join(chain.hex());
        match fs::rename(tmp, &dest) {
            Ok(()) => {}
            Err(e) if dest.is_dir() => {
                let _ = e; // another process published the same snapshot first
            }
            Err(e) => return Err(StoreError::io("publishing snapshot", &dest)(e)),
        }
        // Deferred (no fsync): the snapshot's files are not durable either (docs/design.md
        // §1), and the build's image commit fsyncs the WAL (§3).
        meta::write_deferred(self, |m| {
            if m.get(meta::SNAPSHOTS, chain)?.is_none() {
                m.put(
                    meta::SNAPSHOTS,
                    chain,
                    &SnapshotRecord {
                        v: meta::RECORD_VERSION,
                        parent: parent.cloned(),
                        created_at: meta::now(),
                    },
                )?;
            }
            Ok(())
        })?;
        Ok(dest.join("fs"))
    }

    /// Moves a built upperdir `dir` in as the snapshot of `chain` (a rename: `dir`
    /// must be on the same filesystem as the root, e.g. under `ROOT/snapshots`),
    /// leased by `lease` first. If the snapshot already exists, `dir` is removed and
    /// the existing one kept.
    pub fn commit_snapshot(
        &self,
        lease: &Lease,
        chain: &ChainId,
        parent: Option<&ChainId>,
        dir: &Path,
    ) -> Result<PathBuf> {
        lease.add_snapshot(chain)?;
        let existing = self.snapshot_dir(chain);
        if existing.is_dir() {
            let _ = fs::remove_dir_all(dir);
            return Ok(existing);
        }
        let tmp = self.layout().snapshot_temp(SNAPSHOT_TEMP_PREFIX);
        fs::create_dir(&tmp).map_err(StoreError::io("creating", &tmp))?;
        let result = fs::rename(dir, tmp.join("fs"))
            .map_err(StoreError::io(
                "moving built layer into the store (it must be on the same filesystem as the root)",
                dir,
            ))
            .and_then(|()| self.publish_snapshot(&tmp, chain, parent));
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_formula() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = Digest::sha256_of(b"c");
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids[0].0, a);
        let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1].0, ab);
        assert_eq!(ids[2].0, Digest::sha256_of(format!("{ab} {c}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
