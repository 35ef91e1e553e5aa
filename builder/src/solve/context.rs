//! The build context as COPY sees it: the directory, its .dockerignore, and content digests
//! kept in the store's `ctxstat` tree so an unchanged file is never read again (git's index
//! trick, docs/design.md §4.2): same size, mtime, ctime, inode and mode → same digest. A file whose
//! mtime is in the same second as the moment it was hashed is hashed again next time, since
//! a write later in that second would not change its mtime (the "racy git" rule).
//!
//! A context under ROOT/snapshots is a copy made for one build (stdin, git, a tarball URL;
//! `store::layout::CONTEXT_TEMP_PREFIX`): its path never comes back, so it keeps no records.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use store::{Digest, StatRecord, Store};

use super::Result;
use crate::dockerignore::DockerIgnore;

pub struct Context {
    pub root: PathBuf,
    /// The context's key in `ctxstat`: its canonical path.
    key: String,
    stats: HashMap<String, StatRecord>,
    changed: Vec<(String, StatRecord)>,
    ignore: DockerIgnore,
    /// When the build started: a file modified in this second is not trusted next time.
    started_ns: i128,
    store: Store,
    /// A copy made for this build only (under ROOT/snapshots): no records are saved.
    is_temporary: bool,
}

impl Context {
    pub fn open(store: &Store, root: &Path, dockerfile: &Path) -> Result<Context> {
        let canonical = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let key = canonical.to_string_lossy().into_owned();
        let snapshots = store.layout().snapshots_dir();
        let is_temporary = canonical.starts_with(fs::canonicalize(&snapshots).unwrap_or(snapshots));
        let stats = match is_temporary {
            true => HashMap::new(),
            false => store.ctxstat_get_all(&key)?.into_iter().collect(),
        };
        let ignore = DockerIgnore::load(&canonical, Some(dockerfile)).map_err(|reason| {
            super::BuildError::DockerIgnore {
                path: canonical.join(".dockerignore").display().to_string(),
                reason,
            }
        })?;
        let started_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Ok(Context {
            root: canonical,
            key,
            stats,
            changed: Vec::new(),
            ignore,
            started_ns,
            store: store.clone(),
            is_temporary,
        })
    }

    /// Whether `rel` (context-relative, `/`-separated) is left out of COPY by .dockerignore
    /// (an excluded directory an exception re-includes something below is kept).
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.ignore.is_hidden(&self.root, rel)
    }

    /// The sha256 of a context file's bytes, from the stat cache when the file is unchanged.
    pub fn digest(&mut self, real: &Path) -> io::Result<String> {
        let rel = real
            .strip_prefix(&self.root)
            .unwrap_or(real)
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(real)?;
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let ctime_ns = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
        if let Some(rec) = self.stats.get(&rel) {
            let unchanged = rec.size == meta.len()
                && rec.mtime_ns == mtime_ns
                && rec.ctime_ns == ctime_ns
                && rec.ino == meta.ino()
                && rec.mode == meta.mode();
            if unchanged {
                return Ok(rec.digest.hex().to_string());
            }
        }
        let hex = sha256_file(real)?;
        // Racy: modified within the second the build started; hash again next time.
        let racy = mtime_ns / 1_000_000_000 >= self.started_ns / 1_000_000_000;
        if !racy {
            let digest = Digest::from_hex(&hex).map_err(io::Error::other)?;
            let rec = StatRecord {
                v: 1,
                size: meta.len(),
                mtime_ns,
                ctime_ns,
                ino: meta.ino(),
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                digest,
            };
            self.stats.insert(rel.clone(), rec.clone());
            self.changed.push((rel, rec));
        }
        Ok(hex)
    }

    /// A copy for one stage of the build: the same records, none new yet.
    pub fn fork(&self) -> Context {
        Context {
            root: self.root.clone(),
            key: self.key.clone(),
            stats: self.stats.clone(),
            changed: Vec::new(),
            ignore: self.ignore.clone(),
            started_ns: self.started_ns,
            store: self.store.clone(),
            is_temporary: self.is_temporary,
        }
    }

    /// Take in the new records of a stage's copy (see [`Context::fork`]).
    pub fn absorb(&mut self, other: Context) {
        for (rel, rec) in other.changed {
            self.stats.insert(rel.clone(), rec.clone());
            self.changed.push((rel, rec));
        }
    }

    /// Record the digests computed during this build (one short write).
    pub fn save(&mut self, store: &Store) -> Result<()> {
        if !self.changed.is_empty() && !self.is_temporary {
            store.ctxstat_put_many(&self.key, &self.changed)?;
            self.changed.clear();
        }
        Ok(())
    }
}

/// sha256 of a file's bytes, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set a file's mtime far in the past, so its record is not racy.
    fn age(path: &Path) {
        let t = libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("c path");
        // SAFETY: a valid NUL-terminated path and two valid timespecs.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
        assert_eq!(rc, 0, "utimensat: {}", io::Error::last_os_error());
    }

    fn setup() -> (tempfile::TempDir, Store, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&tmp.path().join("root")).expect("store");
        let ctx = tmp.path().join("ctx");
        fs::create_dir_all(&ctx).expect("mkdir");
        (tmp, store, ctx)
    }

    #[test]
    fn an_unchanged_file_keeps_its_digest_and_a_same_size_rewrite_is_caught_by_ctime() {
        let (_tmp, store, root) = setup();
        let file = root.join("main.go");
        fs::write(&file, "package main\n").expect("write");
        age(&file);
        let dockerfile = root.join("Dockerfile");
        let mut ctx = Context::open(&store, &root, &dockerfile).expect("open");
        let first = ctx.digest(&file).expect("digest");
        assert_eq!(first, sha256_file(&file).expect("hash"));
        ctx.save(&store).expect("save");

        let mut ctx = Context::open(&store, &root, &dockerfile).expect("open");
        assert!(ctx.stats.contains_key("main.go"), "the record was saved");
        assert_eq!(ctx.digest(&file).expect("digest"), first);
        assert!(
            ctx.changed.is_empty(),
            "an unchanged file is not hashed again"
        );

        // Same size, same mtime, new content: only the ctime tells.
        fs::write(&file, "package niam\n").expect("rewrite");
        age(&file);
        let second = ctx.digest(&file).expect("digest");
        assert_ne!(second, first);
        assert_eq!(second, sha256_file(&file).expect("hash"));
    }

    #[test]
    fn a_file_modified_in_the_build_second_gets_no_record() {
        let (_tmp, store, root) = setup();
        let file = root.join("fresh.txt");
        fs::write(&file, "new").expect("write");
        let dockerfile = root.join("Dockerfile");
        let mut ctx = Context::open(&store, &root, &dockerfile).expect("open");
        assert_eq!(
            ctx.digest(&file).expect("digest"),
            sha256_file(&file).expect("hash")
        );
        ctx.save(&store).expect("save");
        let ctx = Context::open(&store, &root, &dockerfile).expect("open");
        assert!(ctx.stats.is_empty(), "{:?}", ctx.stats.keys());
    }
}
