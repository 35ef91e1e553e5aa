//! A read-only union view of a snapshot chain, without mounting anything, and the one path
//! resolver of the builder: every path a build reads from an image (COPY --from, --chown and
//! USER lookups in /etc/passwd and /etc/group, WORKDIR, COPY destinations, RUN bind mounts)
//! or from the build context (a one-layer union, see `copy::DirTree`) is resolved here.
//!
//! Paths resolve as inside a chroot of the image: symlinks are followed only inside the
//! union, an absolute target starts again at the union's root and `..` stops there (BuildKit's
//! rule for the context and for images alike). Each layer is walked component by component
//! with `openat(O_NOFOLLOW)` from its root, so no host symlink is ever followed and no path
//! that could leave the snapshot is joined.
//!
//! The union is overlayfs's (docs/design.md §1): the topmost layer holding a name provides it; a
//! whiteout (a 0:0 character device) hides the name in every lower layer; a directory merges
//! with the directories of the same name below it until a layer holds a non-directory there
//! (which, like overlayfs, ends the merge) or the directory is opaque
//! (`trusted.overlay.opaque=y`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags};

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
    /// The real path in the snapshot that provides it: its layer's root joined with `path`,
    /// which holds no symlink.
    pub real: PathBuf,
    /// The resolved path in the union, relative (no leading `/`), every symlink before the
    /// last component followed; empty for the root.
    pub path: String,
    pub metadata: fs::Metadata,
}

/// One directory of the union: the directory fds of the layers that make it, top first.
struct Dir {
    name: OsString,
    layers: Vec<(usize, OwnedFd)>,
}

/// What one name of a union directory is: found in layer `layer`; for a directory, the
/// layer directories that merge into it.
struct Entry {
    layer: usize,
    metadata: fs::Metadata,
    dirs: Vec<(usize, OwnedFd)>,
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
        Ok(self.walk(path, false)?.map(|(found, _)| found))
    }

    /// Look `path` up following symlinks (stat semantics).
    pub fn lookup_follow(&self, path: &str) -> io::Result<Option<Found>> {
        Ok(self.walk(path, true)?.map(|(found, _)| found))
    }

    /// `path` with every symlink followed inside the union, relative (no leading `/`);
    /// `None` when it does not exist.
    pub fn resolve_path(&self, path: &str) -> io::Result<Option<String>> {
        Ok(self.lookup_follow(path)?.map(|f| f.path))
    }

    /// Read a whole file of the union, following symlinks (for /etc/passwd and friends).
    pub fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.lookup_follow(path)? {
            Some(f) if f.metadata.is_file() => open_nofollow(&f.real)
                .and_then(|mut file| {
                    let mut buf = Vec::new();
                    io::Read::read_to_end(&mut file, &mut buf).map(|_| buf)
                })
                .map(Some),
            _ => Ok(None),
        }
    }

    pub fn is_dir(&self, path: &str) -> io::Result<bool> {
        Ok(self
            .lookup_follow(path)?
            .is_some_and(|f| f.metadata.is_dir()))
    }

    /// The merged entries of directory `path` (symlinks on the way followed inside the
    /// union), with whiteouts applied. Names map to the real path that provides each entry.
    pub fn read_dir(&self, path: &str) -> io::Result<BTreeMap<OsString, PathBuf>> {
        let mut out = BTreeMap::new();
        let Some((found, Some(dir))) = self.walk(path, true)? else {
            return Ok(out);
        };
        let mut hidden: Vec<OsString> = Vec::new();
        for (layer, fd) in &dir.layers {
            let base = self.layers[*layer].join(&found.path);
            let listing = rustix::fs::Dir::read_from(fd).map_err(io::Error::from)?;
            for entry in listing {
                let entry = entry.map_err(io::Error::from)?;
                let name =
                    OsString::from(std::ffi::OsStr::from_bytes(entry.file_name().to_bytes()));
                if name == "." || name == ".." || out.contains_key(&name) || hidden.contains(&name)
                {
                    continue;
                }
                match stat_at(fd, &name)? {
                    Some(meta) if is_whiteout(&meta) => hidden.push(name),
                    Some(_) => {
                        out.insert(name.clone(), base.join(&name));
                    }
                    None => {}
                }
            }
        }
        Ok(out)
    }

    /// Resolve `path` component by component (see the module doc). Returns what it names
    /// and, for a directory, the layer directories that make it.
    fn walk(&self, path: &str, follow_last: bool) -> io::Result<Option<(Found, Option<Dir>)>> {
        let mut stack = vec![self.root()?];
        let mut pending: Vec<OsString> = components(path).into_iter().rev().collect();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let is_last = pending.is_empty();
            let dir = stack.last().expect("the root is never popped");
            let Some(Entry {
                layer,
                metadata,
                dirs,
            }) = self.entry(dir, &name)?
            else {
                return Ok(None);
            };
            if metadata.file_type().is_symlink() && (!is_last || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links in {path}"
                    )));
                }
                let fd = &dir
                    .layers
                    .iter()
                    .find(|(l, _)| *l == layer)
                    .expect("the entry's layer is one of its directory's")
                    .1;
                let target = rustix::fs::readlinkat(fd, name.as_os_str(), Vec::new())
                    .map_err(io::Error::from)?;
                let target = std::ffi::OsStr::from_bytes(target.as_bytes()).to_os_string();
                if target.as_bytes().starts_with(b"/") {
                    stack.truncate(1);
                }
                pending.extend(components(&target).into_iter().rev());
                continue;
            }
            if is_last {
                let found = self.found(&stack, &name, layer, metadata);
                let dir = found
                    .metadata
                    .is_dir()
                    .then_some(Dir { name, layers: dirs });
                return Ok(Some((found, dir)));
            }
            if !metadata.is_dir() {
                // ENOTDIR: a file where the path needs a directory.
                return Ok(None);
            }
            stack.push(Dir { name, layers: dirs });
        }
        // The path named a directory (the root, or one reached by `..` or a symlink).
        let dir = stack.pop().expect("the root is never popped");
        let Some((layer, fd)) = dir.layers.first() else {
            return Ok(None);
        };
        let metadata = fs::File::from(fd.try_clone()?).metadata()?;
        let found = self.found(&stack, &dir.name, *layer, metadata);
        Ok(Some((found, Some(dir))))
    }

    /// Every layer's root, as the union's root directory.
    fn root(&self) -> io::Result<Dir> {
        let mut layers = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let fd = rustix::fs::open(
                layer,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("opening snapshot {}: {e}", layer.display()),
                )
            })?;
            layers.push((i, fd));
        }
        Ok(Dir {
            name: OsString::new(),
            layers,
        })
    }

    /// `name` in union directory `dir`, as overlayfs looks it up.
    fn entry(&self, dir: &Dir, name: &OsString) -> io::Result<Option<Entry>> {
        let mut top: Option<(usize, fs::Metadata)> = None;
        let mut dirs = Vec::new();
        for (layer, fd) in &dir.layers {
            let Some(meta) = stat_at(fd, name)? else {
                continue;
            };
            if is_whiteout(&meta) {
                break;
            }
            let is_dir = meta.is_dir();
            if top.is_none() {
                top = Some((*layer, meta));
            }
            if !is_dir {
                // A non-directory is the entry (when topmost) and ends any merge.
                break;
            }
            let child = rustix::fs::openat(
                fd,
                name.as_os_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io::Error::from)?;
            let is_opaque = is_opaque_fd(&child);
            dirs.push((*layer, child));
            if is_opaque {
                break;
            }
        }
        Ok(top.map(|(layer, metadata)| Entry {
            layer,
            metadata,
            dirs,
        }))
    }

    /// The `Found` for `name` in the directory at the top of `stack` (`stack[0]` is the
    /// root; an empty `name` with an empty `stack` is the root itself).
    fn found(&self, stack: &[Dir], name: &OsString, layer: usize, metadata: fs::Metadata) -> Found {
        let rel: PathBuf = stack
            .iter()
            .skip(1)
            .map(|d| d.name.as_os_str())
            .chain((!name.is_empty()).then_some(name.as_os_str()))
            .collect();
        let real = if rel.as_os_str().is_empty() {
            self.layers[layer].clone()
        } else {
            self.layers[layer].join(&rel)
        };
        Found {
            real,
            path: rel.to_string_lossy().into_owned(),
            metadata,
        }
    }
}

/// lstat of `name` in directory `dir`, never following it; `None` when absent.
fn stat_at(dir: &OwnedFd, name: &OsString) -> io::Result<Option<fs::Metadata>> {
    match rustix::fs::openat(
        dir,
        name.as_os_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fs::File::from(fd).metadata().map(Some),
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Open a file found by the resolver for reading, refusing a symlink in its place.
pub fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// An overlay whiteout: a 0:0 character device.
pub fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// An overlay opaque directory: `trusted.overlay.opaque=y` (`user.` in a user namespace).
pub fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    match rustix::fs::lgetxattr(dir, store::overlay_xattr::opaque(), &mut buf) {
        Ok(n) => &buf[..n] == b"y",
        Err(_) => false,
    }
}

fn is_opaque_fd(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    match rustix::fs::fgetxattr(dir, store::overlay_xattr::opaque(), &mut buf) {
        Ok(n) => &buf[..n] == b"y",
        Err(_) => false,
    }
}

/// `path` split into its normal components (root, `.` and empty parts dropped; `..` kept).
fn components(path: impl AsRef<Path>) -> Vec<OsString> {
    path.as_ref()
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
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
