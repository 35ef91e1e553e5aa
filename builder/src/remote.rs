//! What a build needs from outside the store: base images that are not in it, and the
//! records of `--cache-from` caches. The builder talks to no registry (it depends on
//! `store` alone); the `engine` crate implements [`Remote`] over its registry client.

use store::platform::Platform;
use store::{Digest, Reference};

use crate::remote_cache::CacheSource;
pub use crate::remote_cache::RemoteError;

/// The registries one build may reach.
/// `Sync`: stages running side by side resolve their bases through one `Remote`.
pub trait Remote: Sync {
    /// Brings `reference` into the store (a pull of its `platform` manifest when it is an
    /// index) and returns its manifest digest. Called for a `FROM` image the store lacks
    /// (or holds for another platform), and for every `FROM` image under `--pull`.
    fn fetch_base(&self, reference: &Reference, platform: &Platform)
        -> Result<Digest, RemoteError>;
    /// The `--cache-from` caches to consult when a step's key is not in the local cache.
    fn cache(&self) -> Option<&dyn CacheSource>;
}

/// A build that reaches no registry: a `FROM` image must already be in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offline;

#[derive(Debug, thiserror::Error)]
#[error("not in the store, and this build reaches no registry")]
pub struct NotInStore;

impl Remote for Offline {
    fn fetch_base(
        &self,
        _reference: &Reference,
        _platform: &Platform,
    ) -> Result<Digest, RemoteError> {
        Err(Box::new(NotInStore))
    }

    fn cache(&self) -> Option<&dyn CacheSource> {
        None
    }
}

/// `error: cause: cause…`, as the CLI prints an error, for a warning that goes on.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
