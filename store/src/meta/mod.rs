//! All access to the metadata database, `ROOT/meta/strata.db`. Nothing else in the crate
//! names SQLite.
//!
//! Several strata processes share a root (CI runners run jobs side by side on one), so the
//! database is SQLite in WAL mode, and:
//!
//! - a reader ([`read`]) sees one consistent snapshot and never waits, neither for other
//!   readers nor for a writer: `images`, `inspect`, `history`, `df` and cache lookups of
//!   any number of processes run side by side;
//! - a writer ([`write`], [`write_deferred`]) takes an exclusive `flock` on `ROOT/meta/lock`
//!   for its own transaction only (`BEGIN IMMEDIATE` … `COMMIT`), waiting in the kernel's
//!   queue rather than polling; after 1 s it prints once
//!   `waiting for ROOT/meta (held by another strata process)`. The flock, on top of
//!   SQLite's own write lock, lets a writer make part of its work durable and keep every
//!   other writer out until it is done ([`Meta::flush`]: GC commits its deletions, then
//!   hides the files, then lets go);
//! - [`write`] commits with `synchronous=FULL` (the WAL is fsynced before it returns);
//!   [`write_deferred`] with `NORMAL` (durable against a killed process, not against a
//!   lost machine): for leases, which protect only a live process anyway, and for the
//!   records a build writes on the way (blobs, snapshots, cache, context stats), which its
//!   image commit makes durable. The WAL is one sequence of checksummed frames that
//!   recovery replays up to the first bad one, so the fsync of a later commit makes every
//!   earlier transaction durable with it (docs/design.md §3).
//!
//! A process keeps one connection open between transactions, shared by its threads (one
//! transaction at a time); an open connection blocks nobody.
//!
//! A root made by older strata versions holds a sled database in `ROOT/meta/`; the first
//! open converts it, once and atomically (`migrate`).

pub mod gc;
mod migrate;
pub mod schema;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::chunk_crc::ChunkCrc32;
use crate::error::{Result, StoreError};
use crate::records::*;
use crate::Descriptor;
use crate::Store;

pub use schema::*;

/// The database file under `ROOT/meta/`.
pub const DB_FILE: &str = "strata.db";
/// Our writers' flock, under `ROOT/meta/`.
const LOCK_FILE: &str = "lock";
const WAIT_NOTICE: Duration = Duration::from_secs(1);
/// WAL pages between checkpoints (SQLite's default is 1,000). Every process's first
/// transaction reads the WAL through once: 128 pages keep that under half a megabyte.
const WAL_PAGES: i64 = 128;
/// SQLite's own wait, for what the flock does not cover (recovering the WAL after a crash).
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

/// An open connection to one root's database.
pub struct Meta {
    conn: Connection,
    path: PathBuf,
    lock: File,
    /// (device, inode) of the database file this connection opened.
    file_id: (u64, u64),
}

/// The process's connection, kept open between transactions: opening one costs a few
/// file opens and reading the schema, and an open connection blocks nobody. Its lock makes
/// the threads of one process run their transactions one at a time. A connection
/// to another root's database (a process that opens two stores) is replaced.
static CONNECTION: Mutex<Option<Meta>> = Mutex::new(None);

/// What a transaction may do, and how durable its commit is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    /// Fsynced before returning: tags, images.
    Write,
    /// Not fsynced: records that mean nothing after the process is gone (leases), or that
    /// a later fsynced commit makes durable (blob, snapshot, cache, context-stat records).
    WriteDeferred,
}

fn with_meta<T>(store: &Store, mode: Mode, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
    let dir = store.layout().meta_dir();
    let mut connection = CONNECTION.lock().unwrap_or_else(|p| p.into_inner());
    let meta = match connection.take().filter(|m| m.serves(&dir)) {
        Some(meta) => meta,
        None => Meta::open(&dir)?,
    };
    let out = meta.transaction(mode, f);
    *connection = Some(meta);
    out
}

/// Runs `f` in a read transaction: one consistent snapshot, no lock, no wait.
pub fn read<T>(store: &Store, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
    with_meta(store, Mode::Read, f)
}

/// Runs `f` in a write transaction and makes it durable before returning; nothing of it
/// is written when `f` fails.
pub fn write<T>(store: &Store, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
    with_meta(store, Mode::Write, f)
}

/// Like `write`, without the fsync: for records that protect only a live process
/// (leases), and for records that no durable record names yet (a blob's, a snapshot's):
/// the `write` that first names them fsyncs the WAL, and with it every transaction
/// before it. Other processes see them as soon as this returns.
pub fn write_deferred<T>(store: &Store, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
    with_meta(store, Mode::WriteDeferred, f)
}

/// Records committed blobs in one transaction, without an fsync of its own: a blob's record
/// protects nothing by itself (GC sweeps a blob nothing references), and the next fsynced
/// commit (the build's, pull's or load's image, a tag) makes this one durable too, before
/// or with any record that names the blob. The blob's bytes are durable before this runs (ingest).
pub fn record_blobs(store: &Store, blobs: &[Descriptor]) -> Result<()> {
    record_blobs_with(store, blobs.iter().map(|d| (d, None)))
}

/// `record_blobs` of blobs with the chunk CRCs their writer took, if any (`chunk_crc`).
pub fn record_blobs_with<'a>(
    store: &Store,
    blobs: impl IntoIterator<Item = (&'a Descriptor, Option<ChunkCrc32>)>,
) -> Result<()> {
    let mut blobs = blobs.into_iter().peekable();
    if blobs.peek().is_none() {
        return Ok(());
    }
    write_deferred(store, |m| {
        let now = now();
        for (d, chunk_crc32) in blobs {
            record_blob_in(m, d, chunk_crc32, now)?;
        }
        Ok(())
    })
}

/// Records `blob` unless it is recorded; CRCs given for a recorded blob that has none
/// are added to its record.
fn record_blob_in(
    m: &Meta,
    blob: &Descriptor,
    chunk_crc32: Option<ChunkCrc32>,
    now: i64,
) -> Result<()> {
    let rec = match m.get(BLOBS, &blob.digest)? {
        None => BlobRecord {
            chunk_crc32,
            ..BlobRecord::new(blob.size, &blob.media_type, now)
        },
        Some(rec) if rec.chunk_crc32.is_none() && chunk_crc32.is_some() => {
            BlobRecord { chunk_crc32, ..rec }
        }
        Some(_) => return Ok(()),
    };
    m.put(BLOBS, &blob.digest, &rec)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Our writers' exclusive flock on `ROOT/meta/lock`, released when dropped.
struct WriteLock<'a>(&'a File);

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

impl Meta {
    fn open(dir: &Path) -> Result<Meta> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io("opening lock file", &lock_path))?;
        let path = dir.join(DB_FILE);
        if !path.exists() {
            let _locked = lock_exclusive(&lock, dir)?;
            migrate::create(dir, &path)?;
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.busy_timeout(BUSY_TIMEOUT).map(|()| c))
        // Closing the last connection would checkpoint the WAL into the database and
        // delete it (three fsyncs): once per command. SQLite checkpoints on its own as
        // the WAL grows (`WAL_PAGES`), and the WAL is as durable as the database.
        .and_then(|c| {
            c.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                .map(|_| c)
        })
        // The first connection of a process reads the whole WAL to rebuild its index, so
        // keep the WAL short: a checkpoint (one fsync) every WAL_PAGES pages written.
        .and_then(|c| {
            c.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)
                .map(|()| c)
        })
        .map_err(|source| StoreError::Meta {
            path: path.clone(),
            source,
        })?;
        let file_id = file_id(&path).map_err(StoreError::io("reading metadata of", &path))?;
        Ok(Meta {
            conn,
            path,
            lock,
            file_id,
        })
    }

    /// Whether this connection still serves the database of `dir`: the same path, and the
    /// file there is the one it opened (a root removed and made again under a long-lived
    /// process gets a new connection, not the deleted file's).
    fn serves(&self, dir: &Path) -> bool {
        self.path.parent() == Some(dir) && file_id(&self.path).is_ok_and(|id| id == self.file_id)
    }

    fn transaction<T>(&self, mode: Mode, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let _locked = match mode {
            Mode::Read => None,
            Mode::Write | Mode::WriteDeferred => Some(lock_exclusive(&self.lock, dir)?),
        };
        let begin = match mode {
            Mode::Read => "BEGIN DEFERRED",
            Mode::Write => "PRAGMA synchronous = FULL; BEGIN IMMEDIATE",
            Mode::WriteDeferred => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE",
        };
        self.exec(begin)?;
        match f(self) {
            Ok(out) => {
                self.exec("COMMIT")?;
                Ok(out)
            }
            Err(e) => {
                let _ = self.exec("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Commits what this write transaction did so far and goes on in a new one, still
    /// holding the write lock: GC deletes records durably before it hides their files.
    pub fn flush(&self) -> Result<()> {
        self.exec("COMMIT; BEGIN IMMEDIATE")
    }

    fn exec(&self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
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
        let value: Option<Vec<u8>> = self
            .conn
            .prepare_cached(&format!(
                "SELECT value FROM \"{}\" WHERE key = ?1",
                tree.name
            ))
            .and_then(|mut s| s.query_row([key.as_bytes()], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        match value {
            None => Ok(None),
            Some(v) => decode(tree.name, key, &v).map(Some),
        }
    }

    pub fn put<K: TreeKey + ?Sized, R: Serialize>(
        &self,
        tree: Tree<K, R>,
        key: &K,
        rec: &R,
    ) -> Result<()> {
        let v = serde_json::to_vec(rec).expect("records serialize to JSON");
        self.conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO \"{}\" (key, value) VALUES (?1, ?2)",
                tree.name
            ))
            .and_then(|mut s| s.execute((key.as_key().as_bytes(), v)))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Removes `key`; returns whether it existed.
    pub fn remove<K: TreeKey + ?Sized, R>(&self, tree: Tree<K, R>, key: &K) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(&format!("DELETE FROM \"{}\" WHERE key = ?1", tree.name))
            .and_then(|mut s| s.execute([key.as_key().as_bytes()]))
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Every (key, record) in `tree` whose key starts with `prefix`, in key order (bytes).
    pub fn scan<K: TreeKey + ?Sized, R: DeserializeOwned>(
        &self,
        tree: Tree<K, R>,
        prefix: &str,
    ) -> Result<Vec<(String, R)>> {
        let from = prefix.as_bytes().to_vec();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = match prefix_end(prefix.as_bytes()) {
            Some(to) => self.rows(
                &format!(
                    "SELECT key, value FROM \"{}\" WHERE key >= ?1 AND key < ?2 ORDER BY key",
                    tree.name
                ),
                (from, to),
            ),
            None => self.rows(
                &format!(
                    "SELECT key, value FROM \"{}\" WHERE key >= ?1 ORDER BY key",
                    tree.name
                ),
                [from],
            ),
        }?;
        rows.into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8_lossy(&k).into_owned();
                let rec = decode(tree.name, &key, &v)?;
                Ok((key, rec))
            })
            .collect()
    }

    fn rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err(e))
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

fn decode<R: DeserializeOwned>(tree: &'static str, key: &str, v: &[u8]) -> Result<R> {
    serde_json::from_slice(v).map_err(|e| StoreError::CorruptRecord {
        tree,
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// The smallest key greater than every key that starts with `prefix`; `None` when there
/// is none (an empty prefix, or one of only 0xFF bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn ctxstat_key(context: &str, path: &str) -> String {
    format!("{context}\0{path}")
}

/// Takes the writers' flock on `lock` (a file under `dir`), waiting in the kernel's queue;
/// says once on stderr when the wait passes [`WAIT_NOTICE`].
fn lock_exclusive<'a>(lock: &'a File, dir: &Path) -> Result<WriteLock<'a>> {
    use rustix::fs::{flock, FlockOperation};
    let io_err = |e: rustix::io::Errno| StoreError::io("locking", dir.join(LOCK_FILE))(e.into());
    match flock(lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(WriteLock(lock)),
        Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => return Err(io_err(e)),
    }
    let (done, waiting) = mpsc::channel::<()>();
    let shown = dir.display().to_string();
    let notice = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = waiting.recv_timeout(WAIT_NOTICE) {
            eprintln!("waiting for {shown} (held by another strata process)");
        }
    });
    let locked = loop {
        match flock(lock, FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other,
        }
    };
    let _ = done.send(());
    let _ = notice.join();
    locked.map_err(io_err)?;
    Ok(WriteLock(lock))
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"ctx\0"), Some(b"ctx\x01".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
