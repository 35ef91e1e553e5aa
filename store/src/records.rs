//! Records stored in the metadata database (see `meta/schema.rs` for the tree drawing). Each carries
//! `v` (the record version) so a later release can migrate old values.

use serde::{Deserialize, Serialize};

use crate::chain_id::ChainId;
use crate::chunk_crc::ChunkCrc32;
use crate::{Descriptor, Digest};

/// The version written into every record (its `v`); a later version migrates older ones.
pub const RECORD_VERSION: u32 = 1;

fn v1() -> u32 {
    RECORD_VERSION
}

/// `tags`: full reference → the manifest it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub manifest: Digest,
    pub updated_at: i64,
    /// The `index.json` entry another tool wrote for this tag, written back verbatim
    /// (`oci_index`); `None` for a tag strata made, whose entry it derives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_entry: Option<serde_json::Value>,
}

/// `foreign_index`: an `index.json` entry another tool wrote that is not an image strata
/// can record (an image index, a missing blob, no name): kept verbatim in `index.json`,
/// and every blob it reaches kept by GC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignEntryRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub entry: serde_json::Value,
    /// The entry's digest and every blob reachable from it when it was adopted.
    pub digests: Vec<Digest>,
}

/// One layer of an image: the blob as stored and its uncompressed digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRef {
    pub blob: Descriptor,
    pub diff_id: Digest,
}

/// One platform's manifest in an image index (`ManifestRecord::manifests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexChild {
    pub manifest: Descriptor,
    /// The entry's `platform` object (`{"architecture", "os"[, "variant"]}`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl IndexChild {
    pub fn platform(&self) -> Option<crate::platform::Platform> {
        self.platform
            .as_ref()
            .and_then(crate::platform::Platform::from_json)
    }
}

/// `manifests`: manifest digest → what the image is made of.
///
/// An image index (a multi-platform image) is recorded here too, so that it is tagged,
/// listed, resolved and removed as one image: `manifests` lists its platforms' manifests
/// (each recorded under its own key), `config` is the index's own descriptor (docker's
/// image id of a multi-platform image is the index digest), `layers` is empty and
/// `image_size` is the sum of its manifests' (docs/design.md §1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub media_type: String,
    /// Size of the manifest blob.
    pub size: u64,
    pub config: Descriptor,
    pub layers: Vec<LayerRef>,
    /// The config's `created` field (RFC 3339), if any.
    pub created: Option<String>,
    pub added_at: i64,
    /// docker's SIZE: uncompressed layer sizes where known, else stored sizes.
    pub image_size: u64,
    /// An image index's manifests, in index order; empty for a single-platform image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<IndexChild>,
}

impl ManifestRecord {
    /// Whether this record is an image index (see the type's doc).
    pub fn is_index(&self) -> bool {
        !self.manifests.is_empty()
    }
}

/// `layers`: diff_id → the stored (usually compressed) forms of that layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub blobs: Vec<Descriptor>,
    pub uncompressed_size: Option<u64>,
}

/// `blobs`: digest → GC bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub size: u64,
    pub media_type: String,
    pub added_at: i64,
    /// The CRC-32 of each chunk of the blob, when its writer took them (a plain layer tar
    /// a build or `load` wrote): a push checks the tar it gzips against them (`chunk_crc`). Absent on
    /// other blobs and on older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_crc32: Option<ChunkCrc32>,
}

impl BlobRecord {
    pub fn new(size: u64, media_type: &str, added_at: i64) -> BlobRecord {
        BlobRecord {
            v: RECORD_VERSION,
            size,
            media_type: media_type.to_string(),
            added_at,
            chunk_crc32: None,
        }
    }
}

/// `snapshots`: chain id → an unpacked (or built) layer directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub parent: Option<ChainId>,
    pub created_at: i64,
}

/// `cache`: build cache key → the step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    #[serde(default = "v1")]
    pub v: u32,
    /// The layer the step produced; `None` for steps that only change the config.
    pub diff_id: Option<Digest>,
    /// The snapshot after this step (its chain id), if the step has a filesystem.
    pub chain_id: Option<ChainId>,
    /// The stored blob of the layer, once written. `None` with `unwritten` set: a layer
    /// whose blob is made from the snapshot `chain_id` when something needs its bytes
    /// (docs/design.md §4.8).
    pub layer: Option<Descriptor>,
    /// How to make the blob of a layer recorded before it was written: its tar is the
    /// differ's over the snapshot `chain_id`, whose digest must come out as `diff_id`
    /// and its size as `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwritten: Option<UnwrittenLayer>,
    /// What the step changed in the image config (Env, Cmd, ...), as JSON.
    #[serde(default)]
    pub config_delta: serde_json::Value,
    pub created_at: i64,
    pub last_used: i64,
    pub size: u64,
}

/// The differ's options for a layer recorded with its diff_id and size but no blob
/// (`CacheRecord::unwritten`): making the blob again must give the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnwrittenLayer {
    /// The `SOURCE_DATE_EPOCH` the tar's mtimes were clamped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
}

impl CacheRecord {
    /// Whether the record names a layer whose blob is not written (see `unwritten`).
    pub fn is_unwritten(&self) -> bool {
        self.layer.is_none() && self.unwritten.is_some()
    }
}

/// `ctxstat`: (context, path) → what the file looked like when it was last hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub digest: Digest,
}

/// `leases`: lease id → what a running build or pull protects from GC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    #[serde(default = "v1")]
    pub v: u32,
    pub pid: u32,
    pub created_at: i64,
    pub expires_at: i64,
    pub digests: Vec<Digest>,
    pub snapshots: Vec<ChainId>,
}
