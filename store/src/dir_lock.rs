//! Locks on directories that live outside the store's records: RUN cache mounts
//! (`ROOT/cache-mounts`) and ADD's URL downloads (`ROOT/downloads`), see
//! [`crate::Layout`]. A build holds a directory by a shared or exclusive `flock` on its
//! `lock` file; `builder prune` removes only directories it can lock exclusively at once.
//! `system df` counts their allocated blocks ([`allocated_bytes`]).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub use rustix::fs::FlockOperation;

/// Takes `op` on `DIR/lock` (creating both), making sure the lock file still is the
/// one in the directory once locked: a prune may have removed the directory between our
/// open and our lock, and a lock on a removed file protects nothing. `None` when a
/// non-blocking lock is busy.
pub fn try_lock_dir(dir: &Path, op: FlockOperation) -> io::Result<Option<File>> {
    loop {
        fs::create_dir_all(dir)?;
        let path = dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match rustix::fs::flock(&file, op) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let held = file.metadata()?;
        match fs::metadata(&path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(Some(file)),
            _ => continue,
        }
    }
}

/// Waits for `op` (`LockShared` or `LockExclusive`) on `DIR/lock`, as [`try_lock_dir`].
pub fn lock_dir(dir: &Path, op: FlockOperation) -> io::Result<File> {
    try_lock_dir(dir, op)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{}/lock: a blocking lock was refused", dir.display()),
        )
    })
}

/// The disk space (allocated blocks) of `dir` and everything under it; 0 when it does not
/// exist. What removing `dir` frees.
pub fn allocated_bytes(dir: &Path) -> io::Result<u64> {
    walk_allocated(dir, 0)
}

/// The disk space of everything under `dir`, not `dir` itself: what `system df` counts for
/// ROOT's `cache-mounts/` and `downloads/`, so an empty one holds 0 bytes, as after
/// `builder prune`.
pub fn allocated_bytes_inside(dir: &Path) -> io::Result<u64> {
    walk_allocated(dir, 1)
}

fn walk_allocated(dir: &Path, min_depth: usize) -> io::Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in walkdir::WalkDir::new(dir).min_depth(min_depth) {
        let entry = entry.map_err(io::Error::other)?;
        total += entry.metadata().map_err(io::Error::other)?.blocks() * 512;
    }
    Ok(total)
}
