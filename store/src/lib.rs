//! strata's content-addressed store.
//!
//! The root directory *is* an OCI image layout (see `layout`). A blob's life:
//! `Store::writer(lease)` streams it into `ingest/` while hashing → `BlobWriter::commit`
//! verifies size and digest, leases it, fsyncs and renames it into `blobs/sha256/<hex>` → it is
//! visible to every reader (readers never touch the metadata) → `add_image`/`tag` record
//! what refers to it in the metadata database and rewrite `index.json` → GC sweeps it once nothing
//! (tag, build cache, lease) reaches it.
//!
//! `Store` holds only the root path, never an open database: each operation opens
//! `meta/` for one short transaction (see `meta`), and several processes share a root.

pub mod archive;
pub mod chain_id;
pub mod chunk_crc;
pub mod compressed;
pub mod decompress;
pub mod digest;
pub mod dir_lock;
pub mod duration;
pub mod error;
pub mod extract;
pub mod gc;
pub mod image;
pub mod ingest;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod media_types;
pub mod meta;
pub mod oci_index;
pub mod overlay_xattr;
pub mod platform;
pub mod read_full;
pub mod records;
pub mod reference;
pub mod single_flight;
pub mod snapshot;
pub mod unsafe_entry;
pub mod verify;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use chain_id::ChainId;
pub use digest::{Digest, DigestError, Sha256Reader, Sha256Writer};
pub use error::{ErrorKind, Result, StoreError};
pub use image::{ImageRecord, NewImage, Removed};
pub use ingest::BlobWriter;
pub use layout::Layout;
pub use lease::Lease;
pub use records::{CacheRecord, LayerRef, ManifestRecord, StatRecord, UnwrittenLayer};
pub use reference::{Reference, ReferenceError};

/// An OCI content descriptor (the subset we use).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A handle on one root. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
}

impl Store {
    /// Opens the store at `root`, creating the layout if missing.
    /// Adopts what other OCI tools added to `index.json` (`oci_index`).
    pub fn open(root: &Path) -> Result<Store> {
        let layout = Layout::new(root);
        layout.create()?;
        let store = Store { layout };
        store.adopt_index()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    // ---- blobs: readers never touch the metadata ----

    /// A writer for one new blob, which `lease` protects from the moment it is
    /// committed; see `BlobWriter` for the contract.
    pub fn writer(&self, lease: &Lease) -> Result<BlobWriter> {
        BlobWriter::create(self, lease)
    }

    /// Stores `bytes` as one blob (manifests, configs, small files), leased by `lease`.
    pub fn put_blob(&self, lease: &Lease, bytes: &[u8], media_type: &str) -> Result<Descriptor> {
        use std::io::Write;
        let mut w = self.writer(lease)?.with_media_type(media_type);
        w.write_all(bytes)
            .map_err(StoreError::io("writing", w.ingest_path().to_path_buf()))?;
        w.commit(Some(bytes.len() as u64), None)
    }

    /// Records committed blobs (from `BlobWriter::commit_unrecorded`) in one transaction.
    pub fn record_blobs(&self, blobs: &[Descriptor]) -> Result<()> {
        meta::record_blobs(self, blobs)
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.layout.blob(d)
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::BlobMissing {
                    digest: d.clone(),
                    root: self.root().to_path_buf(),
                }
            } else {
                StoreError::io("opening blob", &p)(e)
            }
        })
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut f = self.open_blob(d)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)
            .map_err(StoreError::io("reading blob", self.blob_path(d)))?;
        Ok(v)
    }

    // ---- snapshots ----

    pub fn chain_ids(diff_ids: &[Digest]) -> Vec<ChainId> {
        chain_id::chain_ids(diff_ids)
    }

    /// `ROOT/snapshots/<hex>/fs`.
    pub fn snapshot_dir(&self, chain: &ChainId) -> PathBuf {
        self.layout.snapshots_dir().join(chain.hex()).join("fs")
    }

    // ---- leases ----

    /// Records a lease for this process; see `lease`.
    pub fn lease(&self, ttl: Duration) -> Result<Lease> {
        Lease::create(self, ttl)
    }

    // ---- build cache ----

    pub fn cache_get(&self, key: &str) -> Result<Option<CacheRecord>> {
        meta::read(self, |m| m.get(meta::CACHE, key))
    }

    /// Records a build cache record, without an fsync: the build's image commit makes it
    /// durable (docs/design.md §3); a machine lost before that costs a cache miss.
    pub fn cache_put(&self, key: &str, rec: &CacheRecord) -> Result<()> {
        meta::write_deferred(self, |m| m.put(meta::CACHE, key, rec))
    }

    // ---- context stat cache ----

    /// Every recorded stat of one build context, keyed by path.
    pub fn ctxstat_get_all(&self, context: &str) -> Result<Vec<(String, StatRecord)>> {
        meta::read(self, |m| m.ctxstats(context))
    }

    /// Records context file stats, without an fsync (like `cache_put`): a lost record
    /// only means the file is hashed again.
    pub fn ctxstat_put_many(&self, context: &str, recs: &[(String, StatRecord)]) -> Result<()> {
        meta::write_deferred(self, |m| {
            for (path, rec) in recs {
                m.put_ctxstat(context, path, rec)?;
            }
            Ok(())
        })
    }
}
