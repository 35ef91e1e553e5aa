//! What keeps what: the GC's nodes, the edges between them (from the metadata records),
//! and the roots (tags, image records, build-cache records, live leases).
//!
//! ```text
//! tag ─────────────┐
//! image record ────┼─► Blob(manifest) ─► Blob(config)
//! cache (image) ───┘         │         ─► Blob(layer)   for every layer
//!                            │         ─► Layer(diff_id) ─► Blob(every stored form)
//!                            └───────────► Snapshot(chain id of every layer prefix)
//! cache (layer) ───► Blob(layer), Layer(diff_id), Snapshot(chain id)
//! cache (unwritten layer) ► Layer(diff_id), Snapshot(chain id): the snapshot is the
//!                  layer's only copy until its blob is made (docs/design.md §4.8)
//! lease ───────────► Blob(each digest) (a manifest digest expands as above), Snapshot(each)
//! Snapshot ────────► Snapshot(parent), when a `snapshots` record names one
//! Blob(index) ─────► Blob(manifest) of every platform (then as above)
//! ```
//!
//! An image index is recorded as an image whose record lists its platforms' manifests
//! (`ManifestRecord::manifests`): a tag, lease or record holding the index holds them all.
//!
//! A manifest's edges come from its `manifests` record, never from reading the
//! blob: GC walks metadata, not files (docs/design.md §4.7).
//!
//! `Layer(diff_id) ─► every stored form` is also what keeps the gzip form a push makes
//! of a plain layer (`compressed`): it lives exactly as long as some image or cache
//! record holds the layer, so a second push does not compress again, and the prune that
//! frees the layer frees both forms.

use std::collections::HashMap;

use crate::chain_id::{chain_ids, ChainId};
use crate::records::{CacheRecord, LeaseRecord, ManifestRecord};
use crate::Digest;

/// One thing the sweep can remove.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A file in `blobs/sha256/` (and its `blobs` record).
    Blob(Digest),
    /// A `layers` record, by diff_id.
    Layer(Digest),
    /// A directory `snapshots/<hex>/` (and its `snapshots` record).
    Snapshot(ChainId),
}

/// The edges of one manifest.
#[derive(Debug, Clone)]
pub struct ManifestRefs {
    pub config: Digest,
    /// (stored blob, diff_id, chain id of the stack up to this layer), bottom first.
    pub layers: Vec<(Digest, Digest, ChainId)>,
    /// An image index's platform manifests; empty for a single-platform image.
    pub children: Vec<Digest>,
}

impl ManifestRefs {
    pub fn of(rec: &ManifestRecord) -> ManifestRefs {
        let diff_ids: Vec<Digest> = rec.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        ManifestRefs {
            config: rec.config.digest.clone(),
            layers: rec
                .layers
                .iter()
                .zip(chains)
                .map(|(l, c)| (l.blob.digest.clone(), l.diff_id.clone(), c))
                .collect(),
            children: rec
                .manifests
                .iter()
                .map(|c| c.manifest.digest.clone())
                .collect(),
        }
    }
}

/// Every edge the mark phase may follow, loaded from the metadata once per GC run.
#[derive(Debug, Default)]
pub struct Graph {
    pub manifests: HashMap<Digest, ManifestRefs>,
    /// diff_id → its stored forms (`layers` records).
    pub layers: HashMap<Digest, Vec<Digest>>,
    /// chain → parent chain (`snapshots` records that name one).
    pub parents: HashMap<ChainId, ChainId>,
}

impl Graph {
    /// What `node` holds alive. Pure: reads only the graph.
    pub fn refs(&self, node: &Node) -> Vec<Node> {
        match node {
            Node::Blob(d) => match self.manifests.get(d) {
                None => Vec::new(),
                Some(m) => {
                    let mut out = Vec::with_capacity(1 + 3 * m.layers.len() + m.children.len());
                    out.push(Node::Blob(m.config.clone()));
                    out.extend(m.children.iter().cloned().map(Node::Blob));
                    for (blob, diff_id, chain) in &m.layers {
                        out.push(Node::Blob(blob.clone()));
                        out.push(Node::Layer(diff_id.clone()));
                        out.push(Node::Snapshot(chain.clone()));
                    }
                    out
                }
            },
            Node::Layer(diff_id) => self
                .layers
                .get(diff_id)
                .map(|forms| forms.iter().cloned().map(Node::Blob).collect())
                .unwrap_or_default(),
            Node::Snapshot(c) => self
                .parents
                .get(c)
                .map(|p| vec![Node::Snapshot(p.clone())])
                .unwrap_or_default(),
        }
    }

    /// The roots one image record (or tag) contributes.
    pub fn image_roots(manifest: &Digest) -> Vec<Node> {
        vec![Node::Blob(manifest.clone())]
    }

    /// The roots one build-cache record contributes. An image-level record (the
    /// builder's exported manifest) holds the image only while its manifest is
    /// recorded: holding the manifest blob without its layers would let the
    /// builder's "cached image" path find a manifest whose layers were swept.
    pub fn cache_roots(&self, rec: &CacheRecord) -> Vec<Node> {
        let mut out = Vec::new();
        if let Some(layer) = &rec.layer {
            out.push(Node::Blob(layer.digest.clone()));
        }
        if let Some(diff_id) = &rec.diff_id {
            out.push(Node::Layer(diff_id.clone()));
        }
        if let Some(chain) = &rec.chain_id {
            out.push(Node::Snapshot(chain.clone()));
        }
        if let Some(m) = cache_manifest(rec) {
            if self.manifests.contains_key(&m) {
                out.push(Node::Blob(m));
            }
        }
        out
    }

    /// The roots one live lease contributes.
    pub fn lease_roots(rec: &LeaseRecord) -> Vec<Node> {
        rec.digests
            .iter()
            .cloned()
            .map(Node::Blob)
            .chain(rec.snapshots.iter().cloned().map(Node::Snapshot))
            .collect()
    }
}

/// The manifest an image-level cache record names (`config_delta.manifest`).
pub fn cache_manifest(rec: &CacheRecord) -> Option<Digest> {
    rec.config_delta
        .get("manifest")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
}
