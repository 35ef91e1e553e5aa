//! Leases: a build or pull records what it has written or will reuse, so that GC
//! leaves it alone while the process lives. A lease names its pid and an expiry;
//! GC drops a lease whose pid is gone or whose expiry has passed. Dropping the
//! `Lease` removes the record (best effort: a crash leaves it for GC to expire).
//!
//! While this process holds the database open (`Store::hold_meta`), no GC can run, so a
//! lease need not be written yet: it is kept in memory and written when the database is
//! released (`Store::release_meta`), before any long work. A fully cached build thus
//! writes nothing to sled at all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::chain_id::ChainId;
use crate::error::Result;
use crate::layout::unique_name;
use crate::meta;
use crate::records::LeaseRecord;
use crate::{Digest, Store};

/// Leases of this process not written yet: id → (the store's meta dir, record).
static PENDING: Mutex<BTreeMap<String, (PathBuf, LeaseRecord)>> = Mutex::new(BTreeMap::new());

fn pending() -> std::sync::MutexGuard<'static, BTreeMap<String, (PathBuf, LeaseRecord)>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A live lease. Cheap to hold; every `add_*` is one short sled transaction, or a change
/// in memory while the database is held.
pub struct Lease {
    store: Store,
    id: String,
}

impl Lease {
    pub(crate) fn create(store: &Store, ttl: Duration) -> Result<Lease> {
        let id = unique_name("lease-");
        let now = meta::now();
        let rec = LeaseRecord {
            v: meta::RECORD_VERSION,
            pid: std::process::id(),
            created_at: now,
            expires_at: now + ttl.as_secs() as i64,
            digests: Vec::new(),
            snapshots: Vec::new(),
        };
        if meta::is_held() {
            pending().insert(id.clone(), (store.layout().meta_dir(), rec));
        } else {
            meta::write(store, |m| m.put(meta::LEASES, &id, &rec))?;
        }
        Ok(Lease {
            store: store.clone(),
            id,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn add_digest(&self, d: &Digest) -> Result<()> {
        self.update(|r| {
            if !r.digests.contains(d) {
                r.digests.push(d.clone());
            }
        })
    }

    pub fn add_snapshot(&self, c: &ChainId) -> Result<()> {
        self.update(|r| {
            if !r.snapshots.contains(c) {
                r.snapshots.push(c.clone());
            }
        })
    }

    fn update(&self, f: impl FnOnce(&mut LeaseRecord)) -> Result<()> {
        if let Some((_, rec)) = pending().get_mut(&self.id) {
            f(rec);
            return Ok(());
        }
        meta::write_deferred(&self.store, |m| {
            if let Some(mut r) = m.get(meta::LEASES, &self.id)? {
                f(&mut r);
                m.put(meta::LEASES, &self.id, &r)?;
            }
            Ok(())
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if pending().remove(&self.id).is_some() {
            return; // never written
        }
        // Best effort: a lease left behind expires and is dropped by GC.
        let _ = meta::write_deferred(&self.store, |m| m.remove(meta::LEASES, &self.id));
    }
}

/// Write the leases of `store` still held in memory; called before the database is
/// released to other processes (and so to GC).
pub(crate) fn persist_pending(store: &Store) -> Result<()> {
    let dir = store.layout().meta_dir();
    let mine: Vec<(String, LeaseRecord)> = {
        let mut all = pending();
        let ids: Vec<String> = all
            .iter()
            .filter(|(_, (d, _))| *d == dir)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| all.remove(&id).map(|(_, rec)| (id, rec)))
            .collect()
    };
    if mine.is_empty() {
        return Ok(());
    }
    meta::write_deferred(store, |m| {
        for (id, rec) in &mine {
            m.put(meta::LEASES, id, rec)?;
        }
        Ok(())
    })
}

/// Whether a lease still protects its objects at `now`.
pub fn is_live(rec: &LeaseRecord, now: i64) -> bool {
    rec.expires_at > now && pid_alive(rec.pid)
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
