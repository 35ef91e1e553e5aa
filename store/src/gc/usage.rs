//! Disk usage (`system df`): what images and the build cache hold, from recorded
//! sizes. Blob sizes come from `blobs` records; snapshot sizes from the
//! `snapshot_sizes` tree, measured once per snapshot (`measure_snapshots`).
//!
//! Every marked object is counted once: under Images if any image holds it, else
//! under Build Cache if a cache record holds it. So Images SIZE + Build Cache SIZE
//! is the bytes of every referenced blob and snapshot on disk. The rows of single
//! images (`-v`) show what `images` shows instead: uncompressed layer sizes. Objects only a
//! running build holds (leased, not yet recorded) and orphans are in neither.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::chain_id::ChainId;
use crate::error::Result;
use crate::lease;
use crate::meta::{self, gc::World};
use crate::{Digest, Store};

use super::mark::mark;
use super::roots::{cache_manifest, Graph, Node};
use super::sweep;

/// One image as `system df -v` shows it.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    pub manifest: Digest,
    pub id: Digest,
    /// Full references of its tags, sorted; empty when dangling.
    pub tags: Vec<String>,
    pub created: Option<String>,
    /// docker's SIZE, the number `images` shows: its layers, uncompressed.
    pub size: u64,
    /// The part of `size` in layers another image has too.
    pub shared_size: u64,
}

/// One build-cache record as `system df -v` shows it.
#[derive(Debug, Clone)]
pub struct CacheUsage {
    pub key: String,
    /// "regular" (a layer step) or "image" (an exported image).
    pub kind: &'static str,
    /// Bytes this record holds that no image holds.
    pub size: u64,
    /// Whether an image uses what it holds.
    pub shared: bool,
    /// Whether a running build leases what it holds.
    pub in_use: bool,
    pub created_at: i64,
    pub last_used: i64,
}

/// The whole `system df` answer.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    pub images: Vec<ImageUsage>,
    pub cache: Vec<CacheUsage>,
    /// Bytes held by at least one image, each object once.
    pub images_size: u64,
    /// Bytes held only by untagged images (what `image prune -a` frees).
    pub images_reclaimable: u64,
    /// Bytes held by cache records and by no image.
    pub cache_size: u64,
    /// The part of `cache_size` no running build leases.
    pub cache_reclaimable: u64,
}

impl DiskUsage {
    pub fn tagged_images(&self) -> usize {
        self.images.iter().filter(|i| !i.tags.is_empty()).count()
    }
    pub fn cache_in_use(&self) -> usize {
        self.cache.iter().filter(|c| c.in_use).count()
    }
}

impl Store {
    /// What images and build cache hold on disk. Reads metadata; walks only
    /// snapshots never measured before.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        measure_snapshots(self)?;
        let world = meta::read(self, |m| m.load_world())?;
        Ok(compute(self, &world))
    }
}

fn compute(store: &Store, w: &World) -> DiskUsage {
    let g = super::graph_of(w);
    let now = meta::now();
    let size = |n: &Node| object_size(store, w, n);
    let mut tags: HashMap<&Digest, Vec<String>> = HashMap::new();
    for (r, t) in &w.tags {
        tags.entry(&t.manifest).or_default().push(r.clone());
    }
    let objects: BTreeMap<&Digest, HashSet<Node>> = w
        .manifests
        .keys()
        .map(|d| (d, mark(Graph::image_roots(d), |n| g.refs(n))))
        .collect();
    let mut holders: HashMap<&Node, usize> = HashMap::new();
    for set in objects.values() {
        for n in set {
            *holders.entry(n).or_default() += 1;
        }
    }
    // Per image, as `images` and docker count it: uncompressed layers, each layer shared
    // when another image has the same diff_id.
    let mut layer_users: HashMap<&Digest, usize> = HashMap::new();
    for rec in w.manifests.values() {
        let unique: HashSet<&Digest> = rec.layers.iter().map(|l| &l.diff_id).collect();
        for diff_id in unique {
            *layer_users.entry(diff_id).or_default() += 1;
        }
    }
    let layer_size = |l: &crate::LayerRef| {
        w.layers
            .get(&l.diff_id)
            .and_then(|r| r.uncompressed_size)
            .unwrap_or(l.blob.size)
    };
    let mut out = DiskUsage::default();
    // A platform's manifest of an image index is part of that image (as in `images`).
    let children: HashSet<&Digest> = w
        .manifests
        .values()
        .flat_map(|r| &r.manifests)
        .map(|c| &c.manifest.digest)
        .collect();
    for d in objects.keys() {
        if children.contains(d) && !tags.contains_key(d) {
            continue;
        }
        let rec = &w.manifests[*d];
        let mut t = tags.get(d).cloned().unwrap_or_default();
        t.sort();
        out.images.push(ImageUsage {
            manifest: (*d).clone(),
            id: rec.config.digest.clone(),
            tags: t,
            created: rec.created.clone(),
            size: rec.image_size,
            shared_size: rec
                .layers
                .iter()
                .filter(|l| layer_users.get(&l.diff_id).is_some_and(|n| *n > 1))
                .map(layer_size)
                .sum(),
        });
    }
    out.images_size = holders.keys().map(|n| size(n)).sum();
    let tagged_roots = w
        .tags
        .iter()
        .flat_map(|(_, t)| Graph::image_roots(&t.manifest));
    let held_by_tagged = mark(tagged_roots, |n| g.refs(n));
    out.images_reclaimable = holders
        .keys()
        .filter(|n| !held_by_tagged.contains(n))
        .map(|n| size(n))
        .sum();

    let live_leases = w.leases.iter().filter(|(_, l)| lease::is_live(l, now));
    let leased = mark(live_leases.flat_map(|(_, l)| Graph::lease_roots(l)), |n| {
        g.refs(n)
    });
    let mut cache_objects: HashSet<Node> = HashSet::new();
    for (key, rec) in &w.cache {
        let set = mark(g.cache_roots(rec), |n| g.refs(n));
        let own: Vec<&Node> = set.iter().filter(|n| !holders.contains_key(n)).collect();
        out.cache.push(CacheUsage {
            key: key.clone(),
            kind: if rec.layer.is_none() && cache_manifest(rec).is_some() {
                "image"
            } else {
                "regular"
            },
            size: own.iter().map(|n| size(n)).sum(),
            shared: set.iter().any(|n| holders.contains_key(n)),
            in_use: set.iter().any(|n| leased.contains(n)),
            created_at: rec.created_at,
            last_used: rec.last_used,
        });
        cache_objects.extend(own.into_iter().cloned());
    }
    out.cache_size = cache_objects.iter().map(size).sum();
    out.cache_reclaimable = cache_objects
        .iter()
        .filter(|n| !leased.contains(n))
        .map(size)
        .sum();
    out
}

/// Bytes of one object: recorded sizes first, the file system as a fallback.
pub(crate) fn object_size(store: &Store, w: &World, n: &Node) -> u64 {
    match n {
        Node::Blob(d) => match w.blobs.get(d) {
            Some(rec) => rec.size,
            None => std::fs::metadata(store.blob_path(d))
                .map(|m| m.len())
                .unwrap_or(0),
        },
        Node::Layer(_) => 0,
        Node::Snapshot(c) => match w.snapshot_sizes.get(c) {
            Some(s) => *s,
            None => {
                let dir = sweep::snapshot_root(store.layout(), c);
                if dir.exists() {
                    sweep::tree_size(&dir)
                } else {
                    0
                }
            }
        },
    }
}

/// Records the size of every snapshot directory not measured yet. The walks run
/// outside any transaction; a committed snapshot never changes.
pub fn measure_snapshots(store: &Store) -> Result<()> {
    let known = meta::read(store, |m| m.snapshot_sizes())?;
    let missing: Vec<ChainId> = sweep::snapshot_dirs(store.layout())?
        .into_iter()
        .filter(|c| !known.contains_key(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let measured: Vec<(ChainId, u64)> = missing
        .into_iter()
        .map(|c| {
            let size = sweep::tree_size(&sweep::snapshot_root(store.layout(), &c));
            (c, size)
        })
        .collect();
    meta::write(store, |m| {
        let now = meta::now();
        for (c, size) in &measured {
            // Gone meanwhile (swept by another GC): record nothing.
            if sweep::snapshot_root(store.layout(), c).exists() {
                m.put_snapshot_size(c, *size, now)?;
            }
        }
        Ok(())
    })
}
