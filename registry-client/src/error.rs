//! The registry client's error type. Variants name the registry, repository, URL or digest
//! involved and, where we know it, the command that fixes the problem.

use std::path::PathBuf;

use oci_client::errors::OciErrorCode;
use store::Digest;

pub type Result<T> = std::result::Result<T, RegistryError>;

/// A coarse class of [`RegistryError`], for callers that branch without matching text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image, tag or blob does not exist (locally or in the registry).
    NotFound,
    /// Credentials are missing, wrong, or lack the needed access.
    Unauthorized,
    /// The network or the registry failed and retries did not help.
    Unavailable,
    /// The user's input (reference, platform, flag, file) is wrong.
    InvalidArgument,
    /// Content did not match its digest or size, or a manifest is malformed.
    Corrupt,
    /// A local file or the store failed.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: {source}")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: TLS certificate not trusted ({detail}); pass the registry's CA with --cacert FILE, or --insecure-registry {host} to skip verification")]
    Tls {
        method: String,
        url: String,
        host: String,
        detail: String,
    },
    #[error("{method} {url}: still failing after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        method: String,
        url: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "{method} {url}: registry answered {status}: {}",
        describe(code, message)
    )]
    Status {
        method: String,
        url: String,
        status: u16,
        code: Option<OciErrorCode>,
        message: String,
    },
    #[error("unauthorized: authentication required for {registry} ({detail}); run `strata login {registry}`")]
    Unauthorized { registry: String, detail: String },
    #[error("denied: requested access to the resource {repository} on {registry} is denied; check `strata login {registry}` and the repository name")]
    Denied {
        registry: String,
        repository: String,
    },
    #[error("{method} {url}: the registry asked for a streamed body again; it cannot be replayed")]
    BodyResent { method: String, url: String },
    #[error("manifest for {reference} not found: manifest unknown")]
    ManifestUnknown { reference: String },
    #[error("blob {digest} not found in {registry}/{repository}")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: Digest,
    },
    #[error("no matching manifest for {platform} in the manifest list entries of {reference} (available: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("image with reference {reference} was found but its platform ({found}) does not match the specified platform ({wanted})")]
    PlatformMismatch {
        reference: String,
        found: String,
        wanted: String,
    },
    #[error("unsupported manifest media type {media_type:?} for {reference}; strata reads OCI and Docker schema2 manifests")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },
    #[error("invalid manifest for {reference}: {reason}")]
    InvalidManifest { reference: String, reason: String },
    #[error("digest mismatch for {what}: expected {expected}, registry sent {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "size mismatch for {digest}: expected {expected} bytes, registry sent {actual} or more"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("manifest for {reference} is larger than {limit}; strata reads manifests up to that size, as containerd does")]
    ManifestTooLarge { reference: String, limit: String },
    #[error("blob {digest} is {actual} bytes but its descriptor says {expected}: the registry's blob does not match the manifest")]
    BlobShorter {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error(
        "invalid platform {input:?}: want os/arch[/variant], e.g. linux/amd64 or linux/arm/v7"
    )]
    InvalidPlatform { input: String },
    #[error("invalid registry address {input:?}: {reason}")]
    InvalidRegistry { input: String, reason: String },
    #[error("reading CA certificate {path}: {reason}")]
    CaCert { path: PathBuf, reason: String },
    #[error("credentials for {server}: {reason}")]
    Credentials { server: String, reason: String },
    #[error("{action} {path}")]
    Config {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token server {realm}: {reason}")]
    Token { realm: String, reason: String },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn describe(code: &Option<OciErrorCode>, message: &str) -> String {
    match code {
        Some(c) if message.is_empty() => format!("{c:?}"),
        Some(c) => format!("{c:?}: {message}"),
        None if message.is_empty() => "no error message".to_string(),
        None => message.to_string(),
    }
}

impl RegistryError {
    pub fn kind(&self) -> ErrorKind {
        use RegistryError::*;
        match self {
            Transport { .. } | RetriesExhausted { .. } | BodyResent { .. } | Token { .. } => {
                ErrorKind::Unavailable
            }
            Status { status, .. } => match status {
                404 => ErrorKind::NotFound,
                401 | 403 => ErrorKind::Unauthorized,
                400..=499 => ErrorKind::InvalidArgument,
                _ => ErrorKind::Unavailable,
            },
            Tls { .. } | Unauthorized { .. } | Denied { .. } | Credentials { .. } => {
                ErrorKind::Unauthorized
            }
            ManifestUnknown { .. }
            | BlobUnknown { .. }
            | NoMatchingPlatform { .. }
            | PlatformMismatch { .. } => ErrorKind::NotFound,
            UnsupportedMediaType { .. } | InvalidManifest { .. } => ErrorKind::Corrupt,
            DigestMismatch { .. } | SizeMismatch { .. } | BlobShorter { .. } => ErrorKind::Corrupt,
            ManifestTooLarge { .. } => ErrorKind::Corrupt,
            InvalidPlatform { .. } | InvalidRegistry { .. } | CaCert { .. } => {
                ErrorKind::InvalidArgument
            }
            Config { .. } | Runtime(..) => ErrorKind::Io,
            Store(e) => match e.kind() {
                store::ErrorKind::NotFound => ErrorKind::NotFound,
                store::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                store::ErrorKind::Corrupt => ErrorKind::Corrupt,
                _ => ErrorKind::Io,
            },
        }
    }
}

impl From<store::platform::PlatformError> for RegistryError {
    fn from(e: store::platform::PlatformError) -> RegistryError {
        RegistryError::InvalidPlatform { input: e.input }
    }
}
