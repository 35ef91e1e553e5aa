//! The cache mounts' directories under `ROOT/cache-mounts` (layout in `run_mounts`): names
//! from ids, the locks each `sharing=` mode takes, and what `system df` and `builder prune`
//! count and remove. A lock held on an instance directory is what keeps a prune from
//! removing a mount a RUN is using.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use store::dir_lock::{
    allocated_bytes, allocated_bytes_inside, lock_dir, try_lock_dir, FlockOperation,
};

use super::error::RunMountError;

/// `ROOT/cache-mounts`: every cache mount's directories. Nothing else lives there.
pub fn cache_mounts_dir(root: &Path) -> PathBuf {
    store::Layout::new(root).cache_mounts_dir()
}

/// Bytes used by cache mounts (allocated blocks), for `system df`.
pub fn usage(root: &Path) -> io::Result<u64> {
    allocated_bytes_inside(&cache_mounts_dir(root))
}

/// Remove every cache mount nobody is using (`builder prune`); returns the bytes freed.
/// A mount held by a running build (its lock is taken) is left alone.
pub fn remove_all(root: &Path) -> io::Result<u64> {
    let dir = cache_mounts_dir(root);
    let Ok(names) = fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut freed = 0;
    for name in names {
        let name = name?.path();
        let mut busy = false;
        for inst in fs::read_dir(&name)? {
            let inst = inst?.path();
            if !inst.is_dir() {
                continue;
            }
            let Some(_lock) = try_lock_dir(&inst, FlockOperation::NonBlockingLockExclusive)? else {
                busy = true;
                continue;
            };
            let size = allocated_bytes(&inst).unwrap_or(0);
            fs::remove_dir_all(&inst)?;
            freed += size;
        }
        if !busy {
            fs::remove_dir_all(&name)?;
        }
    }
    Ok(freed)
}

/// An `id=` names a directory under ROOT/cache-mounts: no `/`, no `..`, not empty.
pub fn check_cache_id(id: &str) -> Result<(), RunMountError> {
    if id.is_empty() || id == "." || id.contains('/') || id.contains("..") || id.contains('\0') {
        return Err(RunMountError::CacheId(id.to_string()));
    }
    Ok(())
}

pub(super) fn encode_name(id: &str) -> String {
    let mut out = String::new();
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// The directory of a cache mount, locked as `sharing` asks. Created with `attrs`
/// (mode, uid, gid) the first time.
pub(super) fn open_cache(
    root: &Path,
    name: &str,
    id: &str,
    sharing: &str,
    attrs: (u32, u32, u32),
    on_wait: &mut dyn FnMut(&str),
) -> io::Result<(PathBuf, File)> {
    let base = cache_mounts_dir(root).join(name);
    fs::create_dir_all(&base)?;
    let id_file = base.join("id");
    if !id_file.exists() {
        fs::write(&id_file, id)?;
    }
    let instance = |n: usize| base.join(n.to_string());
    let (inst, lock) = match sharing {
        "private" => {
            let mut n = 0;
            loop {
                let inst = instance(n);
                if let Some(lock) = try_lock_dir(&inst, FlockOperation::NonBlockingLockExclusive)? {
                    break (inst, lock);
                }
                n += 1;
            }
        }
        "locked" => {
            let inst = instance(0);
            let lock = match try_lock_dir(&inst, FlockOperation::NonBlockingLockExclusive)? {
                Some(lock) => lock,
                None => {
                    on_wait(&format!(
                        "waiting for cache mount {id:?} (sharing=locked, held by another build)"
                    ));
                    lock_dir(&inst, FlockOperation::LockExclusive)?
                }
            };
            (inst, lock)
        }
        _ => {
            let inst = instance(0);
            let lock = lock_dir(&inst, FlockOperation::LockShared)?;
            (inst, lock)
        }
    };
    let fs_dir = inst.join("fs");
    if !fs_dir.exists() {
        // Unique per call: stages building side by side in this process may race here too.
        let tmp = inst.join(store::layout::unique_name("fs.new-"));
        let _ = fs::remove_dir_all(&tmp);
        fs::DirBuilder::new().mode(attrs.0).create(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(attrs.0))?;
        std::os::unix::fs::chown(&tmp, Some(attrs.1), Some(attrs.2))?;
        // Two shared users may race here: the loser's rename fails and it uses the winner's.
        if fs::rename(&tmp, &fs_dir).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    Ok((fs_dir, lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_remove_all_skip_a_mount_in_use() {
        let root = tempfile::tempdir().expect("tempdir");
        let attrs = (0o755, 0, 0);
        let (dir, held) =
            open_cache(root.path(), "busy", "busy", "locked", attrs, &mut |_| {}).expect("open");
        fs::write(dir.join("f"), vec![7u8; 64 * 1024]).expect("write");
        let (dir2, free) =
            open_cache(root.path(), "idle", "idle", "shared", attrs, &mut |_| {}).expect("open");
        fs::write(dir2.join("f"), vec![7u8; 64 * 1024]).expect("write");
        drop(free);
        assert!(usage(root.path()).expect("usage") >= 128 * 1024);
        let freed = remove_all(root.path()).expect("remove");
        assert!(freed >= 64 * 1024, "{freed}");
        assert!(dir.join("f").is_file(), "a mount in use was removed");
        assert!(!cache_mounts_dir(root.path()).join("idle").exists());
        drop(held);
        remove_all(root.path()).expect("remove");
        assert!(!cache_mounts_dir(root.path()).join("busy").exists());
        assert!(usage(root.path()).expect("usage") < 64 * 1024);
    }

    #[test]
    fn cache_ids_and_names() {
        assert!(check_cache_id("go-build").is_ok());
        for bad in ["", ".", "a/b", "..", "a..b"] {
            assert!(check_cache_id(bad).is_err(), "{bad}");
        }
        assert_eq!(encode_name("/root/.cache"), "%2Froot%2F.cache");
        assert_eq!(encode_name("100%"), "100%25");
    }
}
