//! The sweep: what is on disk, how old it is, and removing it.
//!
//! Removal is two-phase so that "lease, then check the object exists" (what the
//! builder and puller do) is race-free against GC. While GC still holds the
//! metadata lock it *renames* each doomed blob into `ingest/gc-<pid>-…/` and each
//! doomed snapshot into `snapshots/gc-<pid>-…/`: a rename is cheap, and afterwards
//! no reader can find the object by its name. The slow part (unlinking, walking
//! snapshot trees) runs after the lock is released. A crash at any point leaves
//! either an unreferenced object under its own name or a trash directory; the next
//! GC removes both (`orphans` and `stale_temps`).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::chain_id::ChainId;
use crate::error::{Result, StoreError};
use crate::layout::{unique_name, Layout, GC_TRASH_PREFIX, TEMP_PREFIXES};
use crate::Digest;

/// A temp whose owner pid looks alive is still removed after this long (pid reuse).
pub const TEMP_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// A temp of a dead owner (or with no pid in its name) must be at least this old: a
/// new process may have been given the dead one's pid and be creating it right now.
pub const TEMP_GRACE: Duration = Duration::from_secs(2);

/// Every blob file in `blobs/sha256/` whose name is a digest.
pub fn blob_files(layout: &Layout) -> Result<Vec<Digest>> {
    let dir = layout.blobs_dir();
    let mut out = Vec::new();
    for e in read_dir(&dir)? {
        let name = e.file_name();
        if let Some(d) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Every snapshot directory `snapshots/<hex>/`.
pub fn snapshot_dirs(layout: &Layout) -> Result<Vec<ChainId>> {
    let dir = layout.snapshots_dir();
    let mut out = Vec::new();
    for e in read_dir(&dir)? {
        let name = e.file_name();
        if let Some(d) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) {
            out.push(ChainId(d));
        }
    }
    Ok(out)
}

/// The directory of snapshot `chain` (`snapshots/<hex>`, holding `fs/`).
pub fn snapshot_root(layout: &Layout, chain: &ChainId) -> PathBuf {
    layout.snapshots_dir().join(chain.hex())
}

/// When `path` appeared under its name: the later of mtime and ctime (a rename
/// updates ctime), so a blob renamed in from `ingest/` a moment ago counts as new
/// however long ago its bytes were written. `None` when it is gone.
pub fn appeared(path: &Path) -> Option<SystemTime> {
    let m = fs::symlink_metadata(path).ok()?;
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::new(
            m.ctime().max(0) as u64,
            m.ctime_nsec().clamp(0, 999_999_999) as u32,
        );
    let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Some(ctime.max(mtime))
}

/// Bytes of regular files under `dir` (each inode once), as `system df` counts them.
pub fn tree_size(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.len();
            }
        }
    }
    total
}

/// Where doomed objects wait, out of sight, until the lock is released.
pub struct Trash {
    blobs: PathBuf,
    snapshots: PathBuf,
    made_blobs: bool,
    made_snapshots: bool,
    /// Bytes of blobs moved in (known before the move; snapshots are measured on removal).
    blob_bytes: u64,
}

impl Trash {
    pub fn new(layout: &Layout) -> Trash {
        let name = unique_name(GC_TRASH_PREFIX);
        Trash {
            blobs: layout.ingest_dir().join(&name),
            snapshots: layout.snapshots_dir().join(&name),
            made_blobs: false,
            made_snapshots: false,
            blob_bytes: 0,
        }
    }

    /// Moves blob `d` out of `blobs/`. Returns false when it was already gone.
    pub fn take_blob(&mut self, layout: &Layout, d: &Digest) -> Result<bool> {
        let from = layout.blob(d);
        let size = match fs::symlink_metadata(&from) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("stat", &from)(e)),
        };
        if !self.made_blobs {
            fs::create_dir_all(&self.blobs).map_err(StoreError::io("creating", &self.blobs))?;
            self.made_blobs = true;
        }
        match fs::rename(&from, self.blobs.join(d.hex())) {
            Ok(()) => {
                self.blob_bytes += size;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("moving to trash", &from)(e)),
        }
    }

    /// Moves snapshot `chain` out of `snapshots/`. Returns false when it was already gone.
    pub fn take_snapshot(&mut self, layout: &Layout, chain: &ChainId) -> Result<bool> {
        let from = snapshot_root(layout, chain);
        if fs::symlink_metadata(&from).is_err() {
            return Ok(false);
        }
        if !self.made_snapshots {
            fs::create_dir_all(&self.snapshots)
                .map_err(StoreError::io("creating", &self.snapshots))?;
            self.made_snapshots = true;
        }
        match fs::rename(&from, self.snapshots.join(chain.hex())) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("moving to trash", &from)(e)),
        }
    }

    /// Deletes everything moved in; returns the bytes freed.
    pub fn empty(self) -> u64 {
        let mut freed = self.blob_bytes;
        if self.made_blobs {
            remove_tree(&self.blobs);
        }
        if self.made_snapshots {
            freed += remove_tree(&self.snapshots);
        }
        freed
    }
}

/// Removes `path` (file or tree) and returns the bytes of regular files it held.
/// Best effort: this runs after the point of no return (the metadata is gone), and
/// whatever is left is found again by the next GC as a stale temp.
pub fn remove_tree(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Ok(()) if meta.is_file() => meta.len(),
            _ => 0,
        };
    }
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut freed = 0;
    let mut seen = std::collections::HashSet::new();
    for e in walkdir::WalkDir::new(path)
        .contents_first(true)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir() {
            dirs.push(e.into_path());
            continue;
        }
        if let Ok(m) = e.metadata() {
            if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                freed += m.len();
            }
        }
        files.push(e.into_path());
    }
    unlink_all(&files);
    for d in &dirs {
        if fs::remove_dir(d).is_err() {
            let _ = make_writable(d);
            let _ = fs::remove_dir(d);
        }
    }
    if path.exists() {
        let _ = fs::remove_dir_all(path);
    }
    freed
}

/// Threads unlinking at once. An unlink on this kind of disk (ext4 mounted with
/// `discard` on a virtio volume) waits milliseconds for the device, not the CPU:
/// 5,000 blobs take 12 s one after another and 0.8 s with 32 in flight.
const UNLINK_THREADS: usize = 32;

/// Unlinks every path, many at a time; failures are left for the next GC.
fn unlink_all(paths: &[PathBuf]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = UNLINK_THREADS.min(paths.len().div_ceil(16)).max(1);
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(p) = paths.get(i) else { break };
        if fs::remove_file(p).is_err() {
            if let Some(parent) = p.parent() {
                let _ = make_writable(parent);
            }
            let _ = fs::remove_file(p);
        }
    };
    if threads == 1 {
        work();
        return;
    }
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(work);
        }
    });
}

/// A RUN step can leave a read-only directory (`chmod 500 /x`) that even root may
/// remove from, but not on filesystems mounted with odd options: widen it first.
fn make_writable(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::symlink_metadata(dir)?;
    if m.is_dir() && m.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(
            dir,
            fs::Permissions::from_mode(m.permissions().mode() | 0o700),
        )?;
    }
    Ok(())
}

/// A temp left by another process: `ingest/<pid>-…` files and the `snapshots/` trees
/// of every kind in `layout::TEMP_PREFIXES` (GC trash in both).
#[derive(Debug)]
pub struct Temp {
    pub path: PathBuf,
    pub pid: Option<u32>,
    pub appeared: Option<SystemTime>,
    /// GC trash: removable as soon as its owner is gone, whatever its age.
    pub is_trash: bool,
}

/// Every temp under `ingest/` and `snapshots/`.
pub fn temps(layout: &Layout) -> Result<Vec<Temp>> {
    let mut out = Vec::new();
    for dir in [layout.ingest_dir(), layout.snapshots_dir()] {
        let is_ingest = dir == layout.ingest_dir();
        for e in read_dir(&dir)? {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = TEMP_PREFIXES
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .or(if is_ingest { Some(name.as_str()) } else { None });
            let Some(rest) = rest else { continue };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            out.push(Temp {
                path: e.path(),
                pid,
                appeared: appeared(&e.path()),
                is_trash: name.starts_with(GC_TRASH_PREFIX),
            });
        }
    }
    Ok(out)
}

impl Temp {
    /// Whether nobody can still be using it: its owner is gone (or it is very old)
    /// and it did not appear just before this GC run started.
    pub fn is_stale(&self, start: SystemTime) -> bool {
        let old = |limit: Duration| self.appeared.is_none_or(|t| t + limit <= start);
        let owner_gone = self
            .pid
            .is_none_or(|p| p != std::process::id() && !pid_alive(p));
        if self.is_trash {
            return owner_gone;
        }
        (owner_gone && old(TEMP_GRACE)) || old(TEMP_MAX_AGE)
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd.flatten().collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("listing", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temps_are_stale_only_when_their_owner_is_gone_and_they_are_old() {
        let start = SystemTime::now();
        let long_ago = start - Duration::from_secs(60);
        let me = std::process::id();
        let dead = 4_000_000; // above pid_max: never a live process
        let cases = [
            ("dead owner, old", Some(dead), Some(long_ago), false, true),
            (
                "dead owner, brand new",
                Some(dead),
                Some(start),
                false,
                false,
            ),
            ("live owner, old", Some(me), Some(long_ago), false, false),
            (
                "live owner, older than a day",
                Some(me),
                Some(start - TEMP_MAX_AGE),
                false,
                true,
            ),
            ("no pid in the name, old", None, Some(long_ago), false, true),
            (
                "trash of a dead GC, brand new",
                Some(dead),
                Some(start),
                true,
                true,
            ),
            ("trash of a live GC", Some(me), Some(long_ago), true, false),
        ];
        for (name, pid, appeared, is_trash, want) in cases {
            let t = Temp {
                path: PathBuf::from("x"),
                pid,
                appeared,
                is_trash,
            };
            assert_eq!(t.is_stale(start), want, "case: {name}");
        }
    }

    #[test]
    fn every_temp_kind_of_a_dead_process_is_found_and_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        layout.create().unwrap();
        let dead = 4_000_000; // above pid_max: never a live process
        let mut made = Vec::new();
        for prefix in TEMP_PREFIXES {
            let p = layout.snapshots_dir().join(format!("{prefix}{dead}-0-0"));
            fs::create_dir_all(p.join("fs")).unwrap();
            made.push(p);
        }
        let ingest = layout.ingest_dir().join(format!("{dead}-0-0"));
        fs::write(&ingest, b"partial").unwrap();
        made.push(ingest);
        let later = SystemTime::now() + TEMP_GRACE;
        let mut found: Vec<PathBuf> = temps(&layout)
            .unwrap()
            .into_iter()
            .filter(|t| t.is_stale(later))
            .map(|t| t.path)
            .collect();
        found.sort();
        made.sort();
        assert_eq!(found, made);
    }

    #[test]
    fn trash_moves_out_of_sight_and_empty_counts_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        layout.create().unwrap();
        let d = Digest::sha256_of(b"hello");
        fs::write(layout.blob(&d), b"hello").unwrap();
        let chain = ChainId(Digest::sha256_of(b"c"));
        let snap = snapshot_root(&layout, &chain).join("fs/dir");
        fs::create_dir_all(&snap).unwrap();
        fs::write(snap.join("f"), vec![0u8; 1000]).unwrap();
        assert_eq!(tree_size(&snapshot_root(&layout, &chain)), 1000);

        let mut trash = Trash::new(&layout);
        assert!(trash.take_blob(&layout, &d).unwrap());
        assert!(
            !trash.take_blob(&layout, &d).unwrap(),
            "second take finds nothing"
        );
        assert!(trash.take_snapshot(&layout, &chain).unwrap());
        assert!(!layout.blob(&d).exists());
        assert!(blob_files(&layout).unwrap().is_empty());
        assert!(snapshot_dirs(&layout).unwrap().is_empty());
        assert_eq!(trash.empty(), 1005);
        assert_eq!(fs::read_dir(layout.ingest_dir()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(layout.snapshots_dir()).unwrap().count(), 0);
    }
}
