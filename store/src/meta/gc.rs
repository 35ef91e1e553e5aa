//! Typed metadata access for garbage collection and disk usage (store/src/gc/).
//!
//! Adds one tree, owned by GC:
//!
//! ```text
//! └── snapshot_sizes  "sha256:<chain_id>" → SnapshotSize { v:1, size, measured_at }
//! ```
//!
//! A committed snapshot never changes, so its size is measured once (a walk of its
//! directory, outside any transaction) and recorded here; `system df` and
//! `builder prune --keep-storage` then read sizes instead of walking trees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Meta, Tree, RECORD_VERSION};
use crate::chain_id::ChainId;
use crate::error::{Result, StoreError};
use crate::records::{
    BlobRecord, CacheRecord, LayerRecord, LeaseRecord, ManifestRecord, SnapshotRecord, TagRecord,
};
use crate::Digest;

pub const SNAPSHOT_SIZES: Tree<ChainId, SnapshotSize> = Tree::new("snapshot_sizes");

/// `snapshot_sizes`: bytes of regular files in one snapshot directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSize {
    #[serde(default = "v1")]
    pub v: u32,
    pub size: u64,
    pub measured_at: i64,
}

fn v1() -> u32 {
    RECORD_VERSION
}

/// Every record GC reads, loaded in one transaction.
#[derive(Debug, Default)]
pub struct World {
    pub tags: Vec<(String, TagRecord)>,
    pub manifests: BTreeMap<Digest, ManifestRecord>,
    pub cache: Vec<(String, CacheRecord)>,
    pub leases: Vec<(String, LeaseRecord)>,
    pub blobs: BTreeMap<Digest, BlobRecord>,
    pub layers: BTreeMap<Digest, LayerRecord>,
    pub snapshots: BTreeMap<ChainId, SnapshotRecord>,
    pub snapshot_sizes: BTreeMap<ChainId, u64>,
    /// Every blob the foreign `index.json` entries reach (`oci_index`).
    pub foreign: Vec<Digest>,
}

fn key_digest(tree: &'static str, key: &str) -> Result<Digest> {
    key.parse()
        .map_err(|e: crate::DigestError| StoreError::CorruptRecord {
            tree,
            key: key.to_string(),
            reason: e.to_string(),
        })
}

impl Meta {
    /// Every tree GC needs, typed.
    pub fn load_world(&self) -> Result<World> {
        let mut w = World {
            tags: self.all(super::TAGS)?,
            cache: self.all(super::CACHE)?,
            leases: self.all(super::LEASES)?,
            ..World::default()
        };
        for (k, r) in self.all(super::MANIFESTS)? {
            w.manifests
                .insert(key_digest(super::MANIFESTS.name, &k)?, r);
        }
        for (k, r) in self.all(super::BLOBS)? {
            w.blobs.insert(key_digest(super::BLOBS.name, &k)?, r);
        }
        for (k, r) in self.all(super::LAYERS)? {
            w.layers.insert(key_digest(super::LAYERS.name, &k)?, r);
        }
        for (k, r) in self.all(super::SNAPSHOTS)? {
            w.snapshots
                .insert(ChainId(key_digest(super::SNAPSHOTS.name, &k)?), r);
        }
        w.snapshot_sizes = self.snapshot_sizes()?;
        w.foreign = self
            .all(super::FOREIGN_INDEX)?
            .into_iter()
            .flat_map(|(_, f)| f.digests)
            .collect();
        Ok(w)
    }

    /// Recorded snapshot sizes by chain id.
    pub fn snapshot_sizes(&self) -> Result<BTreeMap<ChainId, u64>> {
        let mut out = BTreeMap::new();
        for (k, r) in self.all(SNAPSHOT_SIZES)? {
            out.insert(ChainId(key_digest(SNAPSHOT_SIZES.name, &k)?), r.size);
        }
        Ok(out)
    }

    pub fn put_snapshot_size(&self, chain: &ChainId, size: u64, now: i64) -> Result<()> {
        let rec = SnapshotSize {
            v: RECORD_VERSION,
            size,
            measured_at: now,
        };
        self.put(SNAPSHOT_SIZES, chain, &rec)
    }

    pub fn remove_snapshot_size(&self, chain: &ChainId) -> Result<bool> {
        self.remove(SNAPSHOT_SIZES, chain)
    }
}
