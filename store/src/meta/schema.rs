//! The sled schema. Change this drawing with every record version bump.
//!
//! ```text
//! ROOT/meta/  (sled 0.34; ROOT/meta/lock is our flock, taken before sled opens)
//! ├── tags       "docker.io/library/busybox:latest" → TagRecord      { v:1, manifest, updated_at,
//! │                                                     index_entry (another tool's, verbatim) }
//! ├── foreign_index "sha256:<entry json>"            → ForeignEntryRecord { v:1, entry, digests }
//! ├── manifests  "sha256:<manifest>"                → ManifestRecord { v:1, media_type, size,
//! │                                                     config: Descriptor, layers: [LayerRef { blob: Descriptor, diff_id }],
//! │                                                     created (from config), added_at, image_size }
//! ├── layers     "sha256:<diff_id>"                 → LayerRecord    { v:1, blobs: [Descriptor] (compressed forms),
//! │                                                     uncompressed_size }
//! ├── blobs      "sha256:<digest>"                  → BlobRecord     { v:1, size, media_type, added_at }
//! ├── snapshots  "sha256:<chain_id>"                → SnapshotRecord { v:1, parent, diff_id, created_at }
//! ├── cache      build cache key (opaque string)     → CacheRecord    { v:1, diff_id, chain_id, layer, config_delta,
//! │                                                     created_at, last_used, size }
//! ├── ctxstat    "<context>\0<path>"                → StatRecord     { v:1, size, mtime_ns, ctime_ns, ino, mode, uid, gid, digest }
//! └── leases     "<lease id>"                       → LeaseRecord    { v:1, pid, created_at, expires_at, digests, snapshots }
//! ```
//!
//! Values are serde_json; every record carries `v` so a later version can migrate.
//! Times are unix seconds (i64).

pub const TAGS: &str = "tags";
pub const MANIFESTS: &str = "manifests";
pub const LAYERS: &str = "layers";
pub const BLOBS: &str = "blobs";
pub const SNAPSHOTS: &str = "snapshots";
pub const CACHE: &str = "cache";
pub const CTXSTAT: &str = "ctxstat";
pub const LEASES: &str = "leases";
pub const FOREIGN_INDEX: &str = "foreign_index";

/// The current version written into every record.
pub const RECORD_VERSION: u32 = 1;
