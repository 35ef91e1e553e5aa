//! [`ChainId`]: the name of a layer stack, and so of its snapshot directory
//! (docs/design.md §1). Its own module because records, the metadata schema, snapshots
//! and GC all name it, and none of them should depend on another for it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, DigestError};

/// A layer chain id (OCI): `chainID(L0) = diffID(L0)`,
/// `chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln))`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(pub Digest);

impl ChainId {
    pub fn digest(&self) -> &Digest {
        &self.0
    }
    pub fn hex(&self) -> &str {
        self.0.hex()
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

impl FromStr for ChainId {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<ChainId, DigestError> {
        s.parse().map(ChainId)
    }
}

/// The chain id of every prefix of `diff_ids` (bottom layer first).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<ChainId> {
    let mut out: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => {
                let mut h = Sha256::new();
                h.update(parent.as_str().as_bytes());
                h.update(b" ");
                h.update(d.as_str().as_bytes());
                Digest::from_sha256(h.finalize().into())
            }
        };
        out.push(ChainId(next));
    }
    out
}
