//! COPY and ADD of local files: choose what to copy (docker's rules for sources, wildcards,
//! directories and destinations), fingerprint it for the cache key, and write the layer tar
//! straight from the source files — each byte read once into the tar and its hasher, no
//! staging directory (docs/design.md §4.5).
//!
//! Sources come from a `SourceTree`: the build context (with .dockerignore applied) or another
//! stage's / image's filesystem (a `UnionFs`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::image_tree::ImageTree;
use crate::rootfs::{open_nofollow, Found, UnionFs};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("failed to compute cache key: \"{0}\" not found")]
    SourceNotFound(String),
    #[error("\"{0}\" is outside of the build context")]
    OutsideContext(String),
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a /")]
    DestinationNotDir,
    #[error("bad --chmod value {0:?}: expected octal like 0755")]
    BadChmod(String),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, CopyError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |source| CopyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where COPY reads from. Every path resolves inside the tree (see `rootfs`): symlinks are
/// followed only within it, an absolute target starts at the tree's root, `..` stops there.
pub trait SourceTree {
    /// lstat of `rel` (relative to the tree's root, no leading `/`): the real path and
    /// metadata. Symlinks before the last component are followed inside the tree.
    fn stat(&self, rel: &str) -> io::Result<Option<(PathBuf, fs::Metadata)>>;
    /// stat of `rel`: as [`SourceTree::stat`], a final symlink followed inside the tree too
    /// (how COPY treats a source it names).
    fn stat_follow(&self, rel: &str) -> io::Result<Option<(PathBuf, fs::Metadata)>>;
    /// The names in directory `rel`, sorted; entries the tree excludes are left out.
    fn list(&self, rel: &str) -> io::Result<Vec<String>>;
}

/// The build context: a host directory resolved as a one-layer union (so a symlink never
/// leads out of it), with an exclusion test (.dockerignore) applied to the path as named and
/// as resolved: an excluded file is not in the context, whatever names it.
pub struct DirTree<'a> {
    pub root: PathBuf,
    pub is_excluded: &'a dyn Fn(&str) -> bool,
}

impl DirTree<'_> {
    fn union(&self) -> UnionFs {
        UnionFs::new(vec![self.root.clone()])
    }

    fn visible(&self, rel: &str, found: Option<Found>) -> Option<(PathBuf, fs::Metadata)> {
        let is_hidden = |p: &str| !p.is_empty() && (self.is_excluded)(p);
        match found {
            Some(f) if !is_hidden(rel) && !is_hidden(&f.path) => Some((f.real, f.metadata)),
            _ => None,
        }
    }
}

impl SourceTree for DirTree<'_> {
    fn stat(&self, rel: &str) -> io::Result<Option<(PathBuf, fs::Metadata)>> {
        let found = self.union().lookup(rel)?;
        Ok(self.visible(rel, found))
    }

    fn stat_follow(&self, rel: &str) -> io::Result<Option<(PathBuf, fs::Metadata)>> {
        let found = self.union().lookup_follow(rel)?;
        Ok(self.visible(rel, found))
    }

    fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for name in self.union().read_dir(rel)?.into_keys() {
            let name = name.to_string_lossy().into_owned();
            if !(self.is_excluded)(&join_rel(rel, &name)) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

impl SourceTree for UnionFs {
    fn stat(&self, rel: &str) -> io::Result<Option<(PathBuf, fs::Metadata)>> {
        Ok(self.lookup(rel)?.map(|f| (f.real, f.metadata)))
    }

    fn stat_follow(&self, rel: &str) -> io::Result<Option<(PathBuf, fs::Metadata)>> {
        Ok(self.lookup_follow(rel)?.map(|f| (f.real, f.metadata)))
    }

    fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        Ok(self
            .read_dir(rel)?
            .into_keys()
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }
}

/// How copied entries are owned and stamped.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--chown` resolved to numbers; `None` keeps docker's default (0:0 from the context,
    /// the source's ownership from another stage).
    pub chown: Option<(u32, u32)>,
    /// `--chmod` in octal.
    pub chmod: Option<u32>,
    /// Whether sources keep their ownership (COPY --from) rather than becoming 0:0 (context).
    pub keep_owner: bool,
    /// SOURCE_DATE_EPOCH: clamp every mtime to it for reproducible layers.
    pub epoch: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    Dir,
    File { size: u64 },
    Symlink(PathBuf),
}

/// One entry of the layer: where it comes from and what it becomes.
#[derive(Debug, Clone)]
pub struct CopyItem {
    /// Absolute path in the image, without the leading `/` (tar names are relative).
    pub dest: String,
    pub real: Option<PathBuf>,
    pub kind: ItemKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

/// What a COPY will write: its entries, sorted by destination, parents first.
#[derive(Debug, Default)]
pub struct CopyPlan {
    pub items: BTreeMap<String, CopyItem>,
}

/// Docker's destination rule: a source file goes *into* `dest` when `dest` ends in `/` or is
/// an existing directory of the image; otherwise it becomes `dest`.
pub fn plan(
    tree: &dyn SourceTree,
    sources: &[String],
    dest: &str,
    dest_is_existing_dir: bool,
    opts: &CopyOptions,
) -> Result<CopyPlan> {
    // A wildcard that matches nothing is fine while the instruction copies something
    // (BuildKit's AllowEmptyWildcard); a source named without one must exist.
    let mut matched: Vec<String> = Vec::new();
    for src in sources {
        let found = expand_source(tree, src)?;
        if found.is_empty() && !has_glob(src) {
            return Err(CopyError::SourceNotFound(src.clone()));
        }
        matched.extend(found);
    }
    if matched.is_empty() {
        let first = sources.first().cloned().unwrap_or_default();
        return Err(CopyError::SourceNotFound(first));
    }
    let dest_dir = dest.ends_with('/') || dest_is_existing_dir;
    if (sources.len() > 1 || matched.len() > 1) && !dest_dir {
        return Err(CopyError::DestinationNotDir);
    }
    let dest_clean = clean_abs(dest);
    let mut out = CopyPlan::default();
    for rel in matched {
        // A source that is a symlink is followed: its target is copied under its name.
        let (real, meta) = tree
            .stat_follow(&rel)
            .map_err(io_err("reading", Path::new(&rel)))?
            .ok_or_else(|| CopyError::SourceNotFound(rel.clone()))?;
        if meta.is_dir() {
            add_tree(tree, &rel, &dest_clean, opts, &mut out)?;
            // A directory's contents are copied, not the directory: like BuildKit, an
            // existing destination keeps its own mode and owner (`add_parents` takes them
            // from the image) and a missing one is created 0755, owned by root or --chown.
            if !dest_clean.is_empty() {
                if dest_is_existing_dir {
                    out.items.remove(&dest_clean);
                } else {
                    out.push(fresh_dir(&dest_clean, opts));
                }
            }
        } else {
            let target = if dest_dir {
                join_rel(&dest_clean, base_name(&rel))
            } else {
                dest_clean.clone()
            };
            out.push(item(&target, real, &meta, opts)?);
        }
    }
    Ok(out)
}

impl CopyPlan {
    fn push(&mut self, item: CopyItem) {
        self.items.insert(item.dest.clone(), item);
    }

    /// Make sure every parent directory of every entry is in the layer: taken from the image
    /// below when it has it (so the layer does not change its mode), 0755 root otherwise.
    pub fn add_parents(&mut self, below: &dyn ImageTree, opts: &CopyOptions) -> io::Result<()> {
        let mut parents: Vec<String> = Vec::new();
        for dest in self.items.keys() {
            let mut p = Path::new(dest).parent();
            while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
                let s = dir.to_string_lossy().into_owned();
                if !self.items.contains_key(&s) && !parents.contains(&s) {
                    parents.push(s);
                }
                p = dir.parent();
            }
        }
        for dir in parents {
            self.add_dir(&dir, below, opts)?;
        }
        Ok(())
    }

    /// Directory `dir` (no leading `/`) as the image below has it, else created 0755 (owned
    /// by root or --chown).
    pub fn add_dir(
        &mut self,
        dir: &str,
        below: &dyn ImageTree,
        opts: &CopyOptions,
    ) -> io::Result<()> {
        let existing = below.stat_follow(&format!("/{dir}"))?;
        let item = match existing {
            Some(s) if s.is_dir() => CopyItem {
                dest: dir.to_string(),
                real: None,
                kind: ItemKind::Dir,
                mode: s.mode,
                uid: s.uid,
                gid: s.gid,
                mtime: clamp(s.mtime, opts.epoch),
            },
            _ => fresh_dir(dir, opts),
        };
        self.items.insert(dir.to_string(), item);
        Ok(())
    }

    /// A digest of everything the layer will hold — paths, kinds, modes, ownership, link
    /// targets and file bytes — for the cache key. `content` gives a file's content digest
    /// (the caller plugs in the context's stat cache so unchanged files are not re-read).
    pub fn fingerprint(
        &self,
        content: &mut dyn FnMut(&Path) -> io::Result<String>,
    ) -> Result<String> {
        let mut h = Sha256::new();
        for item in self.items.values() {
            let kind = match &item.kind {
                ItemKind::Dir => "d".to_string(),
                ItemKind::Symlink(t) => format!("l {}", t.display()),
                ItemKind::File { size } => {
                    let real = item.real.as_deref().expect("file items have a source");
                    format!(
                        "f {size} {}",
                        content(real).map_err(io_err("hashing", real))?
                    )
                }
            };
            h.update(format!(
                "{}\0{:o}\0{}\0{}\0{}\n",
                item.dest, item.mode, item.uid, item.gid, kind
            ));
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// Write the layer tar to `out`, entries in path order.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<W> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        // Files that are hardlinks of each other in the source stay hardlinks, as BuildKit
        // copies them: the first (in path order) carries the content, the rest link to it.
        let mut linked: BTreeMap<(u64, u64), String> = BTreeMap::new();
        for item in self.items.values() {
            let mut header = tar::Header::new_gnu();
            header.set_mode(item.mode);
            header.set_uid(u64::from(item.uid));
            header.set_gid(u64::from(item.gid));
            header.set_mtime(item.mtime.max(0) as u64);
            let path = Path::new(&item.dest);
            match &item.kind {
                ItemKind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{}/", item.dest), io::empty())
                        .map_err(io_err("writing layer entry", path))?;
                }
                ItemKind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, &item.dest, target)
                        .map_err(io_err("writing layer entry", path))?;
                }
                ItemKind::File { size } => {
                    let real = item.real.as_deref().expect("file items have a source");
                    let file = open_nofollow(real).map_err(io_err("opening", real))?;
                    let meta = file.metadata().map_err(io_err("reading", real))?;
                    if meta.nlink() > 1 {
                        match linked.get(&(meta.dev(), meta.ino())) {
                            Some(first) => {
                                header.set_entry_type(tar::EntryType::Link);
                                header.set_size(0);
                                tar.append_link(&mut header, &item.dest, first)
                                    .map_err(io_err("writing layer entry", path))?;
                                continue;
                            }
                            None => {
                                linked.insert((meta.dev(), meta.ino()), item.dest.clone());
                            }
                        }
                    }
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(*size);
                    tar.append_data(&mut header, &item.dest, io::Read::take(file, *size))
                        .map_err(io_err("copying", real))?;
                }
            }
        }
        tar.into_inner()
            .map_err(io_err("finishing layer", Path::new("layer.tar")))
    }
}

/// Add directory `rel` of the tree and everything under it, as `dest`'s contents.
fn add_tree(
    tree: &dyn SourceTree,
    rel: &str,
    dest: &str,
    opts: &CopyOptions,
    out: &mut CopyPlan,
) -> Result<()> {
    let (real, meta) = tree
        .stat_follow(rel)
        .map_err(io_err("reading", Path::new(rel)))?
        .ok_or_else(|| CopyError::SourceNotFound(rel.to_string()))?;
    if !dest.is_empty() {
        out.push(item(dest, real, &meta, opts)?);
    }
    let names = tree.list(rel).map_err(io_err("listing", Path::new(rel)))?;
    for name in names {
        let child_rel = join_rel(rel, &name);
        let child_dest = join_rel(dest, &name);
        let Some((real, meta)) = tree
            .stat(&child_rel)
            .map_err(io_err("reading", Path::new(&child_rel)))?
        else {
            continue;
        };
        if meta.is_dir() {
            add_tree(tree, &child_rel, &child_dest, opts, out)?;
        } else {
            out.push(item(&child_dest, real, &meta, opts)?);
        }
    }
    Ok(())
}

/// A directory the copy creates: 0755, owned by root or `--chown`.
pub fn fresh_dir(dest: &str, opts: &CopyOptions) -> CopyItem {
    CopyItem {
        dest: dest.trim_start_matches('/').to_string(),
        real: None,
        kind: ItemKind::Dir,
        mode: 0o755,
        uid: opts.chown.map_or(0, |c| c.0),
        gid: opts.chown.map_or(0, |c| c.1),
        mtime: clamp(0, opts.epoch),
    }
}

fn item(dest: &str, real: PathBuf, meta: &fs::Metadata, opts: &CopyOptions) -> Result<CopyItem> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        ItemKind::Dir
    } else if ft.is_symlink() {
        ItemKind::Symlink(fs::read_link(&real).map_err(io_err("reading link", &real))?)
    } else if ft.is_file() {
        ItemKind::File { size: meta.len() }
    } else if ft.is_fifo() || ft.is_socket() || ft.is_char_device() || ft.is_block_device() {
        // Devices, fifos and sockets are not copied by COPY from a context either.
        return Err(CopyError::Io {
            op: "copying special file",
            path: real,
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "not a regular file, directory or symlink",
            ),
        });
    } else {
        ItemKind::File { size: meta.len() }
    };
    let (uid, gid) = match opts.chown {
        Some(c) => c,
        None if opts.keep_owner => (meta.uid(), meta.gid()),
        None => (0, 0),
    };
    let mode = match (opts.chmod, &kind) {
        (_, ItemKind::Symlink(_)) => 0o777,
        (Some(m), _) => m,
        (None, _) => meta.mode() & 0o7777,
    };
    Ok(CopyItem {
        dest: dest.trim_start_matches('/').to_string(),
        real: Some(real),
        kind,
        mode,
        uid,
        gid,
        mtime: clamp(meta.mtime(), opts.epoch),
    })
}

/// Sources matching `src`: the path itself, or every match of its wildcard segments.
pub fn expand_source(tree: &dyn SourceTree, src: &str) -> Result<Vec<String>> {
    let clean = clean_rel(src).ok_or_else(|| CopyError::OutsideContext(src.to_string()))?;
    if !has_glob(&clean) {
        let exists = tree
            .stat(&clean)
            .map_err(io_err("reading", Path::new(&clean)))?
            .is_some();
        return Ok(if exists { vec![clean] } else { Vec::new() });
    }
    let mut found = vec![String::new()];
    for segment in clean.split('/') {
        let mut next = Vec::new();
        for base in &found {
            if !has_glob(segment) {
                let candidate = join_rel(base, segment);
                if tree
                    .stat(&candidate)
                    .map_err(io_err("reading", Path::new(&candidate)))?
                    .is_some()
                {
                    next.push(candidate);
                }
                continue;
            }
            let pattern = globset::GlobBuilder::new(segment)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| CopyError::Io {
                    op: "parsing pattern",
                    path: PathBuf::from(src),
                    source: io::Error::other(e),
                })?
                .compile_matcher();
            let names = match tree.list(base) {
                Ok(n) => n,
                Err(_) => continue,
            };
            next.extend(
                names
                    .into_iter()
                    .filter(|n| pattern.is_match(n))
                    .map(|n| join_rel(base, &n)),
            );
        }
        found = next;
    }
    Ok(found)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn clamp(mtime: i64, epoch: Option<i64>) -> i64 {
    match epoch {
        Some(e) if mtime > e => e,
        _ => mtime,
    }
}

/// A context-relative path with `.` removed and `..` resolved; `None` if it climbs out.
pub fn clean_rel(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// An image path, cleaned, as a relative name (`/a/./b/` → `a/b`); `..` stops at the root.
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn join_rel(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

fn base_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("src/sub")).expect("mkdir");
        fs::write(root.join("src/a.txt"), "a").expect("write");
        fs::write(root.join("src/sub/b.txt"), "bb").expect("write");
        fs::write(root.join("top.txt"), "top").expect("write");
        fs::write(root.join("secret.env"), "x").expect("write");
        fs::write(root.join("one.md"), "1").expect("write");
        fs::write(root.join("two.md"), "2").expect("write");
        dir
    }

    fn dests(plan: &CopyPlan) -> Vec<&str> {
        plan.items.keys().map(String::as_str).collect()
    }

    #[test]
    fn copy_destination_rules_match_docker() {
        let ctx = context();
        let excluded = |p: &str| p == "secret.env";
        let tree = DirTree {
            root: ctx.path().to_path_buf(),
            is_excluded: &excluded,
        };
        let opts = CopyOptions::default();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: [(&[&str], &str, bool, &[&str]); 6] = [
            (&["top.txt"], "/app/x.txt", false, &["app/x.txt"]),
            (&["top.txt"], "/app/", false, &["app/top.txt"]),
            (&["top.txt"], "/app", true, &["app/top.txt"]),
            (
                &["src"],
                "/app",
                false,
                &["app", "app/a.txt", "app/sub", "app/sub/b.txt"],
            ),
            (&["*.md"], "/docs/", false, &["docs/one.md", "docs/two.md"]),
            (
                &["./src/../top.txt", "src/a.txt"],
                "/d/",
                false,
                &["d/a.txt", "d/top.txt"],
            ),
        ];
        for (sources, dest, is_dir, want) in cases {
            let p = plan(&tree, &s(sources), dest, is_dir, &opts).expect("plan");
            assert_eq!(dests(&p), want.to_vec(), "COPY {sources:?} {dest}");
        }
        assert!(matches!(
            plan(&tree, &s(&["secret.env"]), "/", false, &opts),
            Err(CopyError::SourceNotFound(_))
        ));
        assert!(matches!(
            plan(&tree, &s(&["../etc/passwd"]), "/", false, &opts),
            Err(CopyError::OutsideContext(_))
        ));
        assert!(matches!(
            plan(&tree, &s(&["one.md", "two.md"]), "/file", false, &opts),
            Err(CopyError::DestinationNotDir)
        ));
    }

    #[test]
    fn fingerprint_changes_with_content_mode_and_owner_and_tar_is_reproducible() {
        let ctx = context();
        let never = |_: &str| false;
        let tree = DirTree {
            root: ctx.path().to_path_buf(),
            is_excluded: &never,
        };
        let src = vec!["src".to_string()];
        let epoch = CopyOptions {
            epoch: Some(0),
            ..Default::default()
        };
        let mut hash = |p: &Path| fs::read(p).map(|b| hex::encode(Sha256::digest(b)));
        let p1 = plan(&tree, &src, "/app", false, &epoch).expect("plan");
        let f1 = p1.fingerprint(&mut hash).expect("fingerprint");
        let t1 = p1.write_tar(Vec::new()).expect("tar");
        assert_eq!(
            p1.write_tar(Vec::new()).expect("tar"),
            t1,
            "same plan, same bytes"
        );

        let chowned = CopyOptions {
            chown: Some((1000, 1000)),
            ..epoch.clone()
        };
        let f2 = plan(&tree, &src, "/app", false, &chowned)
            .expect("plan")
            .fingerprint(&mut hash)
            .expect("fp");
        assert_ne!(f1, f2, "ownership is part of the key");
        fs::write(ctx.path().join("src/a.txt"), "A").expect("write");
        let f3 = plan(&tree, &src, "/app", false, &epoch)
            .expect("plan")
            .fingerprint(&mut hash)
            .expect("fp");
        assert_ne!(f1, f3, "content is part of the key");

        assert_eq!(
            crate::layers::entry_names(&t1[..]),
            vec!["app/", "app/a.txt", "app/sub/", "app/sub/b.txt"]
        );
    }
}
