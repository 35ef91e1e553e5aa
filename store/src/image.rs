//! Images: manifests recorded in sled, tags, resolution of user input, and the
//! derived `index.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::records::LayerRef;
use crate::{Digest, Reference, Store};

/// An image as the CLI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Digest,
    pub media_type: String,
    pub manifest_size: u64,
    pub config: crate::Descriptor,
    pub layers: Vec<LayerRef>,
    /// The config's `created` (RFC 3339), if any.
    pub created: Option<String>,
    pub added_at: i64,
    /// docker's SIZE column, in bytes.
    pub size: u64,
    /// Every tag that names this image, normalised.
    pub tags: Vec<Reference>,
}

impl ImageRecord {
    /// docker's IMAGE ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.config.digest
    }
}

impl Store {
    /// Records an image whose manifest blob (and every blob it names) is already
    /// committed, and moves `tag` to it (a previously tagged image becomes dangling).
    pub fn add_image(&self, manifest: &Digest, tag: Option<&Reference>) -> Result<ImageRecord> {
        let _ = (manifest, tag);
        Err(StoreError::NotImplemented { what: "add_image" })
    }

    /// Tag or digest → manifest digest.
    pub fn resolve(&self, r: &Reference) -> Result<Digest> {
        Err(StoreError::ImageNotFound {
            reference: r.familiar(),
        })
    }

    /// A reference, or a full or short image id (config digest prefix, like docker).
    pub fn resolve_str(&self, s: &str) -> Result<Digest> {
        Err(StoreError::ImageNotFound {
            reference: s.to_string(),
        })
    }

    pub fn image(&self, manifest: &Digest) -> Result<ImageRecord> {
        Err(StoreError::ImageNotFound {
            reference: manifest.to_string(),
        })
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(Vec::new())
    }

    pub fn tag(&self, manifest: &Digest, r: &Reference) -> Result<()> {
        let _ = (manifest, r);
        Err(StoreError::NotImplemented { what: "tag" })
    }

    pub fn untag(&self, r: &Reference) -> Result<()> {
        Err(StoreError::TagNotFound {
            reference: r.familiar(),
        })
    }

    /// Unpacks each layer of the image once; returns lowerdirs, top layer first.
    pub fn ensure_snapshots(&self, manifest: &Digest) -> Result<Vec<PathBuf>> {
        let _ = manifest;
        Err(StoreError::NotImplemented {
            what: "ensure_snapshots",
        })
    }

    /// Moves a built upperdir `dir` in as the snapshot of `chain`.
    pub fn commit_snapshot(
        &self,
        chain: &crate::ChainId,
        parent: Option<&crate::ChainId>,
        dir: &std::path::Path,
    ) -> Result<PathBuf> {
        let _ = (chain, parent, dir);
        Err(StoreError::NotImplemented {
            what: "commit_snapshot",
        })
    }
}
