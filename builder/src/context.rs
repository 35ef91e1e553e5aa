//! The build context: walk it with .dockerignore applied, and know every file's content
//! digest while reading as little as possible (git's index trick, docs/design.md §4.2).
//!
//! The caller hands in the stat records of the previous build (path → [`StatRecord`]) and
//! gets back the current ones; where they live (the store's `ctxstat` tree) is its
//! business. A file whose size, mtime, ctime, inode, mode and owner are all unchanged keeps
//! its recorded digest and is not opened. The "racy git" rule closes the one hole: a file
//! modified in the same second the walk started could be written again later in that
//! second without its stat changing, so its record is not returned and it is hashed again
//! next time.
//!
//! Files to hash are spread over the machine's cores; each is read once.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use walkdir::WalkDir;

use crate::dockerignore::{DockerIgnore, IgnoreError};

/// What a file looked like when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatRecord {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    /// `st_mode`, file type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `sha256:<hex>` of the content.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink {
        target: String,
    },
    /// Fifos, sockets, devices: listed, never read.
    Other,
}

/// One path of the context that .dockerignore lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Context-relative, `/`-separated, no leading `./`.
    pub path: String,
    pub kind: EntryKind,
    /// `st_mode`, file type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// `sha256:<hex>` of the content, for files.
    pub digest: Option<String>,
}

/// The result of [`ContextWalker::walk`].
#[derive(Debug, Default)]
pub struct ContextWalk {
    /// Sorted by path (byte order, a directory before its children).
    pub entries: Vec<ContextEntry>,
    /// The records to keep for next time: every file walked, except racy ones.
    pub records: HashMap<String, StatRecord>,
    /// Files that were read and hashed this time.
    pub hashed_files: u64,
    pub hashed_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {path}: {source}")]
    Ignore {
        path: PathBuf,
        #[source]
        source: IgnoreError,
    },
    #[error("reading build context entry {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is outside the build context {root}")]
    OutsideContext { path: String, root: PathBuf },
}

pub type Result<T> = std::result::Result<T, ContextError>;

/// Walks one build context directory.
#[derive(Debug, Clone)]
pub struct ContextWalker {
    root: PathBuf,
    ignore: DockerIgnore,
}

impl ContextWalker {
    pub fn new(root: &Path, ignore: DockerIgnore) -> ContextWalker {
        ContextWalker {
            root: root.to_path_buf(),
            ignore,
        }
    }

    /// With the build's ignore file (see [`DockerIgnore::load`]).
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<ContextWalker> {
        let ignore =
            DockerIgnore::load(root, dockerfile).map_err(|source| ContextError::Ignore {
                path: root.to_path_buf(),
                source,
            })?;
        Ok(ContextWalker::new(root, ignore))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// The whole context.
    pub fn walk(&self, previous: &HashMap<String, StatRecord>) -> Result<ContextWalk> {
        self.walk_under(&["."], previous)
    }

    /// Only the subtrees `under` (context-relative paths, e.g. COPY sources without their
    /// wildcards); a path that does not exist yields nothing. Paths are cleaned; `..` out of
    /// the context is an error.
    pub fn walk_under(
        &self,
        under: &[&str],
        previous: &HashMap<String, StatRecord>,
    ) -> Result<ContextWalk> {
        let started_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i128);
        let mut starts: Vec<String> = Vec::new();
        for u in under {
            let rel = crate::dockerignore::clean(u.trim_start_matches('/'));
            if rel == ".." || rel.starts_with("../") {
                return Err(ContextError::OutsideContext {
                    path: u.to_string(),
                    root: self.root.clone(),
                });
            }
            starts.push(rel);
        }
        starts.sort();
        starts.dedup();
        // A start inside another start is walked already.
        let starts: Vec<&String> = starts
            .iter()
            .filter(|s| {
                !starts
                    .iter()
                    .any(|o| o != *s && (o.as_str() == "." || s.starts_with(&format!("{o}/"))))
            })
            .collect();

        let mut walk = ContextWalk::default();
        let mut to_hash: Vec<(usize, PathBuf, StatRecord)> = Vec::new();
        for start in starts {
            self.collect(start, previous, started_s, &mut walk, &mut to_hash)?;
        }
        hash_all(&mut to_hash)?;
        for (i, _, rec) in to_hash {
            walk.hashed_files += 1;
            walk.hashed_bytes += rec.size;
            let entry = &mut walk.entries[i];
            entry.digest = Some(rec.digest.clone());
            if rec.mtime_ns.div_euclid(1_000_000_000) < started_s {
                walk.records.insert(entry.path.clone(), rec);
            }
        }
        walk.entries.sort_by(|a, b| a.path.cmp(&b.path));
        walk.entries.dedup_by(|a, b| a.path == b.path);
        Ok(walk)
    }

    fn collect(
        &self,
        start: &str,
        previous: &HashMap<String, StatRecord>,
        started_s: i128,
        walk: &mut ContextWalk,
        to_hash: &mut Vec<(usize, PathBuf, StatRecord)>,
    ) -> Result<()> {
        let base = if start == "." {
            self.root.clone()
        } else {
            self.root.join(start)
        };
        if start != "." && fs::symlink_metadata(&base).is_err() {
            return Ok(());
        }
        let ignore = &self.ignore;
        let root = &self.root;
        let rel_of = |p: &Path| -> String {
            p.strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let walker = WalkDir::new(&base)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let rel = rel_of(e.path());
                if rel.is_empty() || !ignore.is_excluded(&rel) {
                    return true;
                }
                // Excluded: descend only if an exception may match inside.
                e.file_type().is_dir() && !ignore.can_skip_dir(&rel)
            });
        for entry in walker {
            let entry = entry.map_err(|e| ContextError::Read {
                path: e.path().unwrap_or(&base).to_path_buf(),
                source: e.into(),
            })?;
            let rel = rel_of(entry.path());
            if rel.is_empty() || ignore.is_excluded(&rel) {
                continue;
            }
            let md = entry.metadata().map_err(|e| ContextError::Read {
                path: entry.path().to_path_buf(),
                source: e.into(),
            })?;
            let ft = md.file_type();
            let kind = if ft.is_file() {
                EntryKind::File
            } else if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                let target = fs::read_link(entry.path()).map_err(|source| ContextError::Read {
                    path: entry.path().to_path_buf(),
                    source,
                })?;
                EntryKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                }
            } else {
                EntryKind::Other
            };
            let mut ce = ContextEntry {
                path: rel.clone(),
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                size: md.len(),
                digest: None,
            };
            if ce.kind == EntryKind::File {
                let mut rec = StatRecord {
                    size: md.len(),
                    mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                    ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
                    ino: md.ino(),
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    digest: String::new(),
                };
                match previous.get(&rel) {
                    Some(old) if same_stat(old, &rec) && !old.digest.is_empty() => {
                        rec.digest = old.digest.clone();
                        ce.digest = Some(rec.digest.clone());
                        if rec.mtime_ns.div_euclid(1_000_000_000) < started_s {
                            walk.records.insert(rel, rec);
                        }
                    }
                    _ => to_hash.push((walk.entries.len(), entry.path().to_path_buf(), rec)),
                }
            }
            walk.entries.push(ce);
        }
        Ok(())
    }
}

fn same_stat(a: &StatRecord, b: &StatRecord) -> bool {
    a.size == b.size
        && a.mtime_ns == b.mtime_ns
        && a.ctime_ns == b.ctime_ns
        && a.ino == b.ino
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
}

/// Hash every file in `files` (filling in each record's digest), on all cores.
fn hash_all(files: &mut [(usize, PathBuf, StatRecord)]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, io::Result<String>)>> = Mutex::new(Vec::new());
    let paths: Vec<&Path> = files.iter().map(|(_, p, _)| p.as_path()).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let r = sha256_file(path);
                results
                    .lock()
                    .expect("no thread panics holding this lock")
                    .push((i, r));
            });
        }
    });
    for (i, r) in results
        .into_inner()
        .expect("no thread panics holding this lock")
    {
        let digest = r.map_err(|source| ContextError::Read {
            path: files[i].1.clone(),
            source,
        })?;
        files[i].2.digest = digest;
    }
    Ok(())
}

/// `sha256:<hex>` of a file's bytes.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The cache-key digest of a COPY selection: every (path as it lands, entry) with its
/// type, mode, owner and content digest (or link target), sorted by path. Mtimes are left
/// out on purpose: a touched but unchanged file must not invalidate the cache.
pub fn digest_selection<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a ContextEntry)>,
) -> String {
    let mut lines: Vec<Vec<u8>> = entries
        .into_iter()
        .map(|(path, e)| {
            let what = match &e.kind {
                EntryKind::File => e.digest.clone().unwrap_or_default(),
                EntryKind::Dir => "dir".to_string(),
                EntryKind::Symlink { target } => format!("symlink:{target}"),
                EntryKind::Other => "other".to_string(),
            };
            format!("{path}\0{:o}\0{}\0{}\0{what}\n", e.mode, e.uid, e.gid).into_bytes()
        })
        .collect();
    lines.sort();
    let mut hasher = Sha256::new();
    for l in lines {
        hasher.update(&l);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = tmp.path();
        for (p, c) in [
            ("Dockerfile", "FROM scratch\n"),
            ("src/main.go", "package main\n"),
            ("src/util.go", "package util\n"),
            ("node_modules/x/index.js", "x"),
            ("build/out.o", "o"),
            ("build/keep.txt", "k"),
            ("README.md", "r"),
        ] {
            let path = r.join(p);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, c).expect("write");
        }
        std::os::unix::fs::symlink("src/main.go", r.join("link")).expect("symlink");
        fs::write(
            r.join(".dockerignore"),
            "node_modules\nbuild\n!build/keep.txt\n*.md\n",
        )
        .expect("write");
        tmp
    }

    /// Make the files old enough that their records are not racy.
    fn age(root: &Path) {
        for e in WalkDir::new(root).min_depth(1) {
            let e = e.expect("walk");
            if e.file_type().is_file() {
                age_file(e.path());
            }
        }
    }

    fn age_file(path: &Path) {
        let t = libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("c");
        // SAFETY: valid path and times.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
        assert_eq!(rc, 0);
    }

    #[test]
    fn walk_applies_dockerignore() {
        let tmp = tree();
        let w = ContextWalker::open(tmp.path(), None).expect("open");
        let walk = w.walk(&HashMap::new()).expect("walk");
        let paths: Vec<&str> = walk.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".dockerignore",
                "Dockerfile",
                "build/keep.txt",
                "link",
                "src",
                "src/main.go",
                "src/util.go"
            ]
        );
        let link = walk
            .entries
            .iter()
            .find(|e| e.path == "link")
            .expect("link");
        assert_eq!(
            link.kind,
            EntryKind::Symlink {
                target: "src/main.go".into()
            }
        );
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let tmp = tree();
        age(tmp.path());
        let w = ContextWalker::open(tmp.path(), None).expect("open");
        let first = w.walk(&HashMap::new()).expect("walk");
        assert_eq!(first.hashed_files, 5);
        assert_eq!(first.records.len(), 5);
        let second = w.walk(&first.records).expect("walk");
        assert_eq!(second.hashed_files, 0, "nothing changed");
        assert_eq!(second.entries, first.entries);

        // Same size, same mtime, new content: the ctime gives it away.
        let main = tmp.path().join("src/main.go");
        fs::write(&main, "package niam\n").expect("write");
        age_file(&main);
        let third = w.walk(&second.records).expect("walk");
        assert_eq!(third.hashed_files, 1);
        let digest = |walk: &ContextWalk| {
            walk.entries
                .iter()
                .find(|e| e.path == "src/main.go")
                .and_then(|e| e.digest.clone())
                .expect("digest")
        };
        assert_ne!(digest(&third), digest(&second));
        assert_eq!(digest(&third), sha256_file(&main).expect("hash"));
    }

    #[test]
    fn files_modified_in_the_walk_second_are_hashed_again() {
        let tmp = tree();
        let w = ContextWalker::open(tmp.path(), None).expect("open");
        let first = w.walk(&HashMap::new()).expect("walk");
        // Fresh files: their mtime is this second, so no record is kept.
        assert!(first.records.is_empty(), "{:?}", first.records.keys());
        let second = w.walk(&first.records).expect("walk");
        assert_eq!(second.hashed_files, 5);
    }

    #[test]
    fn walk_under_limits_the_walk() {
        let tmp = tree();
        let w = ContextWalker::open(tmp.path(), None).expect("open");
        let walk = w
            .walk_under(&["src", "./src/main.go", "missing"], &HashMap::new())
            .expect("walk");
        let paths: Vec<&str> = walk.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["src", "src/main.go", "src/util.go"]);
        assert!(matches!(
            w.walk_under(&["../etc"], &HashMap::new()),
            Err(ContextError::OutsideContext { .. })
        ));
    }

    #[test]
    fn selection_digest_covers_content_mode_owner_and_path_but_not_mtime() {
        let tmp = tree();
        age(tmp.path());
        let w = ContextWalker::open(tmp.path(), None).expect("open");
        let key = |w: &ContextWalker| {
            let walk = w.walk_under(&["src"], &HashMap::new()).expect("walk");
            digest_selection(walk.entries.iter().map(|e| (e.path.as_str(), e)))
        };
        let base = key(&w);
        let main = tmp.path().join("src/main.go");
        fs::write(&main, "package main\n").expect("rewrite same content");
        assert_eq!(key(&w), base, "mtime alone does not change the key");
        fs::set_permissions(&main, fs::Permissions::from_mode(0o600)).expect("chmod");
        let chmodded = key(&w);
        assert_ne!(chmodded, base);
        std::os::unix::fs::lchown(&main, Some(1234), None).expect("chown");
        assert_ne!(key(&w), chmodded);
        let walk = w.walk_under(&["src"], &HashMap::new()).expect("walk");
        let renamed: Vec<(String, &ContextEntry)> = walk
            .entries
            .iter()
            .map(|e| (format!("app/{}", e.path), e))
            .collect();
        assert_ne!(
            digest_selection(renamed.iter().map(|(p, e)| (p.as_str(), *e))),
            key(&w),
            "the destination path is part of the key"
        );
    }
}
