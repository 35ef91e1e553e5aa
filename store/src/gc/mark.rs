//! The mark phase: a pure graph walk, containerd `pkg/gc` style.
//!
//! No storage in here: the caller hands over the roots and a `refs(node)` closure
//! that names what a node holds alive, and gets back every reachable node. That
//! keeps the rules of "what keeps what" testable as tables (see the tests below)
//! with no database and no disk.

use std::collections::HashSet;
use std::hash::Hash;

/// Every node reachable from `roots` through `refs`, roots included.
///
/// Iterative (an explicit stack), so a long layer chain cannot overflow the call
/// stack; each node's `refs` is asked once. Cycles are harmless.
pub fn mark<N, I, F, R>(roots: I, mut refs: F) -> HashSet<N>
where
    N: Eq + Hash + Clone,
    I: IntoIterator<Item = N>,
    F: FnMut(&N) -> R,
    R: IntoIterator<Item = N>,
{
    let mut live: HashSet<N> = HashSet::new();
    let mut todo: Vec<N> = Vec::new();
    for root in roots {
        if live.insert(root.clone()) {
            todo.push(root);
        }
    }
    while let Some(node) = todo.pop() {
        for child in refs(&node) {
            if live.insert(child.clone()) {
                todo.push(child);
            }
        }
    }
    live
}

/// The nodes of `all` that `live` does not hold: what a sweep may remove.
pub fn unreachable<'a, N: Eq + Hash + 'a>(
    all: impl IntoIterator<Item = &'a N>,
    live: &HashSet<N>,
) -> Vec<&'a N> {
    all.into_iter().filter(|n| !live.contains(n)).collect()
}

#[cfg(test)]
mod tests {
    //! Declarative worlds, as containerd's `gc_test.go`: a list of facts, then the
    //! set of nodes that must stay alive. The `refs` used here is the store's real
    //! rule set (`roots::refs_in`) applied to an in-memory `World`.

    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::chain_id::ChainId;
    use crate::gc::roots::{Graph, Node};
    use crate::Digest;

    fn d(name: &str) -> Digest {
        Digest::sha256_of(name.as_bytes())
    }
    fn blob(name: &str) -> Node {
        Node::Blob(d(name))
    }
    fn snap(name: &str) -> Node {
        Node::Snapshot(ChainId(d(name)))
    }

    /// One fact about the world.
    enum Fact {
        /// A manifest: its config and (layer blob, diff_id, chain id) per layer.
        Image(
            &'static str,
            &'static str,
            Vec<(&'static str, &'static str, &'static str)>,
        ),
        /// A root that holds a node directly (tag, cache record, lease).
        Root(Node),
        /// `layers` record: diff_id → stored forms.
        Layer(&'static str, Vec<&'static str>),
        /// `snapshots` record: chain → parent.
        Parent(&'static str, &'static str),
        /// An image index and its platforms' manifests.
        Index(&'static str, Vec<&'static str>),
    }
    use Fact::*;

    fn live(world: &[Fact]) -> BTreeSet<String> {
        let mut g = Graph::default();
        let mut roots = Vec::new();
        for f in world {
            match f {
                Image(m, config, layers) => {
                    g.manifests.insert(
                        d(m),
                        crate::gc::roots::ManifestRefs {
                            config: d(config),
                            layers: layers
                                .iter()
                                .map(|(b, diff, chain)| (d(b), d(diff), ChainId(d(chain))))
                                .collect(),
                            children: Vec::new(),
                        },
                    );
                }
                Index(i, children) => {
                    g.manifests.insert(
                        d(i),
                        crate::gc::roots::ManifestRefs {
                            config: d(i),
                            layers: Vec::new(),
                            children: children.iter().map(|c| d(c)).collect(),
                        },
                    );
                }
                Root(n) => roots.push(n.clone()),
                Layer(diff, blobs) => {
                    g.layers
                        .insert(d(diff), blobs.iter().map(|b| d(b)).collect());
                }
                Parent(c, p) => {
                    g.parents.insert(ChainId(d(c)), ChainId(d(p)));
                }
            }
        }
        let names: BTreeMap<String, String> = [
            "m1", "m2", "c1", "c2", "l1", "l2", "l3", "gz1", "s1", "s12", "s123", "x", "i",
        ]
        .iter()
        .map(|n| (d(n).to_string(), n.to_string()))
        .collect();
        let name = |dg: &Digest| names.get(dg.as_str()).cloned().unwrap_or(dg.to_string());
        mark(roots, |n| g.refs(n))
            .into_iter()
            .map(|n| match n {
                Node::Blob(x) => format!("blob:{}", name(&x)),
                Node::Layer(x) => format!("layer:{}", name(&x)),
                Node::Snapshot(c) => format!("snap:{}", name(c.digest())),
            })
            .collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gc_marks_from_roots() {
        let base = || Image("m1", "c1", vec![("l1", "l1", "s1"), ("l2", "l2", "s12")]);
        let cases: Vec<(&str, Vec<Fact>, BTreeSet<String>)> = vec![
            ("nothing rooted keeps nothing", vec![base()], set(&[])),
            (
                "a tagged manifest keeps config, layers, diff_ids and every chain prefix",
                vec![base(), Root(blob("m1"))],
                set(&[
                    "blob:m1", "blob:c1", "blob:l1", "blob:l2", "layer:l1", "layer:l2", "snap:s1",
                    "snap:s12",
                ]),
            ),
            (
                "a tagged index keeps every platform's manifest and what each holds",
                vec![
                    base(),
                    Image("m2", "c2", vec![("l3", "l3", "s123")]),
                    Index("i", vec!["m1", "m2"]),
                    Root(blob("i")),
                ],
                set(&[
                    "blob:i",
                    "blob:m1",
                    "blob:c1",
                    "blob:l1",
                    "blob:l2",
                    "layer:l1",
                    "layer:l2",
                    "snap:s1",
                    "snap:s12",
                    "blob:m2",
                    "blob:c2",
                    "blob:l3",
                    "layer:l3",
                    "snap:s123",
                ]),
            ),
            (
                "a layer record keeps its other stored forms",
                vec![base(), Layer("l1", vec!["l1", "gz1"]), Root(blob("m1"))],
                set(&[
                    "blob:m1", "blob:c1", "blob:l1", "blob:gz1", "blob:l2", "layer:l1", "layer:l2",
                    "snap:s1", "snap:s12",
                ]),
            ),
            (
                "a cache record keeps its layer blob and snapshot, not the image",
                vec![
                    base(),
                    Root(blob("l2")),
                    Root(Node::Layer(d("l2"))),
                    Root(snap("s12")),
                ],
                set(&["blob:l2", "layer:l2", "snap:s12"]),
            ),
            (
                "a snapshot keeps its recorded parent chain",
                vec![
                    Parent("s123", "s12"),
                    Parent("s12", "s1"),
                    Root(snap("s123")),
                ],
                set(&["snap:s123", "snap:s12", "snap:s1"]),
            ),
            (
                "a leased non-manifest blob keeps only itself",
                vec![base(), Root(blob("x"))],
                set(&["blob:x"]),
            ),
            (
                "two images sharing a base keep it once; the other image is not rooted",
                vec![
                    base(),
                    Image("m2", "c2", vec![("l1", "l1", "s1"), ("l3", "l3", "s123")]),
                    Root(blob("m2")),
                ],
                set(&[
                    "blob:m2",
                    "blob:c2",
                    "blob:l1",
                    "blob:l3",
                    "layer:l1",
                    "layer:l3",
                    "snap:s1",
                    "snap:s123",
                ]),
            ),
            (
                "cycles terminate",
                vec![Parent("s1", "s12"), Parent("s12", "s1"), Root(snap("s1"))],
                set(&["snap:s1", "snap:s12"]),
            ),
        ];
        for (name, world, want) in cases {
            assert_eq!(live(&world), want, "case: {name}");
        }
    }

    #[test]
    fn mark_is_a_plain_reachability_walk() {
        let edges: BTreeMap<u32, Vec<u32>> =
            [(1, vec![2, 3]), (2, vec![4]), (3, vec![4]), (5, vec![6])].into();
        let live = mark([1], |n| edges.get(n).cloned().unwrap_or_default());
        let mut got: Vec<u32> = live.iter().copied().collect();
        got.sort();
        assert_eq!(got, vec![1, 2, 3, 4]);
        let all = [1, 2, 3, 4, 5, 6];
        let mut dead: Vec<u32> = unreachable(all.iter(), &live)
            .into_iter()
            .copied()
            .collect();
        dead.sort();
        assert_eq!(dead, vec![5, 6]);
    }
}
