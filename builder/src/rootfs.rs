//! A read-only union view of a snapshot chain, without mounting anything.
//!
//! The builder needs to look into an image's filesystem between steps: does COPY's
//! destination exist as a directory, what uid does `USER app` name in /etc/passwd, which files
//! does `COPY --from=stage /out` take. Mounting overlayfs for each question costs syscalls
//! and root; instead we resolve paths through the snapshot dirs top-first, honouring the
//! overlay whiteouts (0:0 char devices) and opaque directories our snapshots use (docs/design.md §1).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed while resolving one path before giving up (Linux's MAXSYMLINKS is 40).
const MAX_SYMLINKS: usize = 40;

/// The union of snapshot `fs` dirs, top (newest) first.
#[derive(Debug, Clone, Default)]
pub struct UnionFs {
    layers: Vec<PathBuf>,
}

/// Where a path of the union lives.
#[derive(Debug, Clone)]
pub struct Found {
    /// The real path in the snapshot that provides it.
    pub real: PathBuf,
    pub metadata: fs::Metadata,
}

impl UnionFs {
    pub fn new(layers_top_first: Vec<PathBuf>) -> UnionFs {
        UnionFs {
            layers: layers_top_first,
        }
    }

    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Look `path` up without following a final symlink (lstat semantics); intermediate
    /// symlinks are followed inside the union, never out of it.
    pub fn lookup(&self, path: &str) -> io::Result<Option<Found>> {
        match self.resolve(path, false)? {
            Some(p) => self.lookup_exact(&p),
            None => Ok(None),
        }
    }

    /// Look `path` up following symlinks (stat semantics).
    pub fn lookup_follow(&self, path: &str) -> io::Result<Option<Found>> {
        match self.resolve(path, true)? {
            Some(p) => self.lookup_exact(&p),
            None => Ok(None),
        }
    }

    /// Read a whole file of the union, following symlinks (for /etc/passwd and friends).
    pub fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.lookup_follow(path)? {
            Some(f) if f.metadata.is_file() => fs::read(&f.real).map(Some),
            _ => Ok(None),
        }
    }

    pub fn is_dir(&self, path: &str) -> io::Result<bool> {
        Ok(self
            .lookup_follow(path)?
            .is_some_and(|f| f.metadata.is_dir()))
    }

    /// The merged entries of directory `path` (already resolved, no symlink in it), with
    /// whiteouts applied. Names map to the real path that provides each entry.
    pub fn read_dir(&self, path: &str) -> io::Result<BTreeMap<OsString, PathBuf>> {
        let rel = relative(path);
        let mut out = BTreeMap::new();
        let mut hidden: Vec<OsString> = Vec::new();
        for layer in &self.layers {
            let dir = layer.join(&rel);
            let meta = match fs::symlink_metadata(&dir) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if is_whiteout(&meta) || !meta.is_dir() {
                break;
            }
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if out.contains_key(&name) || hidden.contains(&name) {
                    continue;
                }
                let meta = entry.metadata()?;
                if is_whiteout(&meta) {
                    hidden.push(name);
                } else {
                    out.insert(name, entry.path());
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        Ok(out)
    }

    /// The topmost layer entry for an already-resolved relative path.
    fn lookup_exact(&self, rel: &Path) -> io::Result<Option<Found>> {
        if rel.as_os_str().is_empty() {
            return Ok(self
                .layers
                .first()
                .and_then(|l| fs::metadata(l).ok())
                .map(|metadata| Found {
                    real: self.layers[0].clone(),
                    metadata,
                }));
        }
        for layer in &self.layers {
            // A whiteout or opaque dir on any ancestor in this layer hides lower layers.
            let real = layer.join(rel);
            match fs::symlink_metadata(&real) {
                Ok(meta) if is_whiteout(&meta) => return Ok(None),
                Ok(metadata) => return Ok(Some(Found { real, metadata })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
                Err(e) => return Err(e),
            }
            if self.hides_below(layer, rel) {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Whether some ancestor of `rel` in `layer` is a whiteout, a non-directory, or an opaque
    /// directory: each hides the path in every lower layer.
    fn hides_below(&self, layer: &Path, rel: &Path) -> bool {
        let mut cur = layer.to_path_buf();
        let comps: Vec<_> = rel.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(meta) if is_whiteout(&meta) || !meta.is_dir() => return true,
                Ok(_) if is_opaque(&cur) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Resolve `path` to a relative path with no symlink in it (the final component is followed
    /// only when `follow_last`). `..` never climbs above the root.
    fn resolve(&self, path: &str, follow_last: bool) -> io::Result<Option<PathBuf>> {
        let mut pending: Vec<OsString> = components(path).into_iter().rev().collect();
        let mut resolved = PathBuf::new();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&name);
            let is_last = pending.is_empty();
            let Some(found) = self.lookup_exact(&candidate)? else {
                return Ok(if is_last { Some(candidate) } else { None });
            };
            if found.metadata.file_type().is_symlink() && (!is_last || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links in {path}"
                    )));
                }
                let target = fs::read_link(&found.real)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in components(&target.to_string_lossy()).into_iter().rev() {
                    pending.push(c);
                }
                continue;
            }
            resolved = candidate;
        }
        Ok(Some(resolved))
    }
}

/// An overlay whiteout: a 0:0 character device.
pub fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// An overlay opaque directory: `trusted.overlay.opaque=y`.
pub fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    match rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf) {
        Ok(n) => &buf[..n] == b"y",
        Err(_) => false,
    }
}

/// `path` split into its normal components (root, `.` and empty parts dropped; `..` kept).
fn components(path: &str) -> Vec<OsString> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// `/a/b` → `a/b`.
fn relative(path: &str) -> PathBuf {
    components(path).into_iter().filter(|c| c != "..").collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let p = root.join(name);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mknod 0:0 needs root");
    }

    #[test]
    fn union_lookup_honours_order_whiteouts_and_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let low = layer(tmp.path(), "low");
        let top = layer(tmp.path(), "top");
        fs::create_dir_all(low.join("etc")).expect("mkdir");
        fs::write(low.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("write");
        fs::write(low.join("etc/gone"), "x").expect("write");
        fs::create_dir_all(low.join("real/dir")).expect("mkdir");
        symlink("/real", low.join("link")).expect("symlink");
        fs::create_dir_all(top.join("etc")).expect("mkdir");
        fs::write(top.join("etc/passwd"), "root:x:0:0::/root:/bin/ash\n").expect("write");
        whiteout(&top.join("etc/gone"));

        let u = UnionFs::new(vec![top.clone(), low.clone()]);
        assert_eq!(
            u.read("/etc/passwd").expect("read"),
            Some(b"root:x:0:0::/root:/bin/ash\n".to_vec())
        );
        assert!(
            u.lookup("/etc/gone").expect("lookup").is_none(),
            "whiteout hides the lower file"
        );
        assert!(
            u.is_dir("/link/dir").expect("is_dir"),
            "intermediate symlink followed inside the union"
        );
        assert!(u
            .lookup("/link")
            .expect("lookup")
            .expect("exists")
            .metadata
            .file_type()
            .is_symlink());
        assert!(u.is_dir("/link").expect("is_dir"));
        let names: Vec<_> = u.read_dir("/etc").expect("read_dir").into_keys().collect();
        assert_eq!(names, vec![OsString::from("passwd")]);
        assert!(
            u.lookup("/../../etc/passwd").expect("lookup").is_some(),
            ".. stays at the root"
        );
        assert!(u.lookup("/nope/x").expect("lookup").is_none());
    }
}
