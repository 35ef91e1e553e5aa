//! Making the database: a new root gets an empty one; a root made by older strata versions,
//! whose metadata is a sled 0.34 database in `ROOT/meta/`, gets its records converted.
//!
//! Either way the database is written to `meta/strata.db.new`, fsynced, closed and renamed
//! to `meta/strata.db`: the rename is the commit, so a process killed on the way leaves the
//! old root as it was and the next open starts over. It runs under the writers' flock, and
//! checks again that no other process made the database while it waited. The sled files go
//! once the rename is done; the records are kept byte for byte (same keys, same JSON).
//!
//! Every tree is a table `"<tree>" (key BLOB PRIMARY KEY, value BLOB)`, compared as bytes
//! like sled's keys, so prefix scans and their order are unchanged.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::gc::SNAPSHOT_SIZES;
use super::schema::*;
use crate::error::{Result, StoreError};

/// Every tree; a new tree needs its name here (and a `user_version` bump with a step that
/// adds its table to existing databases).
const TABLES: [&str; 10] = [
    TAGS.name,
    FOREIGN_INDEX.name,
    MANIFESTS.name,
    LAYERS.name,
    BLOBS.name,
    SNAPSHOTS.name,
    CACHE.name,
    CTXSTAT.name,
    LEASES.name,
    SNAPSHOT_SIZES.name,
];

/// The schema version in `PRAGMA user_version`.
const SCHEMA_VERSION: u32 = 1;

/// Makes `db` (`dir/strata.db`), from the sled database in `dir` when there is one.
/// The caller holds the writers' flock.
pub(super) fn create(dir: &Path, db: &Path) -> Result<()> {
    if db.exists() {
        return Ok(()); // another process made it while we waited for the lock
    }
    let tmp = dir.join("strata.db.new");
    for f in [tmp.clone(), suffixed(&tmp, "-wal"), suffixed(&tmp, "-shm")] {
        match fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io("removing", &f)(e))
            }
            _ => {}
        }
    }
    let sqlite = |source| StoreError::Meta {
        path: tmp.clone(),
        source,
    };
    let mut conn = Connection::open(&tmp).map_err(sqlite)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(sqlite)?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(sqlite)?;
    let tx = conn.transaction().map_err(sqlite)?;
    for name in TABLES {
        create_table(&tx, name).map_err(sqlite)?;
    }
    let has_sled = dir.join("conf").exists() || dir.join("db").exists();
    if has_sled {
        copy_sled(dir, &tx, &tmp)?;
    }
    tx.commit().map_err(sqlite)?;
    conn.close().map_err(|(_, e)| sqlite(e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io("syncing", &tmp))?;
    fs::rename(&tmp, db).map_err(StoreError::io("renaming into place", db))?;
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io("syncing", dir))?;
    if has_sled {
        remove_sled_files(dir);
    }
    Ok(())
}

fn create_table(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{name}\" \
         (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID"
    ))
}

/// Copies every tree of the sled database in `dir` into `conn`, key and value unchanged.
fn copy_sled(dir: &Path, conn: &Connection, tmp: &Path) -> Result<()> {
    let sled_err = |source| StoreError::MetaMigration {
        path: dir.to_path_buf(),
        source,
    };
    let sqlite = |source| StoreError::Meta {
        path: tmp.to_path_buf(),
        source,
    };
    remove_torn_snapshots(dir).map_err(|e| sled_err(e.into()))?;
    let old = sled::Config::new().path(dir).open().map_err(sled_err)?;
    for name in old.tree_names() {
        if &*name == b"__sled__default" {
            continue;
        }
        let name = std::str::from_utf8(&name)
            .ok()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .ok_or_else(|| StoreError::CorruptRecord {
                tree: "(tree names)",
                key: String::from_utf8_lossy(&name).into_owned(),
                reason: "not a tree strata writes".to_string(),
            })?;
        create_table(conn, name).map_err(sqlite)?;
        let mut insert = conn
            .prepare(&format!(
                "INSERT INTO \"{name}\" (key, value) VALUES (?1, ?2)"
            ))
            .map_err(sqlite)?;
        for kv in old.open_tree(name).map_err(sled_err)?.iter() {
            let (k, v) = kv.map_err(sled_err)?;
            insert.execute((&*k, &*v)).map_err(sqlite)?;
        }
    }
    Ok(())
}

/// Deletes `snap.*.generating` files: snapshots a killed process left half written.
///
/// sled 0.34 writes its periodic snapshot to `snap.<lsn>.generating`, fsyncs and renames
/// it to `snap.<lsn>`; but when it opens, it takes the highest-named `snap.*` file, torn
/// `.generating` ones included, and a torn one fails with "Read corrupted data at file
/// offset None" (spacejam/sled#1527). A snapshot is only a shortcut through the log: the
/// previous complete one stays until the rename, and sled replays the log from it, so
/// deleting the torn file loses nothing.
fn remove_torn_snapshots(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Best effort: what sled 0.34 keeps in its directory (`conf`, `db`, `blobs/`, `snap.*`).
fn remove_sled_files(dir: &Path) {
    let _ = fs::remove_file(dir.join("conf"));
    let _ = fs::remove_file(dir.join("db"));
    let _ = fs::remove_dir_all(dir.join("blobs"));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("snap.") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
