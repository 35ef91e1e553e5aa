//! The image below a COPY, ADD or WORKDIR step as that step reads it: the layers that are
//! unpacked already through their snapshots ([`UnionFs`]), the layers above them that are
//! not (layers a build took from a registry cache, or made by COPY) through their tars'
//! indexes ([`LayerIndex`]). Such a step reads a few parent directories and maybe
//! /etc/passwd, so it unpacks nothing; the first RUN that needs the layers unpacks them
//! (docs/design.md §4.3).
//!
//! Lookups follow overlayfs's rules as `crate::rootfs` does, over both kinds of layer: the
//! topmost layer holding a name provides it, a whiteout hides it below, a non-directory
//! or an opaque directory ends the merge of the directories below it. Symlinks are
//! followed inside the image only (an absolute target starts again at its root, `..`
//! stops there).

use std::io;
use std::sync::Arc;

use store::{LayerRef, Store};

use crate::image_tree::{stat_of, ImageTree, Stat, StatKind};
use crate::layer_index::{LayerEntry, LayerIndex};
use crate::rootfs::{Found, UnionFs};

/// Symlinks followed while resolving one path before giving up (as `crate::rootfs`).
const MAX_SYMLINKS: usize = 40;

/// Indexed layers (top first) over unpacked ones.
pub struct Below<'a> {
    store: &'a Store,
    upper: Vec<Arc<LayerIndex>>,
    lower: UnionFs,
}

/// Where a resolved path lives.
enum Node {
    Root,
    Upper(usize, LayerEntry),
    Lower(Found),
}

impl Node {
    fn stat(&self) -> Stat {
        match self {
            Node::Root => Stat {
                kind: StatKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
            Node::Upper(_, e) => e.stat.clone(),
            Node::Lower(f) => stat_of(&f.metadata),
        }
    }
}

impl<'a> Below<'a> {
    /// `upper`: the layers above `lower`'s, bottom first, read from their blobs (which
    /// the caller's lease covers).
    pub fn new(
        store: &'a Store,
        lower: UnionFs,
        upper: &[LayerRef],
    ) -> Result<Below<'a>, crate::layer_index::IndexError> {
        let mut indexes = Vec::with_capacity(upper.len());
        for layer in upper.iter().rev() {
            indexes.push(LayerIndex::of(store, layer)?);
        }
        Ok(Below {
            store,
            upper: indexes,
            lower,
        })
    }

    /// Every layer is unpacked: the snapshots answer.
    pub fn unpacked(store: &'a Store, lower: UnionFs) -> Below<'a> {
        Below {
            store,
            upper: Vec::new(),
            lower,
        }
    }

    /// `name` in the resolved directory `dir` ("" for the root), no symlink followed.
    fn entry(&self, dir: &str, name: &str) -> io::Result<Option<Node>> {
        let path = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        for (i, layer) in self.upper.iter().enumerate() {
            if layer.whiteouts.contains(&path) {
                return Ok(None);
            }
            if let Some(e) = layer.entries.get(&path) {
                return Ok(Some(Node::Upper(i, e.clone())));
            }
            // The layers below show through `dir` only where this layer has every
            // ancestor of `path` as a plain (not opaque) directory, or not at all.
            let mut ancestor = dir;
            loop {
                if layer.opaque.contains(ancestor) || layer.whiteouts.contains(ancestor) {
                    return Ok(None);
                }
                if layer
                    .entries
                    .get(ancestor)
                    .is_some_and(|e| !e.stat.is_dir())
                {
                    return Ok(None);
                }
                if ancestor.is_empty() {
                    break;
                }
                ancestor = ancestor.rsplit_once('/').map_or("", |(a, _)| a);
            }
        }
        if self.lower.layers().is_empty() {
            return Ok(None);
        }
        // `dir` was resolved in the whole image; below the indexed layers it must be a
        // directory as well (not a symlink to one) for `name` to show through it.
        if !dir.is_empty() && !self.lower.lookup(dir)?.is_some_and(|f| f.metadata.is_dir()) {
            return Ok(None);
        }
        Ok(self.lower.lookup(&path)?.map(Node::Lower))
    }

    /// Resolve `path` (see the module doc): its resolved relative path and where it is.
    fn walk(&self, path: &str, follow_last: bool) -> io::Result<Option<(String, Node)>> {
        let mut stack: Vec<String> = Vec::new();
        let mut pending: Vec<String> = components(path).into_iter().rev().collect();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                stack.pop();
                continue;
            }
            let is_last = pending.is_empty();
            let dir = stack.join("/");
            let Some(node) = self.entry(&dir, &name)? else {
                return Ok(None);
            };
            let stat = node.stat();
            if stat.kind == StatKind::Symlink && (!is_last || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links in {path}"
                    )));
                }
                let target = match &node {
                    Node::Upper(_, e) => e.link.clone().unwrap_or_default(),
                    Node::Lower(f) => std::fs::read_link(&f.real)?.to_string_lossy().into_owned(),
                    Node::Root => String::new(),
                };
                if target.starts_with('/') {
                    stack.clear();
                }
                pending.extend(components(&target).into_iter().rev());
                continue;
            }
            stack.push(name);
            if is_last {
                return Ok(Some((stack.join("/"), node)));
            }
            if !stat.is_dir() {
                return Ok(None);
            }
        }
        // The path named a directory: the root, or one reached by `..` or a symlink.
        let Some(name) = stack.pop() else {
            return Ok(Some((String::new(), Node::Root)));
        };
        let dir = stack.join("/");
        stack.push(name.clone());
        Ok(self.entry(&dir, &name)?.map(|n| (stack.join("/"), n)))
    }
}

impl ImageTree for Below<'_> {
    fn stat_follow(&self, path: &str) -> io::Result<Option<Stat>> {
        if self.upper.is_empty() {
            return self.lower.stat_follow(path);
        }
        Ok(self.walk(path, true)?.map(|(_, n)| n.stat()))
    }

    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        if self.upper.is_empty() {
            return ImageTree::read(&self.lower, path);
        }
        match self.walk(path, true)? {
            Some((_, Node::Upper(i, e))) if e.stat.kind == StatKind::File => self.upper[i]
                .content(self.store, &e)
                .map(Some)
                .map_err(io::Error::other),
            Some((_, Node::Lower(f))) if f.metadata.is_file() => {
                let mut file = crate::rootfs::open_nofollow(&f.real)?;
                let mut buf = Vec::new();
                io::Read::read_to_end(&mut file, &mut buf)?;
                Ok(Some(buf))
            }
            _ => Ok(None),
        }
    }
}

/// `path` split into its components (empty parts and `.` dropped; `..` kept).
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A tar of `entries`: (name, kind, mode, uid, content or link target).
    fn tar(entries: &[(&str, char, u32, u64, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, mode, uid, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_gid(*uid + 1);
            h.set_mtime(1_000_000 + *uid);
            match kind {
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, name, &[][..]).expect("dir");
                }
                'f' => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, data.as_bytes()).expect("file");
                }
                'l' => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, name, data).expect("symlink");
                }
                'h' => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, name, data).expect("hard link");
                }
                _ => unreachable!(),
            }
        }
        b.into_inner().expect("tar")
    }

    fn commit(store: &Store, lease: &store::Lease, bytes: &[u8], gzip: bool) -> LayerRef {
        let plain = crate::layers::commit_layer(store, lease, |w| w.write_all(bytes))
            .expect("commit layer");
        if !gzip {
            return plain;
        }
        // The same tar as a gzip blob, as a registry cache brings it.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let w = store
            .writer(lease)
            .expect("writer")
            .with_media_type(store::media_types::OCI_LAYER_GZIP);
        let mut w = w;
        std::io::Write::write_all(&mut w, &gz).expect("write");
        let blob = w.commit(None, None).expect("commit gzip");
        LayerRef {
            diff_id: plain.diff_id,
            blob,
        }
    }

    /// Three layers that use every rule: whiteouts, an opaque directory, a directory
    /// replaced by a file and back, symlinks (relative, absolute, through a directory),
    /// a hard link and parents the tar does not list.
    fn layers() -> Vec<Vec<u8>> {
        vec![
            tar(&[
                ("etc/", 'd', 0o755, 0, ""),
                (
                    "etc/passwd",
                    'f',
                    0o644,
                    0,
                    "root:x:0:0::/root:/bin/sh\napp:x:7:8::/:/bin/sh\n",
                ),
                ("etc/group", 'f', 0o644, 0, "root:x:0:\napp:x:8:\n"),
                ("usr/", 'd', 0o755, 0, ""),
                ("usr/lib/", 'd', 0o750, 3, ""),
                ("usr/lib/old/", 'd', 0o700, 4, ""),
                ("usr/lib/old/gone", 'f', 0o600, 4, "x"),
                ("lib", 'l', 0o777, 0, "usr/lib"),
                ("opt/", 'd', 0o711, 5, ""),
                ("opt/keep", 'f', 0o644, 5, "keep"),
                ("opt/drop", 'f', 0o644, 5, "drop"),
                ("var/x/", 'd', 0o755, 6, ""),
                ("var/x/y", 'f', 0o644, 6, "y"),
            ]),
            tar(&[
                ("usr/lib/old/.wh..wh..opq", 'f', 0o644, 0, ""),
                ("usr/lib/old/new", 'f', 0o644, 9, "new"),
                ("opt/.wh.drop", 'f', 0o644, 0, ""),
                ("var/x", 'f', 0o644, 10, "now a file"),
                ("deep/er/file", 'f', 0o640, 11, "implicit parents"),
                ("etc/alias", 'l', 0o777, 0, "/etc/passwd"),
                ("etc/hard", 'h', 0o644, 0, "deep/er/file"),
            ]),
            tar(&[
                ("var/x/", 'd', 0o701, 12, ""),
                ("var/x/z", 'f', 0o644, 12, "z"),
                ("opt/", 'd', 0o755, 13, ""),
            ]),
        ]
    }

    const PATHS: &[&str] = &[
        "/",
        "/etc",
        "/etc/passwd",
        "/etc/alias",
        "/etc/hard",
        "/usr/lib",
        "/lib",
        "/lib/old",
        "/lib/old/gone",
        "/lib/old/new",
        "/opt",
        "/opt/keep",
        "/opt/drop",
        "/var/x",
        "/var/x/y",
        "/var/x/z",
        "/deep/er",
        "/deep/er/file",
        "/lib/../etc/group",
        "/nope",
        "/etc/passwd/x",
        "/lib/old/../../etc",
    ];

    /// What a view says of every path: the stat (the time only of what a tar lists: an
    /// unlisted parent is made at unpack time) and the content of files.
    fn describe(view: &dyn ImageTree) -> Vec<String> {
        PATHS
            .iter()
            .map(|p| {
                let stat = view.stat_follow(p).expect("stat");
                if *p == "/" {
                    // The root's own mode is the snapshot directory's, not the image's.
                    return format!("/: {:?}", stat.map(|s| s.kind));
                }
                let stat = stat.map(|s| match s.mtime > 2_000_000 {
                    true => Stat { mtime: 0, ..s },
                    false => s,
                });
                let data = view
                    .read(p)
                    .expect("read")
                    .map(|d| String::from_utf8_lossy(&d).into_owned());
                format!("{p}: {stat:?} {data:?}")
            })
            .collect()
    }

    #[test]
    fn tars_read_as_their_unpacked_snapshots_whatever_is_unpacked() {
        for gzip in [false, true] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let store = Store::open(&tmp.path().join("root")).expect("store");
            let lease = store.lease(Duration::from_secs(600)).expect("lease");
            let refs: Vec<LayerRef> = layers()
                .iter()
                .map(|t| commit(&store, &lease, t, gzip))
                .collect();
            let indexed = Below::new(&store, UnionFs::default(), &refs).expect("index");
            let by_index = describe(&indexed);
            // The bottom layer unpacked, the two above read from their tars.
            let bottom = store
                .ensure_layer_snapshots(&lease, &refs[..1])
                .expect("unpack bottom");
            let mixed = Below::new(&store, UnionFs::new(bottom), &refs[1..]).expect("mixed");
            let by_mix = describe(&mixed);
            let all = store
                .ensure_layer_snapshots(&lease, &refs)
                .expect("unpack all");
            let unpacked = UnionFs::new(all);
            let by_snapshots = describe(&unpacked);
            assert_eq!(by_index, by_snapshots, "gzip={gzip}");
            assert_eq!(by_mix, by_snapshots, "gzip={gzip}");
            // Spot checks, so that two views equally wrong cannot pass.
            let line =
                |p: &str| by_snapshots[PATHS.iter().position(|x| *x == p).expect("path")].clone();
            assert!(
                line("/opt/drop").ends_with("None None"),
                "{}",
                line("/opt/drop")
            );
            assert!(line("/lib/old/gone").ends_with("None None"));
            assert!(line("/lib/old/new").contains("\"new\""));
            assert!(line("/var/x/y").ends_with("None None"));
            assert!(line("/etc/alias").contains("app:x:7:8"));
            assert!(line("/etc/hard").contains("implicit parents"));
            assert!(
                line("/var/x").contains("mode: 449, uid: 12"),
                "{}",
                line("/var/x")
            );
            assert!(line("/opt").contains("uid: 13"));
        }
    }

    #[test]
    fn a_gzip_layer_whose_content_is_not_its_diff_id_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&tmp.path().join("root")).expect("store");
        let lease = store.lease(Duration::from_secs(600)).expect("lease");
        let a = commit(&store, &lease, &layers()[0], true);
        let b = commit(&store, &lease, &layers()[1], false);
        let lie = LayerRef {
            blob: a.blob,
            diff_id: b.diff_id,
        };
        let err = Below::new(&store, UnionFs::default(), &[lie])
            .err()
            .expect("refused");
        assert!(err.to_string().contains("uncompressed content is"), "{err}");
    }
}
