//! The store's one error type. Variants carry the path, digest or reference they
//! are about, and say what to do next where we know it.

use std::path::PathBuf;

use crate::digest::{Digest, DigestError};
use crate::reference::ReferenceError;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Coarse classes callers branch on without parsing messages (containerd's errdefs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    Corrupt,
    Io,
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "digest mismatch writing {path}: expected {expected}, got {actual}; the blob was rejected"
    )]
    DigestMismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch writing {path}: expected {expected} bytes, got {actual}; the blob was rejected")]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} not found in {root}; run `strata pull` or rebuild the image")]
    BlobMissing { digest: Digest, root: PathBuf },
    #[error(transparent)]
    InvalidDigest(#[from] DigestError),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error("no such image: {reference}")]
    ImageNotFound { reference: String },
    #[error(
        "image id prefix {prefix:?} is ambiguous: it matches several images; give more characters"
    )]
    AmbiguousId { prefix: String },
    #[error("{reference} is not tagged; nothing to untag")]
    TagNotFound { reference: String },
    #[error("conflict: unable to delete {id} (must be forced): image is referenced in multiple repositories ({tags})")]
    ImageInUse { id: String, tags: String },
    #[error("conflict: unable to delete {manifest}: it is one platform of the multi-platform image {index}")]
    PartOfIndex { manifest: String, index: String },
    #[error("metadata database {path}: {source}")]
    Meta {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("converting the metadata of an older strata version in {path}: {source}; the root is unchanged")]
    MetaMigration {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("metadata record {key:?} in tree {tree}: {reason}; run `strata system verify`")]
    CorruptRecord {
        tree: &'static str,
        key: String,
        reason: String,
    },
    #[error("blob {digest} is corrupt: {reason}; run `strata system verify`")]
    CorruptBlob { digest: Digest, reason: String },
    #[error("manifest {digest}: {reason}")]
    InvalidManifest { digest: Digest, reason: String },
    #[error("unsafe tar entry {entry:?} in {layer}: {reason}; the layer was not extracted")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: crate::unsafe_entry::UnsafeReason,
    },
    #[error("archive {path}: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    /// `load --platform` of an archive without that platform (docker's wording).
    #[error("requested platform(s) ([{platform}]) not found in archive {path} (it has: {listed})")]
    PlatformNotInArchive {
        platform: String,
        path: PathBuf,
        listed: String,
    },
    #[error("{what} is not implemented yet")]
    NotImplemented { what: &'static str },
    #[error(
        "store root {root} is mode {mode:o} and {snapshots} is mode {snapshots_mode:o}: other \
         users could reach the unpacked layers (setuid binaries, device nodes); run `chmod 700 {root}`"
    )]
    UnsafeRootMode {
        root: PathBuf,
        mode: u32,
        snapshots: PathBuf,
        snapshots_mode: u32,
    },
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        use StoreError::*;
        match self {
            Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Meta { source, .. }
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) =>
            {
                ErrorKind::Busy
            }
            Io { .. } | Meta { .. } | MetaMigration { .. } | NotImplemented { .. } => ErrorKind::Io,
            DigestMismatch { .. }
            | SizeMismatch { .. }
            | InvalidDigest(_)
            | InvalidReference(_)
            | AmbiguousId { .. }
            | InvalidManifest { .. }
            | UnsafeEntry { .. }
            | InvalidArchive { .. }
            | UnsafeRootMode { .. } => ErrorKind::InvalidArgument,
            BlobMissing { .. }
            | ImageNotFound { .. }
            | TagNotFound { .. }
            | PlatformNotInArchive { .. } => ErrorKind::NotFound,
            ImageInUse { .. } | PartOfIndex { .. } => ErrorKind::AlreadyExists,
            CorruptRecord { .. } | CorruptBlob { .. } => ErrorKind::Corrupt,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}
