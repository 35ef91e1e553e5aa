//! How much of a registry's answer strata reads. A registry is not trusted: a manifest,
//! token or error body is read into memory only up to a bound, and a blob descriptor
//! whose size is beyond any real layer is refused before its download starts.

use bytes::{Bytes, BytesMut};

/// The largest manifest or index read (containerd's `MaxManifestSize`, 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// The largest token or error answer read; a real one is a few kilobytes.
pub const MAX_SMALL_BODY: u64 = 1 << 20;

/// The largest blob a descriptor may announce (1 TiB). Real layers stay far below it;
/// a descriptor beyond it is a hostile or broken manifest, refused before any download.
pub const MAX_BLOB_SIZE: u64 = 1 << 40;

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum BodyError {
    /// The body is larger than the bound (by its Content-Length or by what arrived).
    TooLarge { limit: u64 },
    /// The connection failed mid-body.
    Transport(reqwest::Error),
}

/// Reads a whole response body of at most `limit` bytes. A Content-Length beyond the
/// limit is refused before any of the body is read; a body without one is read only
/// until it passes the limit.
pub async fn read_bounded(
    mut resp: reqwest::Response,
    limit: u64,
) -> std::result::Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `4 MiB` for the error messages.
pub fn show_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 40 && b % (1 << 40) == 0 => format!("{} TiB", b >> 40),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}
