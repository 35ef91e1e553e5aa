//! All access to the sled database. Nothing else in the crate names sled.
//!
//! sled lets one process open a database at a time, and several strata processes
//! share a root, so the database is opened only for short transactions
//! (`read`/`write`: open → work → flush → drop) and never held across long work.
//! Opening first takes an exclusive `flock` on `ROOT/meta/lock`: sled writes its
//! `conf` file before taking its own lock, so two first opens could otherwise race.
//! A busy lock is retried with jittered exponential backoff (1 ms doubling to
//! 100 ms) for up to 5 minutes; after 1 s we print once
//! `waiting for ROOT/meta (held by another strata process)`.

pub mod gc;
pub mod schema;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::records::*;
use crate::Descriptor;
use crate::Store;

pub use schema::*;

const WAIT_LIMIT: Duration = Duration::from_secs(300);
const WAIT_NOTICE: Duration = Duration::from_secs(1);

/// Threads of one process queue here instead of fighting over the flock.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// An open database, valid for one short transaction.
pub struct Meta {
    db: sled::Db,
    path: PathBuf,
    _lock: File,
}

/// The database kept open between transactions while this process holds it (see
/// [`hold`]): a no-op build then opens sled once instead of once per lookup.
static HELD: Mutex<Option<Held>> = Mutex::new(None);

struct Held {
    meta: Option<Meta>,
    /// Deferred writes (leases) not yet flushed.
    is_dirty: bool,
}

/// Keep the database open after the next transaction, until [`release`]. For commands
/// made of many short lookups. The caller must `release` before any long work (a RUN, a
/// layer write, a transfer): other processes wait for the database meanwhile (docs/design.md §2).
pub fn hold() {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if held.is_none() {
        *held = Some(Held {
            meta: None,
            is_dirty: false,
        });
    }
}

/// Whether this process is holding the database (see [`hold`]).
pub fn is_held() -> bool {
    HELD.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// Flush and close a held database; the next transaction opens it again (and keeps it
/// open again while [`hold`] is in force). Cheap when nothing is open.
pub fn release() -> Result<()> {
    let _guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = held.as_mut() {
        if let Some(meta) = h.meta.take() {
            if h.is_dirty {
                meta.flush()?;
            }
        }
        h.is_dirty = false;
    }
    Ok(())
}

/// Release and stop holding: transactions go back to open → work → close.
pub fn unhold() -> Result<()> {
    release()?;
    *HELD.lock().unwrap_or_else(|p| p.into_inner()) = None;
    Ok(())
}

/// When to flush a write to disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Before returning: tags, images, cache records.
    Now,
    /// May wait for `release` while the database is held: records that mean nothing
    /// after the process is gone (leases).
    Deferred,
}

fn with_meta<T>(
    store: &Store,
    flush: Option<Flush>,
    f: impl FnOnce(&Meta) -> Result<T>,
) -> Result<T> {
    let _guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = store.layout().meta_dir();
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = held.as_mut() {
        if h.meta.as_ref().is_some_and(|m| m.path != dir) {
            if let Some(other) = h.meta.take() {
                other.flush()?;
            }
            h.is_dirty = false;
        }
        if h.meta.is_none() {
            h.meta = Some(Meta::open(&dir)?);
        }
        let meta = h.meta.as_ref().expect("opened above");
        let out = f(meta)?;
        match flush {
            Some(Flush::Now) => meta.flush()?,
            Some(Flush::Deferred) => h.is_dirty = true,
            None => {}
        }
        return Ok(out);
    }
    drop(held);
    let meta = Meta::open(&dir)?;
    let out = f(&meta)?;
    if flush.is_some() {
        meta.flush()?;
    }
    Ok(out)
}

/// Runs `f` with the database open, read-only by convention.
pub fn read<T>(store: &Store, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
    with_meta(store, None, f)
}

/// Runs `f` with the database open and flushes before returning.
pub fn write<T>(store: &Store, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
    with_meta(store, Some(Flush::Now), f)
}

/// Like `write`, but while the database is held the flush waits for `release`: for
/// records that protect only a live process (leases), which a crash makes moot anyway.
pub fn write_deferred<T>(store: &Store, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
    with_meta(store, Some(Flush::Deferred), f)
}

/// Records committed blobs in one transaction.
pub fn record_blobs(store: &Store, blobs: &[Descriptor]) -> Result<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    write(store, |m| {
        let now = now();
        for d in blobs {
            if m.get(BLOBS, &d.digest)?.is_none() {
                m.put(
                    BLOBS,
                    &d.digest,
                    &BlobRecord::new(d.size, &d.media_type, now),
                )?;
            }
        }
        Ok(())
    })
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Deletes `snap.*.generating` files: snapshots a killed process left half written.
///
/// sled 0.34 writes its periodic snapshot to `snap.<lsn>.generating`, fsyncs and renames
/// it to `snap.<lsn>`; but when it opens, it takes the highest-named `snap.*` file, torn
/// `.generating` ones included, and a torn one fails with "Read corrupted data at file
/// offset None" (spacejam/sled#1527) — a SIGKILL at the wrong moment would leave the
/// root unopenable. A snapshot is only a shortcut through the log: the previous complete
/// one stays until the rename, and sled replays the log from it, so deleting the torn
/// file loses nothing. Called under our flock, so no other process is writing one.
fn remove_torn_snapshots(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

impl Meta {
    fn open(dir: &Path) -> Result<Meta> {
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io("opening lock file", &lock_path))?;
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        let mut noticed = false;
        loop {
            let locked = match rustix::fs::flock(
                &lock,
                rustix::fs::FlockOperation::NonBlockingLockExclusive,
            ) {
                Ok(()) => true,
                Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => false,
                Err(e) => {
                    return Err(StoreError::io("locking", &lock_path)(e.into()));
                }
            };
            if locked {
                match Self::open_sled(dir) {
                    Ok(db) => {
                        return Ok(Meta {
                            db,
                            path: dir.to_path_buf(),
                            _lock: lock,
                        })
                    }
                    // sled's own lock can outlive a closing Db by a moment.
                    Err(e) if is_lock_error(&e) => {
                        let _ = rustix::fs::flock(&lock, rustix::fs::FlockOperation::Unlock);
                    }
                    Err(source) => {
                        return Err(StoreError::Meta {
                            path: dir.to_path_buf(),
                            source,
                        })
                    }
                }
            }
            let waited = start.elapsed();
            if waited >= WAIT_LIMIT {
                return Err(StoreError::Busy {
                    path: dir.to_path_buf(),
                });
            }
            if !noticed && waited >= WAIT_NOTICE {
                noticed = true;
                eprintln!(
                    "waiting for {} (held by another strata process)",
                    dir.display()
                );
            }
            std::thread::sleep(jitter(delay));
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    fn open_sled(dir: &Path) -> sled::Result<sled::Db> {
        remove_torn_snapshots(dir)?;
        sled::Config::new()
            .path(dir)
            .cache_capacity(32 << 20)
            .flush_every_ms(None)
            .open()
    }

    fn tree(&self, name: &'static str) -> Result<sled::Tree> {
        self.db.open_tree(name).map_err(|source| self.err(source))
    }

    fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Meta {
            path: self.path.clone(),
            source,
        }
    }

    /// The typed record under `key` in `tree`, if any.
    pub fn get<K: TreeKey + ?Sized, R: DeserializeOwned>(
        &self,
        tree: Tree<K, R>,
        key: &K,
    ) -> Result<Option<R>> {
        let key = key.as_key();
        let t = self.tree(tree.name)?;
        match t.get(key.as_bytes()).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => {
                serde_json::from_slice(&v)
                    .map(Some)
                    .map_err(|e| StoreError::CorruptRecord {
                        tree: tree.name,
                        key: key.to_string(),
                        reason: e.to_string(),
                    })
            }
        }
    }

    pub fn put<K: TreeKey + ?Sized, R: Serialize>(
        &self,
        tree: Tree<K, R>,
        key: &K,
        rec: &R,
    ) -> Result<()> {
        let t = self.tree(tree.name)?;
        let v = serde_json::to_vec(rec).expect("records serialize to JSON");
        t.insert(key.as_key().as_bytes(), v)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes `key`; returns whether it existed.
    pub fn remove<K: TreeKey + ?Sized, R>(&self, tree: Tree<K, R>, key: &K) -> Result<bool> {
        let t = self.tree(tree.name)?;
        Ok(t.remove(key.as_key().as_bytes())
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// Every (key, record) in `tree` whose key starts with `prefix`, in key order.
    pub fn scan<K: TreeKey + ?Sized, R: DeserializeOwned>(
        &self,
        tree: Tree<K, R>,
        prefix: &str,
    ) -> Result<Vec<(String, R)>> {
        let t = self.tree(tree.name)?;
        let mut out = Vec::new();
        for kv in t.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let rec = serde_json::from_slice(&v).map_err(|e| StoreError::CorruptRecord {
                tree: tree.name,
                key: key.clone(),
                reason: e.to_string(),
            })?;
            out.push((key, rec));
        }
        Ok(out)
    }

    /// Every (key, record) of `tree`, in key order.
    pub fn all<K: TreeKey + ?Sized, R: DeserializeOwned>(
        &self,
        tree: Tree<K, R>,
    ) -> Result<Vec<(String, R)>> {
        self.scan(tree, "")
    }

    pub fn ctxstat(&self, context: &str, path: &str) -> Result<Option<StatRecord>> {
        self.get(CTXSTAT, &ctxstat_key(context, path))
    }
    /// All records of one context, keyed by path.
    pub fn ctxstats(&self, context: &str) -> Result<Vec<(String, StatRecord)>> {
        let prefix = ctxstat_key(context, "");
        Ok(self
            .scan(CTXSTAT, &prefix)?
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_string(), v))
            .collect())
    }
    pub fn put_ctxstat(&self, context: &str, path: &str, rec: &StatRecord) -> Result<()> {
        self.put(CTXSTAT, &ctxstat_key(context, path), rec)
    }
}

fn ctxstat_key(context: &str, path: &str) -> String {
    format!("{context}\0{path}")
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Spreads retries of processes that started waiting together: delay × [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let mix = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1000;
    d.mul_f64(0.5 + mix as f64 / 1000.0)
}
