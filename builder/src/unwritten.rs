//! Layers recorded before their blob is written (docs/design.md §4.8): a RUN of a stage the
//! build does not export is committed as its snapshot plus the diff_id and size of its tar,
//! hashed on the way and written nowhere. [`materialise`] makes the blob when something
//! needs the bytes (an exported image that contains the layer, `--cache-to`): the differ
//! runs again over the committed snapshot, and the tar is stored only if it hashes to the
//! recorded diff_id and size. Then the cache record names the blob like any other.

use std::path::PathBuf;

use store::{CacheRecord, ChainId, Descriptor, Digest, Lease, Store, StoreError};

use crate::differ::{self, DiffError, DiffOptions};
use crate::layers::{commit_layer_expecting, LayerError};

#[derive(Debug, thiserror::Error)]
pub enum UnwrittenError {
    #[error("build cache record {key} names no layer")]
    NoLayer { key: String },
    #[error("the snapshot {chain} of build cache record {key} is gone; rebuild without the cache")]
    SnapshotMissing { key: String, chain: ChainId },
    #[error("the snapshot {path} changed after it was committed: its layer hashes to {actual}, not {expected}; refusing to store it (`strata builder prune` drops the record)")]
    Changed {
        path: PathBuf,
        expected: Digest,
        actual: String,
    },
    #[error("writing the layer of snapshot {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: LayerError<DiffError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The blob an unwritten layer becomes: its plain tar, whose digest is its diff_id
/// (docs/design.md §4.4).
pub fn planned_blob(diff_id: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: store::media_types::OCI_LAYER_TAR.to_string(),
        digest: diff_id.clone(),
        size,
    }
}

/// The blob of the layer cache record `key` names, made now if the record says it is not
/// written yet; `lease` holds the snapshot and the blob. A record whose blob exists is
/// returned as it is.
pub fn materialise(store: &Store, lease: &Lease, key: &str) -> Result<Descriptor, UnwrittenError> {
    let rec = store
        .cache_get(key)?
        .ok_or_else(|| UnwrittenError::NoLayer { key: key.into() })?;
    materialise_record(store, lease, key, rec)
}

/// [`materialise`] of a record already read.
pub fn materialise_record(
    store: &Store,
    lease: &Lease,
    key: &str,
    mut rec: CacheRecord,
) -> Result<Descriptor, UnwrittenError> {
    if let Some(layer) = &rec.layer {
        return Ok(layer.clone());
    }
    let (Some(opts), Some(diff_id), Some(chain)) = (&rec.unwritten, &rec.diff_id, &rec.chain_id)
    else {
        return Err(UnwrittenError::NoLayer { key: key.into() });
    };
    // Lease first, then check: a prune that starts in between sees the lease.
    lease.add_snapshot(chain)?;
    let dir = store.snapshot_dir(chain);
    if !dir.is_dir() {
        return Err(UnwrittenError::SnapshotMissing {
            key: key.into(),
            chain: chain.clone(),
        });
    }
    let expected = planned_blob(diff_id, rec.size);
    let diff_opts = DiffOptions {
        source_date_epoch: opts.source_date_epoch,
    };
    let written = commit_layer_expecting(store, lease, &expected, |w| {
        differ::write_layer(&dir, w, &diff_opts).map(|_| ())
    });
    let blob = match written {
        Ok(blob) => blob,
        Err(LayerError::Store(StoreError::DigestMismatch { actual, .. })) => {
            return Err(UnwrittenError::Changed {
                path: dir,
                expected: diff_id.clone(),
                actual: actual.to_string(),
            })
        }
        Err(LayerError::Store(StoreError::SizeMismatch { actual, .. })) => {
            return Err(UnwrittenError::Changed {
                path: dir,
                expected: diff_id.clone(),
                actual: format!("a tar of {actual} bytes"),
            })
        }
        Err(source) => return Err(UnwrittenError::Write { path: dir, source }),
    };
    rec.layer = Some(blob.clone());
    rec.unwritten = None;
    store.cache_put(key, &rec)?;
    Ok(blob)
}
