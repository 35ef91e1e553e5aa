//! Why a `RUN --mount` could not be planned or made: the spec, a missing secret or SSH key,
//! a bind source, a cache directory.

use std::io;
use std::path::PathBuf;

use crate::copy::CopyError;
use crate::dockerfile::mount::MountError;
use crate::solve::BuildError;

#[derive(Debug, thiserror::Error)]
pub enum RunMountError {
    /// The spec does not parse (BuildKit's wording).
    #[error(transparent)]
    Spec(#[from] MountError),
    /// `kind` is the mount type: `cache`, `tmpfs`, `bind`.
    #[error("{0} mount needs a target")]
    NoTarget(&'static str),
    #[error("invalid tmpfs size {0:?}")]
    TmpfsSize(String),
    #[error("no SSH key {0:?} forwarded from the client: pass --ssh {0}[=SOCKET]")]
    NoSshKey(String),
    #[error("cache mounts with from= or source= are not supported yet")]
    CacheFrom,
    #[error("invalid cache mount id {0:?}: it may not be empty or contain '/' or '..'")]
    CacheId(String),
    #[error("cache mount {id:?}: {source}")]
    CacheOpen {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("secret mount needs an id or a target")]
    SecretId,
    #[error("secret {0:?} is required but was not provided: pass --secret id={0},src=FILE")]
    SecretMissing(String),
    #[error("reading secret {id:?} from {}: {source}", path.display())]
    SecretRead {
        id: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("secret {id:?}: environment variable {var} is not set")]
    SecretEnv { id: String, var: String },
    #[error("bind source {0:?} is outside of its stage or the build context")]
    BindOutside(String),
    /// Looking the source up failed; `place` is `in the build context` or `from STAGE`.
    #[error("bind source {path:?} {place}: {source}")]
    BindLookup {
        path: String,
        place: String,
        #[source]
        source: io::Error,
    },
    /// Whether the found bind source is a directory could not be read.
    #[error("{0}")]
    BindStat(#[source] io::Error),
    /// `place` is `in the build context` or `in STAGE`.
    #[error("bind source {path:?} not found {place}")]
    BindNotFound { path: String, place: String },
    /// A bind source in the build context that could not be read for the step's key.
    #[error(transparent)]
    BindContent(#[from] CopyError),
    #[error("--mount from={from}: {source}")]
    FromReference {
        from: String,
        #[source]
        source: store::ReferenceError,
    },
    /// The image or stage a bind mounts from could not be made ready.
    #[error(transparent)]
    From(Box<BuildError>),
    /// A throw-away overlay directory of a writable bind could not be made.
    #[error("creating {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The empty lower directory of a bind from an image with no layers.
    #[error("{0}")]
    EmptyLower(#[source] io::Error),
}
