//! Every path under ROOT, the `oci-layout` marker, and atomic file replacement.
//!
//! ```text
//! ROOT/cache-mounts/<id>/    RUN --mount=type=cache directories (see dir_lock)
//! ROOT/downloads/<key>/      ADD <url> downloads (see dir_lock)
//! ROOT/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! ROOT/index.json            from the metadata on each tag change, plus other tools' entries
//! ROOT/blobs/sha256/<hex>    content
//! ROOT/ingest/<pid>-…        blobs being written
//! ROOT/ingest/gc-<pid>-…     blobs a GC run is deleting (trash)
//! ROOT/snapshots/<hex>/fs    unpacked layer (overlay form); <hex>/parent
//! ROOT/snapshots/.tmp-<pid>-…   a snapshot being unpacked or published
//! ROOT/snapshots/build-<pid>-…  a RUN step's upper and work dirs
//! ROOT/snapshots/copy-<pid>-…   a COPY/ADD step's scratch (heredocs)
//! ROOT/snapshots/context-<pid>-…  a build context copied in for one build (stdin tar, git
//!                               checkout, tarball URL, a Dockerfile read from stdin)
//! ROOT/snapshots/gc-<pid>-…     snapshots a GC run is deleting (trash)
//! ROOT/meta/                 the metadata database: strata.db (SQLite, WAL) and the writers' lock
//! ROOT/meta/index.json.sha256   digest of the index.json strata last wrote or checked
//! ```
//!
//! Every temp name is `<prefix><pid>-<time>-<n>` (`unique_name`), with a prefix from
//! `TEMP_PREFIXES`, so GC can tell whose it is and remove it once its owner is gone.
//!
//! ROOT is created 0700 and `snapshots/` 0700: unpacked layers keep their setuid binaries
//! and device nodes, so no other local user may reach them (moby's CVE-2021-41091). A root
//! whose modes let another user traverse into `snapshots/` is refused, see [`Layout::create`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::error::{Result, StoreError};

pub const OCI_LAYOUT_CONTENT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// GC trash in `ingest/` and `snapshots/`.
pub const GC_TRASH_PREFIX: &str = "gc-";
/// A RUN step's scratch in `snapshots/` (upperdir `fs/`, overlay `work/`).
pub const RUN_TEMP_PREFIX: &str = "build-";
/// A COPY/ADD step's scratch in `snapshots/`.
pub const COPY_TEMP_PREFIX: &str = "copy-";
/// A snapshot being unpacked or published, in `snapshots/`.
pub const SNAPSHOT_TEMP_PREFIX: &str = ".tmp-";
/// A build context that exists only for one build (unpacked from stdin or a URL, checked
/// out from git), in `snapshots/`: inside ROOT so that a killed build leaves it to GC.
pub const CONTEXT_TEMP_PREFIX: &str = "context-";
/// Every temp kind GC sweeps from `snapshots/` (and `ingest/`, whose files have no
/// prefix at all).
pub const TEMP_PREFIXES: [&str; 5] = [
    GC_TRASH_PREFIX,
    RUN_TEMP_PREFIX,
    COPY_TEMP_PREFIX,
    SNAPSHOT_TEMP_PREFIX,
    CONTEXT_TEMP_PREFIX,
];

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
    /// The digest of the `index.json` strata last wrote or checked (`oci_index`).
    pub fn index_fingerprint(&self) -> PathBuf {
        self.meta_dir().join("index.json.sha256")
    }
    pub fn oci_layout(&self) -> PathBuf {
        self.root.join("oci-layout")
    }
    /// A new, unique temp path in `snapshots/` with one of `TEMP_PREFIXES` (not created).
    pub fn snapshot_temp(&self, prefix: &str) -> PathBuf {
        debug_assert!(
            TEMP_PREFIXES.contains(&prefix),
            "unknown temp kind {prefix}"
        );
        self.snapshots_dir().join(unique_name(prefix))
    }

    /// Creates the directories and the `oci-layout` marker if missing. Safe to
    /// repeat and to race with another process doing the same.
    ///
    /// A new ROOT and `snapshots/` are made 0700 (their parents as usual). Fails with
    /// [`StoreError::UnsafeRootMode`] when the modes of ROOT and `snapshots/` together let
    /// a user other than the owner traverse into `snapshots/`.
    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.root)?;
        create_private_dir(&self.snapshots_dir())?;
        self.check_private()?;
        for d in [self.blobs_dir(), self.ingest_dir(), self.meta_dir()] {
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

impl Layout {
    /// Refuse a ROOT whose group or other users could reach `snapshots/`: that takes the
    /// search (x) bit for the same class on both directories.
    fn check_private(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| {
            fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o7777)
                .map_err(StoreError::io("reading the mode of", p))
        };
        let snapshots = self.snapshots_dir();
        let (root_mode, snapshots_mode) = (mode(&self.root)?, mode(&snapshots)?);
        if root_mode & snapshots_mode & 0o011 != 0 {
            return Err(StoreError::UnsafeRootMode {
                root: self.root.clone(),
                mode: root_mode,
                snapshots,
                snapshots_mode,
            });
        }
        Ok(())
    }
}

/// `mkdir -m 0700 path` (parents as usual); an existing directory is left as it is.
fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(StoreError::io("creating directory", parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r.map_err(StoreError::io("creating directory", path)),
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
    replace_through_temp(path, bytes, true)
}

/// Replaces `path` with `bytes` for readers of the running system (temp file in the same
/// directory, rename: never a torn file), with no fsync: for a file that only caches what
/// can be worked out again, which a lost machine may take back to an older version or to
/// nothing.
pub fn write_atomic_cached(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_through_temp(path, bytes, false)
}

/// `write_atomic` (`durable`: the file and the rename fsynced) or `write_atomic_cached`.
fn replace_through_temp(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_beside(path);
    let result = (|| {
        create_temp(&tmp, bytes, durable)?;
        fs::rename(&tmp, path).map_err(StoreError::io("renaming into place", path))?;
        if durable {
            fsync_dir(dir)?;
        }
        Ok(())
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
        create_temp(&tmp, bytes, true)?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => fsync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(StoreError::io("creating", path)(e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Creates `tmp` (which must not exist) holding `bytes`, fsynced when `durable`: the first
/// half of the atomic writes above.
fn create_temp(tmp: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(StoreError::io("creating", tmp))?;
    f.write_all(bytes).map_err(StoreError::io("writing", tmp))?;
    if durable {
        f.sync_all().map_err(StoreError::io("fsync", tmp))?;
    }
    Ok(())
}

/// fsync a directory so a rename inside it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
    }

    // See: issue 12, hole 8 (unpacked setuid binaries reachable by any local user).
    #[test]
    fn issue_12_new_root_is_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let layout = Layout::new(&tmp.path().join("parent/root"));
        layout.create().expect("create");
        assert_eq!(mode(layout.root()), 0o700);
        assert_eq!(mode(&layout.snapshots_dir()), 0o700);
        layout.create().expect("a second create is fine");
    }

    #[test]
    fn issue_12_root_others_can_traverse_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(&tmp.path().join("root"));
        layout.create().expect("create");
        // A root left open is fine while snapshots/ stays closed, and the other way round.
        fs::set_permissions(layout.root(), fs::Permissions::from_mode(0o755)).expect("chmod");
        layout.create().expect("snapshots/ still 0700");
        fs::set_permissions(layout.snapshots_dir(), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let err = layout.create().expect_err("both 0755");
        let text = err.to_string();
        assert!(matches!(err, StoreError::UnsafeRootMode { .. }), "{text}");
        assert!(
            text.contains(&format!("chmod 700 {}", layout.root().display())),
            "{text}"
        );
        fs::set_permissions(layout.root(), fs::Permissions::from_mode(0o710)).expect("chmod");
        fs::set_permissions(layout.snapshots_dir(), fs::Permissions::from_mode(0o701))
            .expect("chmod");
        layout.create().expect("group and others never both pass");
    }
}
