//! Prune policies: which image records and build-cache records a run deletes
//! before the mark phase decides which files go with them.
//!
//! * `image prune` deletes dangling images and the cache records only they used:
//!   a layer record whose blob a pruned image used and no remaining image uses, and
//!   an image-level record (the builder's exported manifest) naming a pruned image.
//!   So the layers really come back (docker with BuildKit keeps them in its cache
//!   and reclaims 0B: moby/buildkit#1358), while layers shared with a remaining
//!   image, and the cache records that rebuild it, stay.
//! * `builder prune` deletes cache records no remaining image shares (BuildKit's
//!   "unused"), or every record with `--all`; `--keep-storage` stops once the build
//!   cache fits, least recently used first; `until` spares recent ones.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::Result;
use crate::meta::gc::World;
use crate::records::CacheRecord;
use crate::{Digest, Store};

use super::mark::mark;
use super::roots::{cache_manifest, Graph, Node};
use super::usage;

/// Which images a run removes. An image a live lease names (a running build's base,
/// a pull in progress) is never removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImagePolicy {
    #[default]
    Keep,
    /// Untagged images that no kept image index refers to: an untagged index is
    /// dangling, and the platforms' manifests of a kept index are part of that image, not
    /// dangling images of their own.
    Dangling,
    /// Every image without a tag; a kept index's platform manifests stay with it, as
    /// for `Dangling`.
    Untagged,
    /// Every image, tagged or not, with its tags (`image prune -a`, `system prune
    /// -a`): docker removes every image no container uses, and strata runs no
    /// containers.
    All,
}

/// Which build-cache records a run removes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePolicy {
    #[default]
    Keep,
    /// Records only the images pruned by this run used (`image prune`).
    OfPrunedImages,
    /// Records no remaining image shares (`builder prune`, `system prune`).
    Unshared,
    /// Every record (`builder prune --all`, `system prune -a`).
    All,
}

/// docker's `label=k`, `label=k=v`, `label!=k`, `label!=k=v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
    /// `label!=`: prune only images that do *not* match.
    pub negate: bool,
}

impl LabelFilter {
    /// Whether `labels` has the key (and the value, when the filter names one).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match (&self.value, labels.get(&self.key)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        }
    }
}

/// docker's image prune filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// Only images created before this time (unix seconds).
    pub until: Option<i64>,
    pub labels: Vec<LabelFilter>,
}

impl ImageFilter {
    /// Whether an image created at `created` with `labels` may be pruned. As docker:
    /// every `label=` must match; the image is spared when every `label!=` matches.
    pub fn allows(&self, created: i64, labels: &BTreeMap<String, String>) -> bool {
        if self.until.is_some_and(|until| created >= until) {
            return false;
        }
        let (neg, pos): (Vec<_>, Vec<_>) = self.labels.iter().partition(|l| l.negate);
        if !pos.iter().all(|l| l.matches(labels)) {
            return false;
        }
        neg.is_empty() || !neg.iter().all(|l| l.matches(labels))
    }
}

/// The records a run deletes.
pub struct Chosen {
    pub images: Vec<Digest>,
    pub cache: Vec<String>,
}

/// Applies `opts` to the records in `w`. Leased images are never chosen.
pub fn choose(store: &Store, w: &World, g: &Graph, opts: &super::PruneOptions) -> Result<Chosen> {
    let leased: HashSet<&Digest> = w.leases.iter().flat_map(|(_, l)| &l.digests).collect();
    let tagged: HashSet<&Digest> = w.tags.iter().map(|(_, t)| &t.manifest).collect();
    let mut images = Vec::new();
    if opts.images != ImagePolicy::Keep {
        // Indexes and single images first; a platform's manifest of an index goes only
        // with every index that lists it (below).
        let is_child: HashSet<&Digest> = w
            .manifests
            .values()
            .flat_map(|r| &r.manifests)
            .map(|c| &c.manifest.digest)
            .collect();
        for (d, rec) in &w.manifests {
            if is_child.contains(d)
                || leased.contains(d)
                || (tagged.contains(d) && opts.images != ImagePolicy::All)
            {
                continue;
            }
            let created = rec
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|c| c.timestamp())
                .unwrap_or(rec.added_at);
            let labels = if opts.image_filter.labels.is_empty() {
                BTreeMap::new()
            } else {
                config_labels(store, &rec.config.digest)
            };
            if opts.image_filter.allows(created, &labels) {
                images.push(d.clone());
            }
        }
        let chosen: HashSet<Digest> = images.iter().cloned().collect();
        for (d, _) in w.manifests.iter().filter(|(d, _)| is_child.contains(d)) {
            let all_holders_go = w
                .manifests
                .iter()
                .filter(|(_, r)| r.manifests.iter().any(|c| c.manifest.digest == *d))
                .all(|(i, _)| chosen.contains(i));
            if all_holders_go
                && !leased.contains(d)
                && (!tagged.contains(d) || opts.images == ImagePolicy::All)
            {
                images.push(d.clone());
            }
        }
    }
    let pruned: HashSet<&Digest> = images.iter().collect();
    let blobs_of = |which: &dyn Fn(&Digest) -> bool| -> HashSet<Digest> {
        let roots = w
            .manifests
            .keys()
            .filter(|d| which(d))
            .flat_map(Graph::image_roots);
        mark(roots, |n| g.refs(n))
            .into_iter()
            .filter_map(|n| match n {
                Node::Blob(b) => Some(b),
                _ => None,
            })
            .collect()
    };
    let remaining = blobs_of(&|d| !pruned.contains(d));
    let of_pruned = if opts.cache == CachePolicy::OfPrunedImages {
        blobs_of(&|d| pruned.contains(d))
    } else {
        HashSet::new()
    };

    let mut candidates: Vec<&(String, CacheRecord)> = w
        .cache
        .iter()
        .filter(|(_, rec)| opts.cache_until.is_none_or(|until| rec.last_used < until))
        .filter(|(_, rec)| {
            let layer = rec.layer.as_ref().map(|l| &l.digest);
            let manifest = cache_manifest(rec);
            match opts.cache {
                CachePolicy::Keep => false,
                CachePolicy::All => true,
                CachePolicy::OfPrunedImages => {
                    layer.is_some_and(|b| of_pruned.contains(b) && !remaining.contains(b))
                        || manifest.is_some_and(|m| pruned.contains(&m))
                }
                CachePolicy::Unshared => {
                    !(layer.is_some_and(|b| remaining.contains(b))
                        || manifest
                            .is_some_and(|m| w.manifests.contains_key(&m) && !pruned.contains(&m)))
                }
            }
        })
        .collect();
    // Least recently used first.
    candidates.sort_by(|a, b| {
        (a.1.last_used, a.1.created_at, &a.0).cmp(&(b.1.last_used, b.1.created_at, &b.0))
    });
    let cache = match opts.keep_storage {
        None => candidates.into_iter().map(|(k, _)| k.clone()).collect(),
        Some(limit) => keep_storage(store, w, g, &pruned, &candidates, limit),
    };
    Ok(Chosen { images, cache })
}

/// The LRU prefix of `candidates` whose removal brings the build cache (bytes held
/// by cache records and by no remaining image) down to `limit`.
fn keep_storage(
    store: &Store,
    w: &World,
    g: &Graph,
    pruned: &HashSet<&Digest>,
    candidates: &[&(String, CacheRecord)],
    limit: u64,
) -> Vec<String> {
    let image_roots = w
        .manifests
        .keys()
        .filter(|d| !pruned.contains(d))
        .flat_map(Graph::image_roots);
    let held_by_images = mark(image_roots, |n| g.refs(n));
    let objects = |rec: &CacheRecord| -> Vec<Node> {
        mark(g.cache_roots(rec), |n| g.refs(n))
            .into_iter()
            .filter(|n| !held_by_images.contains(n))
            .collect()
    };
    let mut holders: HashMap<Node, usize> = HashMap::new();
    for (_, rec) in &w.cache {
        for n in objects(rec) {
            *holders.entry(n).or_default() += 1;
        }
    }
    let size = |n: &Node| usage::object_size(store, w, n);
    let mut total: u64 = holders.keys().map(size).sum();
    let mut out = Vec::new();
    for (key, rec) in candidates {
        if total <= limit {
            break;
        }
        for n in objects(rec) {
            if let Some(count) = holders.get_mut(&n) {
                *count -= 1;
                if *count == 0 {
                    total = total.saturating_sub(size(&n));
                }
            }
        }
        out.push(key.clone());
    }
    out
}

/// `config.Labels` of an image config blob; empty when unreadable.
/// The `Labels` of the image config `config` (none when it is missing or unreadable).
pub fn config_labels(store: &Store, config: &Digest) -> BTreeMap<String, String> {
    store
        .read_blob(config)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.pointer("/config/Labels").cloned())
        .and_then(|l| serde_json::from_value(l).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(key: &str, value: Option<&str>, negate: bool) -> LabelFilter {
        LabelFilter {
            key: key.into(),
            value: value.map(Into::into),
            negate,
        }
    }

    #[test]
    fn image_filter_follows_docker() {
        let labels: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        let none = BTreeMap::new();
        let cases = [
            ("no filter", ImageFilter::default(), &labels, true),
            (
                "until: older",
                ImageFilter {
                    until: Some(200),
                    labels: vec![],
                },
                &labels,
                true,
            ),
            (
                "until: newer",
                ImageFilter {
                    until: Some(100),
                    labels: vec![],
                },
                &labels,
                false,
            ),
            (
                "label=k present",
                ImageFilter {
                    until: None,
                    labels: vec![label("env", None, false)],
                },
                &labels,
                true,
            ),
            (
                "label=k absent",
                ImageFilter {
                    until: None,
                    labels: vec![label("env", None, false)],
                },
                &none,
                false,
            ),
            (
                "label=k=v match",
                ImageFilter {
                    until: None,
                    labels: vec![label("env", Some("prod"), false)],
                },
                &labels,
                true,
            ),
            (
                "label=k=v other value",
                ImageFilter {
                    until: None,
                    labels: vec![label("env", Some("dev"), false)],
                },
                &labels,
                false,
            ),
            (
                "label!=k present",
                ImageFilter {
                    until: None,
                    labels: vec![label("env", None, true)],
                },
                &labels,
                false,
            ),
            (
                "label!=k absent",
                ImageFilter {
                    until: None,
                    labels: vec![label("env", None, true)],
                },
                &none,
                true,
            ),
            (
                "label!=k=v other value",
                ImageFilter {
                    until: None,
                    labels: vec![label("env", Some("dev"), true)],
                },
                &labels,
                true,
            ),
        ];
        for (name, f, l, want) in cases {
            assert_eq!(f.allows(150, l), want, "case: {name}");
        }
    }
}
