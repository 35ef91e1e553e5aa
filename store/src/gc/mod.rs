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
//! remaining cache record or a live lease. There is no time rule for blobs and
//! snapshots: every writer leases an object before it appears under its name, and
//! every reuser leases it before checking that it exists (`lease`), while this run
//! holds the lock from reading the leases to hiding what it removes. So what a prune
//! deletes it frees in the same run. Only temps keep an age rule (`sweep::Temp`):
//! their names carry the writer's pid, which the kernel may reuse.
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
use std::time::SystemTime;

use crate::chain_id::ChainId;
use crate::error::Result;
use crate::lease;
use crate::meta::{self, gc::World};
use crate::{Digest, Store};

pub use policy::{CachePolicy, ImageFilter, ImagePolicy, LabelFilter};
use roots::{Graph, ManifestRefs, Node};

/// What one `prune` run removes.
#[derive(Debug, Clone, Default)]
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
            let chosen_images: HashSet<&Digest> = chosen.images.iter().collect();
            let (untagged, kept_tags): (Vec<_>, Vec<_>) = std::mem::take(&mut world.tags)
                .into_iter()
                .partition(|(_, t)| chosen_images.contains(&t.manifest));
            for (key, _) in &untagged {
                m.remove(meta::TAGS, key.as_str())?;
            }
            world.tags = kept_tags;
            if !untagged.is_empty() {
                self.write_index(m)?;
            }
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
            let doomed = sweep_records(m, &layout, &world, &live)?;
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
            if (t.is_trash || opts.leftovers) && t.is_stale(start) {
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
/// cache record, every lease in `w` (the caller has dropped dead leases) and every blob
/// another tool's `index.json` entry reaches.
pub(crate) fn roots_of(w: &World, g: &Graph) -> Vec<Node> {
    let mut out: Vec<Node> = w.foreign.iter().cloned().map(Node::Blob).collect();
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
/// blobs and snapshots whose files must go.
fn sweep_records(
    m: &meta::Meta,
    layout: &crate::Layout,
    w: &World,
    live: &HashSet<Node>,
) -> Result<Doomed> {
    let removable = |node: &Node| !live.contains(node);

    let mut blobs: BTreeSet<Digest> = w.blobs.keys().cloned().collect();
    blobs.extend(sweep::blob_files(layout)?);
    let mut doomed = Doomed {
        blobs: Vec::new(),
        snapshots: Vec::new(),
    };
    for d in blobs {
        let node = Node::Blob(d.clone());
        let rec = w.blobs.get(&d);
        if removable(&node) {
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
        if removable(&node) {
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
