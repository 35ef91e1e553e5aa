//! The engine's errors. Each variant names the object (reference, path) and keeps the
//! library error it wraps as its source, so the CLI prints the whole chain.

use std::path::PathBuf;

use registry_client::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A flag value the user typed is malformed or unsupported (exit code 2 in the CLI).
    #[error("{0}")]
    Usage(String),
    /// Something buildx does that strata does not do yet (exit code 1).
    #[error("{0}")]
    Unsupported(String),
    #[error("setting up the registry client")]
    Client(#[source] Box<RegistryError>),
    #[error("starting the registry client")]
    Runtime(#[source] Box<RegistryError>),
    #[error("pulling {reference}")]
    Pull {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("copying {from} to {to}")]
    Copy {
        from: String,
        to: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("pushing {reference}")]
    Push {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    /// A `--cache-from` manifest that the registry does not have.
    #[error("not found")]
    CacheNotFound,
    #[error(transparent)]
    CacheFormat(#[from] builder::remote_cache::CacheFormatError),
    /// The layer blob of a `--cache-from` hit could not be downloaded.
    #[error("layer {digest}: {reference}")]
    CacheLayer {
        digest: store::Digest,
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    /// The background task downloading a cache layer died (a panic in the client).
    #[error("layer {digest}: the download task failed")]
    CacheTask {
        digest: store::Digest,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("compressing layer {digest}")]
    Compress {
        digest: store::Digest,
        #[source]
        source: Box<store::StoreError>,
    },
    #[error("exporting cache to {reference}")]
    CacheExport {
        reference: String,
        #[source]
        source: Box<EngineError>,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Build(Box<builder::solve::BuildError>),
    #[error(transparent)]
    Store(Box<store::StoreError>),
    #[error(transparent)]
    Registry(Box<RegistryError>),
}

// The library errors are large; boxed, an `EngineError` stays small on the happy path.
impl From<builder::solve::BuildError> for EngineError {
    fn from(e: builder::solve::BuildError) -> Self {
        EngineError::Build(Box::new(e))
    }
}

impl From<store::StoreError> for EngineError {
    fn from(e: store::StoreError) -> Self {
        EngineError::Store(Box::new(e))
    }
}

impl From<RegistryError> for EngineError {
    fn from(e: RegistryError) -> Self {
        EngineError::Registry(Box::new(e))
    }
}

impl EngineError {
    /// Whether the user typed something wrong (rather than something failing).
    pub fn is_usage(&self) -> bool {
        matches!(self, EngineError::Usage(_))
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;
