//! Leases: every writer records what it is about to create or reuse, so that GC
//! leaves it alone while the process lives. A lease names its pid and an expiry;
//! GC drops a lease whose pid is gone or whose expiry has passed. Dropping the
//! last clone of a `Lease` removes the record (best effort: a crash leaves it for GC
//! to expire).
//!
//! The order is containerd's: **lease first, then write**. `BlobWriter::commit` adds
//! the digest to its lease before the blob appears under its name, and a snapshot is
//! leased before it is renamed into `snapshots/`; a caller reusing an existing object
//! leases it before checking that it exists. A GC run holds the metadata lock from
//! reading the leases to hiding what it removes, so an object is either leased before
//! the run (kept) or appears after it (not seen): GC needs no time rule. The lease
//! must outlive the moment a record or tag refers to the object.
//!
//! A lease is written without an fsync (`meta::write_deferred`): other processes, GC
//! included, see it as soon as the call returns, and a lost machine ends the process it
//! protects anyway.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::chain_id::ChainId;
use crate::error::Result;
use crate::layout::unique_name;
use crate::meta;
use crate::records::LeaseRecord;
use crate::{Digest, Store};

/// A live lease. Cheap to hold and to clone (clones share one record); every `add_*` of
/// something new is one short metadata transaction; adding what the lease already covers costs nothing.
#[derive(Clone)]
pub struct Lease {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    id: String,
    /// What the record already names, so a repeat `add_*` skips the transaction.
    covered: Mutex<HashSet<String>>,
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
        meta::write_deferred(store, |m| m.put(meta::LEASES, &id, &rec))?;
        Ok(Lease {
            inner: Arc::new(Inner {
                store: store.clone(),
                id,
                covered: Mutex::new(HashSet::new()),
            }),
        })
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Protects blob `d` (and, for a manifest, what its record names) from GC from now
    /// on. Call it before writing `d` or before checking that `d` exists.
    pub fn add_digest(&self, d: &Digest) -> Result<()> {
        self.update(format!("blob:{d}"), |r| {
            if !r.digests.contains(d) {
                r.digests.push(d.clone());
            }
        })
    }

    /// Protects snapshot `c` from GC from now on; call it before publishing `c` or
    /// before checking that it exists.
    pub fn add_snapshot(&self, c: &ChainId) -> Result<()> {
        self.update(format!("snapshot:{c}"), |r| {
            if !r.snapshots.contains(c) {
                r.snapshots.push(c.clone());
            }
        })
    }

    fn update(&self, what: String, f: impl FnOnce(&mut LeaseRecord)) -> Result<()> {
        let mut covered = self.inner.covered.lock().unwrap_or_else(|p| p.into_inner());
        if covered.contains(&what) {
            return Ok(());
        }
        meta::write_deferred(&self.inner.store, |m| {
            if let Some(mut r) = m.get(meta::LEASES, self.inner.id.as_str())? {
                f(&mut r);
                m.put(meta::LEASES, self.inner.id.as_str(), &r)?;
            }
            Ok(())
        })?;
        covered.insert(what);
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: a lease left behind expires and is dropped by GC.
        let _ = meta::write_deferred(&self.store, |m| m.remove(meta::LEASES, &self.id));
    }
}

/// Whether a lease still protects its objects at `now`.
pub fn is_live(rec: &LeaseRecord, now: i64) -> bool {
    rec.expires_at > now && pid_alive(rec.pid)
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
