//! Leases: a build or pull records what it has written or will reuse, so that GC
//! leaves it alone while the process lives. A lease names its pid and an expiry;
//! GC drops a lease whose pid is gone or whose expiry has passed. Dropping the
//! `Lease` removes the record (best effort: a crash leaves it for GC to expire).

use std::time::Duration;

use crate::error::Result;
use crate::layout::unique_name;
use crate::meta;
use crate::records::LeaseRecord;
use crate::snapshot::ChainId;
use crate::{Digest, Store};

/// A live lease. Cheap to hold; every `add_*` is one short sled transaction.
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
        meta::write_deferred(store, |m| m.put_lease(&id, &rec))?;
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
        meta::write_deferred(&self.store, |m| {
            if let Some(mut r) = m.lease(&self.id)? {
                f(&mut r);
                m.put_lease(&self.id, &r)?;
            }
            Ok(())
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Best effort: a lease left behind expires and is dropped by GC.
        let _ = meta::write_deferred(&self.store, |m| m.remove_lease(&self.id));
    }
}

/// Whether a lease still protects its objects at `now`.
pub fn is_live(rec: &LeaseRecord, now: i64) -> bool {
    rec.expires_at > now && pid_alive(rec.pid)
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
