//! Every path under ROOT, the `oci-layout` marker, and atomic file replacement.
//!
//! ```text
//! ROOT/cache-mounts/<id>/    RUN --mount=type=cache directories (see dir_lock)
//! ROOT/downloads/<key>/      ADD <url> downloads (see dir_lock)
//! ROOT/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! ROOT/index.json            derived from sled after every tag change
//! ROOT/blobs/sha256/<hex>    content
//! ROOT/ingest/<random>       blobs being written
//! ROOT/snapshots/<hex>/fs    unpacked layer (overlay form); <hex>/parent
//! ROOT/meta/                 sled
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::error::{Result, StoreError};

pub const OCI_LAYOUT_CONTENT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub fn blob(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }
    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// RUN cache mounts, one directory each; nothing else lives there.
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.root.join("cache-mounts")
    }
    /// ADD's URL downloads, one directory each; nothing else lives there.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }
    pub fn index_json(&self) -> PathBuf {
        self.root.join("index.json")
    }
    pub fn oci_layout(&self) -> PathBuf {
        self.root.join("oci-layout")
    }

    /// Creates the directories and the `oci-layout` marker if missing. Safe to
    /// repeat and to race with another process doing the same.
    pub fn create(&self) -> Result<()> {
        for d in [
            self.blobs_dir(),
            self.ingest_dir(),
            self.snapshots_dir(),
            self.meta_dir(),
        ] {
            fs::create_dir_all(&d).map_err(StoreError::io("creating directory", &d))?;
        }
        let marker = self.oci_layout();
        if !marker.exists() {
            write_new_atomic(&marker, OCI_LAYOUT_CONTENT.as_bytes())?;
        }
        let index = self.index_json();
        if !index.exists() {
            // Never replaces: another process may have written tags in the meantime.
            write_new_atomic(
                &index,
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
            )?;
        }
        Ok(())
    }
}

/// A name no other process or thread will pick: pid, time and a counter.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}{}-{t:x}-{n}", std::process::id())
}

/// Where to write a new version of `path` before renaming it into place: a hidden,
/// unique `.NAME.tmp-…` in the same directory, since a rename is atomic only within
/// one filesystem.
pub fn temp_beside(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(unique_name(&format!(".{name}.tmp-")))
}

/// Replaces `path` with `bytes` so that readers see the old or the new file, never
/// a torn one, even across a crash: temp file in the same directory, fsync,
/// rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_beside(path);
    let result = (|| {
        write_durable(&tmp, bytes)?;
        fs::rename(&tmp, path).map_err(StoreError::io("renaming into place", path))?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like `write_atomic` but only if `path` does not exist yet (a hard link, which
/// fails instead of replacing): for files whose first version must not overwrite
/// a newer one written by a concurrent process.
pub fn write_new_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(unique_name(".new.tmp-"));
    let result = (|| {
        write_durable(&tmp, bytes)?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => fsync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(StoreError::io("creating", path)(e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Create `tmp` (it must not exist), write `bytes`, fsync: the first half of both
/// atomic writes above.
fn write_durable(tmp: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(StoreError::io("creating", tmp))?;
    f.write_all(bytes).map_err(StoreError::io("writing", tmp))?;
    f.sync_all().map_err(StoreError::io("fsync", tmp))
}

/// fsync a directory so a rename inside it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}
