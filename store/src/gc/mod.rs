//! Garbage collection: prune policies, then mark and sweep (containerd style).
//!
//! One run (`Store::prune`):
//!
//! 1. Under one open of the metadata database (the lock is held throughout):
//!    load every record; drop leases whose pid is gone or whose expiry passed;
//!    pick the images and build-cache records the policy removes (`policy`) and
//!    delete those records; mark from what is left (`roots`, `mark`); delete the
//!    records of every unmarked blob, layer and snapshot; flush. *Metadata first.*
//! 2. Still under the lock, rename every unmarked blob and snapshot into a trash
//!    directory (`sweep::Trash`), so a process that leases an object and then
//!    checks that it exists can never see one that is about to disappear.
//! 3. Lock released: delete the trash, and (system prune) stale temps left by
//!    dead processes. *Files after.*
//!
//! What is never removed: anything marked from a tag, an image record, a
//! remaining cache record or a live lease; and any object that appeared (file
//! mtime/ctime, record time) less than `GRACE` before the run started. A build
//! commits a blob a moment before it records and leases it, and committing a blob
//! that already exists refreshes its mtime, so the grace also covers a build that
//! is about to reuse a layer of an image this run prunes (the image record goes at
//! once; its young files go in a later run).
//!
//! A crash anywhere leaves unreferenced files (orphans) or trash; the next run
//! removes them, which is how a half-done sweep gets finished.

pub mod mark;
pub mod policy;
pub mod roots;
pub mod sweep;
pub mod usage;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use crate::chain_id::ChainId;
use crate::error::Result;
use crate::lease;
use crate::meta::{self, gc::World};
use crate::{Digest, Store};

pub use policy::{CachePolicy, ImageFilter, ImagePolicy, LabelFilter};
use roots::{Graph, ManifestRefs, Node};

/// How long before a run's start an unreferenced object must have appeared to be
/// removable (see the module doc).
pub const GRACE: Duration = Duration::from_secs(2);

/// What one `prune` run removes.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub images: ImagePolicy,
    pub image_filter: ImageFilter,
    pub cache: CachePolicy,
    /// Only cache records last used before this time (unix seconds) are removed.
    pub cache_until: Option<i64>,
    /// Stop removing cache records once the build cache holds at most this many bytes.
    pub keep_storage: Option<u64>,
    /// Also remove temps left by dead processes (`ingest/*`, `snapshots/build-*`, …).
    pub leftovers: bool,
    /// Nothing that appeared less than this long before the run is removed (`GRACE`).
    pub grace: Duration,
}

impl Default for PruneOptions {
    fn default() -> PruneOptions {
        PruneOptions {
            images: ImagePolicy::default(),
            image_filter: ImageFilter::default(),
            cache: CachePolicy::default(),
            cache_until: None,
            keep_storage: None,
            leftovers: false,
            grace: GRACE,
        }
    }
}

/// An image `prune` deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedImage {
    pub manifest: Digest,
    /// docker's image id: the config digest.
    pub id: Digest,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub images_deleted: Vec<DeletedImage>,
    /// Keys of the build-cache records removed.
    pub cache_deleted: Vec<String>,
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    pub temps_removed: usize,
    pub leases_dropped: usize,
    /// Bytes freed on disk (blobs, snapshots and temps).
    pub reclaimed: u64,
}

impl Store {
    /// Runs one GC: the policy in `opts`, then mark and sweep. See the module doc.
    /// Safe to run while builds and pulls run in other processes.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        if opts.keep_storage.is_some() {
            // Sizes are needed inside the transaction; measure outside it.
            usage::measure_snapshots(self)?;
        }
        let start = SystemTime::now();
        let layout = self.layout().clone();
        let (mut report, trash) = meta::write(self, |m| {
            let start_secs = meta::now();
            let mut world = m.load_world()?;
            let mut report = PruneReport::default();

            // Leases: a dead holder or a passed expiry ends the protection.
            let (live, dead): (Vec<_>, Vec<_>) = std::mem::take(&mut world.leases)
                .into_iter()
                .partition(|(_, rec)| lease::is_live(rec, start_secs));
            for (id, _) in &dead {
                m.remove(meta::LEASES, id)?;
            }
            report.leases_dropped = dead.len();
            world.leases = live;

            let mut graph = graph_of(&world);

            // Policy: records first.
            let chosen = policy::choose(self, &world, &graph, opts)?;
            for d in &chosen.images {
                if let Some(rec) = world.manifests.remove(d) {
                    m.remove(meta::MANIFESTS, d)?;
                    graph.manifests.remove(d);
                    report.images_deleted.push(DeletedImage {
                        manifest: d.clone(),
                        id: rec.config.digest,
                    });
                }
            }
            let dropped: BTreeSet<&String> = chosen.cache.iter().collect();
            let mut kept_cache = Vec::with_capacity(world.cache.len());
            for (key, rec) in std::mem::take(&mut world.cache) {
                if dropped.contains(&key) {
                    m.remove(meta::CACHE, &key)?;
                    report.cache_deleted.push(key);
                } else {
                    kept_cache.push((key, rec));
                }
            }
            world.cache = kept_cache;

            // Mark from what is left; everything else is garbage.
            let live = mark::mark(roots_of(&world, &graph), |n| graph.refs(n));
            let doomed = sweep_records(m, &layout, &world, &live, opts.grace, start)?;
            m.flush()?;

            // Out of sight while the lock is still held; deleted after.
            let mut trash = sweep::Trash::new(&layout);
            for d in &doomed.blobs {
                if trash.take_blob(&layout, d)? {
                    report.blobs_removed += 1;
                }
            }
            for c in &doomed.snapshots {
                if trash.take_snapshot(&layout, c)? {
                    report.snapshots_removed += 1;
                }
            }
            Ok((report, trash))
        })?;
        report.reclaimed += trash.empty();
        for t in sweep::temps(self.layout())? {
            if (t.is_trash || opts.leftovers) && t.is_stale(start, opts.grace.max(GRACE)) {
                report.reclaimed += sweep::remove_tree(&t.path);
                report.temps_removed += 1;
            }
        }
        Ok(report)
    }
}

/// Every edge GC may follow, from the records.
pub(crate) fn graph_of(w: &World) -> Graph {
    let mut g = Graph::default();
    for (d, rec) in &w.manifests {
        g.manifests.insert(d.clone(), ManifestRefs::of(rec));
    }
    for (diff_id, rec) in &w.layers {
        g.layers.insert(
            diff_id.clone(),
            rec.blobs.iter().map(|b| b.digest.clone()).collect(),
        );
    }
    for (c, rec) in &w.snapshots {
        if let Some(p) = &rec.parent {
            g.parents.insert(c.clone(), p.clone());
        }
    }
    g
}

/// Tags, every image record (an untagged image is an image until pruned), every
/// cache record and every lease in `w` (the caller has dropped dead leases).
pub(crate) fn roots_of(w: &World, g: &Graph) -> Vec<Node> {
    let mut out = Vec::new();
    for (_, t) in &w.tags {
        out.extend(Graph::image_roots(&t.manifest));
    }
    for d in w.manifests.keys() {
        out.extend(Graph::image_roots(d));
    }
    for (_, rec) in &w.cache {
        out.extend(g.cache_roots(rec));
    }
    for (_, rec) in &w.leases {
        out.extend(Graph::lease_roots(rec));
    }
    out
}

struct Doomed {
    blobs: Vec<Digest>,
    snapshots: Vec<ChainId>,
}

/// Deletes the records of every unmarked blob, layer and snapshot and returns the
/// blobs and snapshots whose files must go: those that appeared at least `grace`
/// before the run started.
fn sweep_records(
    m: &meta::Meta,
    layout: &crate::Layout,
    w: &World,
    live: &HashSet<Node>,
    grace: Duration,
    start: SystemTime,
) -> Result<Doomed> {
    // File times, not record times: they have nanoseconds, and a file always
    // appears before its record (rename, then record), so a record whose file is
    // gone protects nothing.
    let removable = |node: &Node, path: &std::path::Path| {
        !live.contains(node) && sweep::appeared(path).is_none_or(|t| t + grace <= start)
    };

    let mut blobs: BTreeSet<Digest> = w.blobs.keys().cloned().collect();
    blobs.extend(sweep::blob_files(layout)?);
    let mut doomed = Doomed {
        blobs: Vec::new(),
        snapshots: Vec::new(),
    };
    for d in blobs {
        let node = Node::Blob(d.clone());
        let rec = w.blobs.get(&d);
        if removable(&node, &layout.blob(&d)) {
            if rec.is_some() {
                m.remove(meta::BLOBS, &d)?;
            }
            doomed.blobs.push(d);
        }
    }

    for diff_id in w.layers.keys() {
        if !live.contains(&Node::Layer(diff_id.clone())) {
            m.remove(meta::LAYERS, diff_id)?;
        }
    }

    let mut snaps: BTreeSet<ChainId> = w.snapshots.keys().cloned().collect();
    snaps.extend(sweep::snapshot_dirs(layout)?);
    let on_disk: BTreeSet<ChainId> = sweep::snapshot_dirs(layout)?.into_iter().collect();
    for c in snaps {
        let node = Node::Snapshot(c.clone());
        let rec = w.snapshots.get(&c);
        let path = sweep::snapshot_root(layout, &c);
        if removable(&node, &path) {
            if rec.is_some() {
                m.remove(meta::SNAPSHOTS, &c)?;
            }
            doomed.snapshots.push(c);
        }
    }
    let gone: BTreeSet<&ChainId> = doomed.snapshots.iter().collect();
    for c in w.snapshot_sizes.keys() {
        if !on_disk.contains(c) || gone.contains(c) {
            m.remove_snapshot_size(c)?;
        }
    }
    Ok(doomed)
}
