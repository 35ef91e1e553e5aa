//! The metadata schema. Change this drawing with every record version bump.
//!
//! ```text
//! ROOT/meta/strata.db  (SQLite, WAL; one table per tree; ROOT/meta/lock is the writers' flock)
//! ├── tags       "docker.io/library/busybox:latest" → TagRecord      { v:1, manifest, updated_at,
//! │                                                     index_entry (another tool's, verbatim) }
//! ├── foreign_index "sha256:<entry json>"            → ForeignEntryRecord { v:1, entry, digests }
//! ├── manifests  "sha256:<manifest>"                → ManifestRecord { v:1, media_type, size,
//! │                                                     config: Descriptor, layers: [LayerRef { blob: Descriptor, diff_id }],
//! │                                                     created (from config), added_at, image_size,
//! │                                                     manifests: [IndexChild { manifest: Descriptor, platform }]
//! │                                                     (an image index only; absent on older records) }
//! ├── layers     "sha256:<diff_id>"                 → LayerRecord    { v:1, blobs: [Descriptor] (compressed forms),
//! │                                                     uncompressed_size }
//! ├── blobs      "sha256:<digest>"                  → BlobRecord     { v:1, size, media_type, added_at,
//! │                                                     chunk_crc32: { chunk, crcs } (a plain layer a build or load wrote;
//! │                                                     absent otherwise and on older records) }
//! ├── snapshots  "sha256:<chain_id>"                → SnapshotRecord { v:1, parent, diff_id, created_at }
//! ├── cache      build cache key (opaque string)     → CacheRecord    { v:1, diff_id, chain_id, layer, config_delta,
//! │                                                     created_at, last_used, size,
//! │                                                     unwritten: UnwrittenLayer { source_date_epoch }
//! │                                                     (a layer not written yet: `layer` is null;
//! │                                                     absent on older records and written layers) }
//! ├── ctxstat    "<context>\0<path>"                → StatRecord     { v:1, size, mtime_ns, ctime_ns, ino, mode, uid, gid, digest }
//! └── leases     "<lease id>"                       → LeaseRecord    { v:1, pid, created_at, expires_at, digests, snapshots }
//! ```
//!
//! Values are serde_json; every record carries `v` so a later version can migrate.
//! Times are unix seconds (i64).

use std::marker::PhantomData;

use crate::chain_id::ChainId;
pub use crate::records::RECORD_VERSION;
use crate::records::{
    BlobRecord, CacheRecord, ForeignEntryRecord, LayerRecord, LeaseRecord, ManifestRecord,
    SnapshotRecord, StatRecord, TagRecord,
};
use crate::Digest;

/// One tree (a table): its name, the key type and the record type stored under its keys, so
/// that a caller cannot put a record into the wrong tree or read one back as another type.
pub struct Tree<K: ?Sized, R> {
    pub name: &'static str,
    types: PhantomData<fn(&K) -> R>,
}

impl<K: ?Sized, R> Tree<K, R> {
    pub const fn new(name: &'static str) -> Tree<K, R> {
        Tree {
            name,
            types: PhantomData,
        }
    }
}

impl<K: ?Sized, R> Clone for Tree<K, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: ?Sized, R> Copy for Tree<K, R> {}

/// What a tree's key is written as.
pub trait TreeKey {
    fn as_key(&self) -> &str;
}

impl TreeKey for str {
    fn as_key(&self) -> &str {
        self
    }
}

impl TreeKey for Digest {
    fn as_key(&self) -> &str {
        self.as_str()
    }
}

impl TreeKey for ChainId {
    fn as_key(&self) -> &str {
        self.as_str()
    }
}

pub const TAGS: Tree<str, TagRecord> = Tree::new("tags");
pub const MANIFESTS: Tree<Digest, ManifestRecord> = Tree::new("manifests");
/// Keyed by diff_id.
pub const LAYERS: Tree<Digest, LayerRecord> = Tree::new("layers");
pub const BLOBS: Tree<Digest, BlobRecord> = Tree::new("blobs");
pub const SNAPSHOTS: Tree<ChainId, SnapshotRecord> = Tree::new("snapshots");
/// Keyed by the build cache key.
pub const CACHE: Tree<str, CacheRecord> = Tree::new("cache");
/// Keyed by `context \0 path` (see `Meta::ctxstat`).
pub const CTXSTAT: Tree<str, StatRecord> = Tree::new("ctxstat");
pub const LEASES: Tree<str, LeaseRecord> = Tree::new("leases");
/// Keyed by the digest of the entry's JSON (`oci_index`).
pub const FOREIGN_INDEX: Tree<str, ForeignEntryRecord> = Tree::new("foreign_index");
