//! The copy snapshotter, for filesystems where overlay cannot mount (overlay on overlay,
//! some CI containers) or `--snapshotter copy`.
//!
//! [`materialize`] copies the lower chain into a fresh tree (bottom layer first, applying
//! whiteouts and opaque directories) and remembers each entry's inode and ctime.
//! After the step, [`diff_tree`] compares the tree with the chain and writes the changes
//! into an upperdir in overlay form, so the differ and the store cannot tell which
//! snapshotter ran:
//!
//! - absent from the chain → new (files are moved, not copied: the tree is thrown away);
//! - a directory whose inode changed (`rm -rf /d && mkdir /d`), or a directory where the
//!   chain has a non-directory → opaque directory, as overlay marks it;
//! - type, mode, owner, size, mtime, link target, device or xattrs differ, or the inode
//!   changed → changed; all equal but the ctime moved (a write that restored the mtime,
//!   `touch -d`) → compare contents ("hash on doubt");
//! - in the chain but gone, under a directory that is still the same directory → whiteout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use store::read_full::read_full;
use walkdir::WalkDir;

use super::sys::set_times;
use super::{ExecError, Result};
use crate::differ::{is_opaque, is_whiteout, list_xattrs, make_whiteout, set_opaque};

/// What [`materialize`] saw, for [`diff_tree`]: relative path → identity and ctime.
#[derive(Debug, Default)]
pub struct CopyState {
    entries: HashMap<PathBuf, (Identity, i128)>,
}

/// Inode number plus birth time: ext4 hands a freed inode number straight back, so
/// `rm -rf /d && mkdir /d` often keeps the number; the birth time tells them apart
/// (filesystems without btime fall back to the number alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    ino: u64,
    btime_ns: Option<i128>,
}

fn identity(path: &Path, md: &std::fs::Metadata) -> Identity {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let btime_ns = statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BTIME,
    )
    .ok()
    .filter(|st| StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::BTIME))
    .map(|st| st.stx_btime.tv_sec as i128 * 1_000_000_000 + st.stx_btime.tv_nsec as i128);
    Identity {
        ino: md.ino(),
        btime_ns,
    }
}

fn copy_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ExecError + 'a {
    move |source| ExecError::Copy {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn ctime_ns(md: &std::fs::Metadata) -> i128 {
    md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128
}

/// Copy `lowers` (top-first) into `root` (an empty or missing directory).
pub fn materialize(lowers: &[PathBuf], root: &Path) -> Result<CopyState> {
    std::fs::create_dir_all(root).map_err(copy_err("creating", root))?;
    for layer in lowers.iter().rev() {
        apply_layer(layer, root)?;
    }
    let mut state = CopyState::default();
    for entry in WalkDir::new(root).min_depth(1) {
        let entry = entry.map_err(|e| walk_err(root, e))?;
        let md = entry.metadata().map_err(|e| walk_err(root, e))?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root");
        state.entries.insert(
            rel.to_path_buf(),
            (identity(entry.path(), &md), ctime_ns(&md)),
        );
    }
    Ok(state)
}

fn walk_err(root: &Path, e: walkdir::Error) -> ExecError {
    let path = e.path().unwrap_or(root).to_path_buf();
    ExecError::Copy {
        op: "walking",
        path,
        source: e.into(),
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Apply one overlay-form layer directory on top of `root`.
fn apply_layer(layer: &Path, root: &Path) -> Result<()> {
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for entry in WalkDir::new(layer).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| walk_err(layer, e))?;
        let src = entry.path();
        let rel = src
            .strip_prefix(layer)
            .expect("walkdir yields paths under its root");
        let dst = root.join(rel);
        let md = entry.metadata().map_err(|e| walk_err(layer, e))?;
        if is_whiteout(&md) {
            remove_any(&dst).map_err(copy_err("applying whiteout at", &dst))?;
            continue;
        }
        if md.is_dir() {
            let existing = dst.symlink_metadata().ok();
            let is_opaque_dir = is_opaque(src).map_err(copy_err("reading xattrs of", src))?;
            if existing
                .as_ref()
                .is_some_and(|e| !e.is_dir() || is_opaque_dir)
            {
                remove_any(&dst).map_err(copy_err("replacing", &dst))?;
            }
            if dst.symlink_metadata().is_err() {
                std::fs::create_dir(&dst).map_err(copy_err("creating", &dst))?;
            }
            copy_metadata(src, &dst, &md).map_err(copy_err("copying metadata to", &dst))?;
            dirs.push((dst, md));
            continue;
        }
        remove_any(&dst).map_err(copy_err("replacing", &dst))?;
        if md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                std::fs::hard_link(first, &dst).map_err(copy_err("linking", &dst))?;
                continue;
            }
            links.insert((md.dev(), md.ino()), dst.clone());
        }
        copy_node(src, &dst, &md).map_err(copy_err("copying to", &dst))?;
        copy_metadata(src, &dst, &md).map_err(copy_err("copying metadata to", &dst))?;
        set_times(&dst, atime(&md), mtime(&md)).map_err(copy_err("setting times of", &dst))?;
    }
    // Directory mtimes last: creating their children changed them.
    for (dst, md) in dirs.iter().rev() {
        set_times(dst, atime(md), mtime(md)).map_err(copy_err("setting times of", dst))?;
    }
    Ok(())
}

fn atime(md: &std::fs::Metadata) -> libc::timespec {
    libc::timespec {
        tv_sec: md.atime() as libc::time_t,
        tv_nsec: md.atime_nsec() as _,
    }
}

fn mtime(md: &std::fs::Metadata) -> libc::timespec {
    libc::timespec {
        tv_sec: md.mtime() as libc::time_t,
        tv_nsec: md.mtime_nsec() as _,
    }
}

fn copy_node(src: &Path, dst: &Path, md: &std::fs::Metadata) -> io::Result<()> {
    let ft = md.file_type();
    if ft.is_file() {
        std::fs::copy(src, dst).map(drop)
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
    } else {
        let kind = if ft.is_char_device() {
            libc::S_IFCHR
        } else if ft.is_block_device() {
            libc::S_IFBLK
        } else if ft.is_fifo() {
            libc::S_IFIFO
        } else {
            libc::S_IFSOCK
        };
        let c = std::ffi::CString::new(dst.as_os_str().as_encoded_bytes())?;
        // SAFETY: mknod with a valid path; the device number comes from the source.
        let rc = unsafe { libc::mknod(c.as_ptr(), kind | (md.mode() & 0o7777), md.rdev()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Owner, then mode (chown clears set-id bits), then xattrs.
fn copy_metadata(src: &Path, dst: &Path, md: &std::fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    if !md.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    for (name, value) in list_xattrs(src)? {
        rustix::fs::lsetxattr(dst, name.as_str(), &value, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// The merged view of the chain: relative path → (the layer file, its metadata).
fn index_chain(lowers: &[PathBuf]) -> Result<BTreeMap<PathBuf, (PathBuf, std::fs::Metadata)>> {
    let mut index: BTreeMap<PathBuf, (PathBuf, std::fs::Metadata)> = BTreeMap::new();
    fn drop_children(index: &mut BTreeMap<PathBuf, (PathBuf, std::fs::Metadata)>, rel: &Path) {
        let doomed: Vec<PathBuf> = index
            .range(rel.to_path_buf()..)
            .skip_while(|(k, _)| k.as_path() == rel)
            .take_while(|(k, _)| k.starts_with(rel))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            index.remove(&k);
        }
    }
    for layer in lowers.iter().rev() {
        for entry in WalkDir::new(layer).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| walk_err(layer, e))?;
            let rel = entry
                .path()
                .strip_prefix(layer)
                .expect("walkdir yields paths under its root")
                .to_path_buf();
            let md = entry.metadata().map_err(|e| walk_err(layer, e))?;
            if is_whiteout(&md) {
                drop_children(&mut index, &rel);
                index.remove(&rel);
                continue;
            }
            let was_dir = index.get(&rel).is_some_and(|(_, m)| m.is_dir());
            let opaque = md.is_dir()
                && is_opaque(entry.path()).map_err(copy_err("reading xattrs of", entry.path()))?;
            if (was_dir && !md.is_dir()) || opaque {
                drop_children(&mut index, &rel);
            }
            index.insert(rel, (entry.path().to_path_buf(), md));
        }
    }
    Ok(index)
}

enum Change {
    /// Move the entry at this relative path from the tree into the upperdir.
    Move(PathBuf),
    /// Create this directory in the upperdir with the tree's metadata (opaque when true).
    Dir(PathBuf, bool),
    Whiteout(PathBuf),
}

/// Write the difference between `root` (after the step) and `lowers` into `upper`.
pub fn diff_tree(lowers: &[PathBuf], root: &Path, state: &CopyState, upper: &Path) -> Result<()> {
    let index = index_chain(lowers)?;
    let mut changes: Vec<Change> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    // Directories of the tree that are the chain's directory, not a replacement.
    let mut same_dirs: HashSet<PathBuf> = HashSet::new();
    let mut opaque_under: Option<PathBuf> = None;
    for entry in WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| walk_err(root, e))?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root")
            .to_path_buf();
        let md = entry.metadata().map_err(|e| walk_err(root, e))?;
        seen.insert(rel.clone());
        if let Some(o) = &opaque_under {
            if rel.starts_with(o) {
                changes.push(if md.is_dir() {
                    Change::Dir(rel, false)
                } else {
                    Change::Move(rel)
                });
                continue;
            }
            opaque_under = None;
        }
        let lower = index.get(&rel);
        let recorded = state.entries.get(&rel);
        let is_same_inode = recorded
            .is_some_and(|(id, _)| id.ino == md.ino() && *id == identity(entry.path(), &md));
        if md.is_dir() {
            match lower {
                None => changes.push(Change::Dir(rel, false)),
                Some((_, lmd)) if !lmd.is_dir() || !is_same_inode => {
                    opaque_under = Some(rel.clone());
                    changes.push(Change::Dir(rel, true));
                }
                Some((lpath, lmd)) => {
                    if !same_metadata(entry.path(), &md, lpath, lmd)? {
                        changes.push(Change::Dir(rel.clone(), false));
                    }
                    same_dirs.insert(rel);
                }
            }
            continue;
        }
        let changed = match lower {
            None => true,
            Some((_, lmd)) if lmd.is_dir() || !is_same_inode => true,
            Some((lpath, lmd)) => {
                if !same_metadata(entry.path(), &md, lpath, lmd)? {
                    true
                } else {
                    let ctime_moved = recorded.is_some_and(|(_, c)| *c != ctime_ns(&md));
                    ctime_moved && md.is_file() && !same_content(entry.path(), lpath)?
                }
            }
        };
        if changed {
            changes.push(Change::Move(rel));
        }
    }
    for rel in index.keys() {
        if seen.contains(rel) {
            continue;
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() || same_dirs.contains(parent) {
            changes.push(Change::Whiteout(rel.clone()));
        }
    }
    write_changes(root, upper, changes)
}

fn same_metadata(
    path: &Path,
    md: &std::fs::Metadata,
    lpath: &Path,
    lmd: &std::fs::Metadata,
) -> Result<bool> {
    let basic = md.file_type() == lmd.file_type()
        && md.mode() == lmd.mode()
        && md.uid() == lmd.uid()
        && md.gid() == lmd.gid()
        && md.mtime() == lmd.mtime()
        && md.mtime_nsec() == lmd.mtime_nsec()
        && (md.is_dir() || md.size() == lmd.size())
        && md.rdev() == lmd.rdev();
    if !basic {
        return Ok(false);
    }
    if md.file_type().is_symlink()
        && std::fs::read_link(path).map_err(copy_err("reading link", path))?
            != std::fs::read_link(lpath).map_err(copy_err("reading link", lpath))?
    {
        return Ok(false);
    }
    let a = list_xattrs(path).map_err(copy_err("reading xattrs of", path))?;
    let b = list_xattrs(lpath).map_err(copy_err("reading xattrs of", lpath))?;
    Ok(a == b)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = std::fs::File::open(a).map_err(copy_err("opening", a))?;
    let mut fb = std::fs::File::open(b).map_err(copy_err("opening", b))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(copy_err("reading", a))?;
        let m = read_full(&mut fb, &mut bb).map_err(copy_err("reading", b))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Apply `changes` (in walk order: parents before children) to `upper`.
fn write_changes(root: &Path, upper: &Path, changes: Vec<Change>) -> Result<()> {
    let mut made_dirs: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<PathBuf> = Vec::new();
    let ensure_parents =
        |rel: &Path, made: &mut HashSet<PathBuf>, times: &mut Vec<PathBuf>| -> Result<()> {
            let mut here = PathBuf::new();
            let comps: Vec<_> = rel.components().collect();
            for c in &comps[..comps.len().saturating_sub(1)] {
                here.push(c);
                if made.insert(here.clone()) {
                    make_dir_like(&root.join(&here), &upper.join(&here), false)?;
                    times.push(here.clone());
                }
            }
            Ok(())
        };
    for change in changes {
        match change {
            Change::Dir(rel, opaque) => {
                ensure_parents(&rel, &mut made_dirs, &mut dir_times)?;
                if made_dirs.insert(rel.clone()) {
                    make_dir_like(&root.join(&rel), &upper.join(&rel), opaque)?;
                    dir_times.push(rel);
                }
            }
            Change::Move(rel) => {
                ensure_parents(&rel, &mut made_dirs, &mut dir_times)?;
                let (src, dst) = (root.join(&rel), upper.join(&rel));
                std::fs::rename(&src, &dst).map_err(copy_err("moving into the upperdir", &src))?;
            }
            Change::Whiteout(rel) => {
                ensure_parents(&rel, &mut made_dirs, &mut dir_times)?;
                let dst = upper.join(&rel);
                make_whiteout(&dst).map_err(copy_err(
                    "creating whiteout (a 0:0 character device, which overlayfs, e.g. a container's root, refuses: keep the store on a volume) at",
                    &dst,
                ))?;
            }
        }
    }
    for rel in dir_times.iter().rev() {
        let md = root
            .join(rel)
            .symlink_metadata()
            .map_err(copy_err("reading", &root.join(rel)))?;
        let dst = upper.join(rel);
        set_times(&dst, atime(&md), mtime(&md)).map_err(copy_err("setting times of", &dst))?;
    }
    Ok(())
}

fn make_dir_like(src: &Path, dst: &Path, opaque: bool) -> Result<()> {
    let md = src.symlink_metadata().map_err(copy_err("reading", src))?;
    match std::fs::create_dir(dst) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(copy_err("creating", dst)(e)),
    }
    copy_metadata(src, dst, &md).map_err(copy_err("copying metadata to", dst))?;
    if opaque {
        set_opaque(dst).map_err(copy_err("marking opaque", dst))?;
    }
    Ok(())
}
