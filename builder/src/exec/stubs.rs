//! Mount points for the sandbox's mounts (`/proc`, `/dev`, `/sys`, `/etc/hosts`, RUN
//! --mount targets), kept out of the layer:
//!
//! - overlay: [`overlay_stubs`] lists a *stub layer* that the child builds on its private
//!   tmpfs and passes as the topmost lowerdir. The mounts cover the stubs, nothing is
//!   copied up, the upperdir is never touched, nothing needs cleaning. A stub parent
//!   directory (`/etc`) carries the lower's mode, owner and mtime, so that a copy-up of it
//!   looks exactly as it would without the stub.
//! - copy: [`Stubs`] creates the missing ones in the copied tree and removes them after.
//! - chroot (copy without mounts): [`Stubs`] also puts what the mounts would have shown
//!   into its own stubs ([`Stubs::fill`], [`Stubs::make_device`]) and takes it out again.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{
    fchmod, fchown, fstat, futimens, mkdirat, openat, openat2, statat, unlinkat, AtFlags, FileType,
    Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use super::sys::DirAttrs;
use super::MountSpec;

/// One entry of the overlay stub layer; `path` is relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    pub path: PathBuf,
    /// `Some` for a directory (with the attributes it shows), `None` for an empty file.
    pub dir: Option<DirAttrs>,
}

/// The overlay stub layer for `points`: every missing-or-not parent directory with the
/// attributes the lowers (top-first) give it, then the mount point itself. Ordered parents
/// first, without duplicates.
pub fn overlay_stubs(points: &[MountPoint], lowers: &[PathBuf]) -> Vec<Stub> {
    let mut out: Vec<Stub> = Vec::new();
    for point in points {
        let mut here = PathBuf::new();
        let components: Vec<_> = point.path.components().collect();
        for (i, c) in components.iter().enumerate() {
            here.push(c);
            if out.iter().any(|s| s.path == here) {
                continue;
            }
            let is_last = i + 1 == components.len();
            let dir = if is_last && !point.is_dir {
                None
            } else {
                Some(
                    lower_dir_md(lowers, &here).map_or_else(DirAttrs::default, |md| DirAttrs {
                        mode: md.mode() & 0o7777,
                        uid: md.uid(),
                        gid: md.gid(),
                        mtime: (md.mtime(), md.mtime_nsec()),
                    }),
                )
            };
            out.push(Stub {
                path: here.clone(),
                dir,
            });
        }
    }
    out
}

/// A mount point the sandbox needs under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// Relative to the root, e.g. `etc/hosts`.
    pub path: PathBuf,
    pub is_dir: bool,
}

/// The mount points [`plan`] mounts on: /proc, /dev, /sys, /etc/resolv.conf, /etc/hosts and
/// the extra mounts' targets.
pub fn mount_points(extra: &[MountSpec]) -> Vec<MountPoint> {
    let mut out: Vec<MountPoint> = ["proc", "dev", "sys"]
        .iter()
        .map(|p| MountPoint {
            path: p.into(),
            is_dir: true,
        })
        .collect();
    for f in ["etc/resolv.conf", "etc/hosts"] {
        out.push(MountPoint {
            path: f.into(),
            is_dir: false,
        });
    }
    for m in extra {
        let (target, is_dir) = match m {
            MountSpec::Bind { source, target, .. } => (target, source.is_dir()),
            MountSpec::Tmpfs { target, .. } => (target, true),
            MountSpec::Overlay { target, is_dir, .. } => (target, *is_dir),
            MountSpec::File { target, .. } => (target, false),
        };
        out.push(MountPoint {
            path: rel(target).into(),
            is_dir,
        });
    }
    out
}

/// Mount-point stubs created in a copied tree (copy snapshotter) for one run, removed by
/// [`Stubs::remove`] afterwards so that an empty /proc or /etc/hosts never ends up in the
/// layer (BuildKit's stub cleaner does the same). Only missing paths are created; parent
/// directories get their mtime back after removal, so the diff does not see them change.
///
/// The tree comes from image layers and the step may rearrange it (`mv /etc /etc.old; ln -s
/// /host/dir /etc`), so nothing here goes through a path that could leave it: the walk is
/// `openat`/`mkdirat` from the tree's directory fd without following symlinks, a symlink on
/// the way is resolved with `openat2(RESOLVE_IN_ROOT)` (an absolute target is taken inside
/// the tree, as in the step), and removal is `unlinkat` on the fd of the directory the stub
/// was made in, wherever the step moved that directory.
#[derive(Debug, Default)]
pub struct Stubs {
    /// Created entries in creation order.
    created: Vec<Created>,
    /// Directories we created in, with their (atime, mtime) before, to restore.
    parent_times: Vec<(Arc<OwnedFd>, Timestamps)>,
}

impl Stubs {
    /// Create the missing stubs in `dir`. `lowers` (top-first) lend their mode and owner to
    /// created parent directories; with `is_missing_only`, paths that already exist in `dir`
    /// are left alone. A point whose parent leads nowhere inside the tree (a dangling or
    /// non-directory component) gets no stub: its mount then fails as a setup error.
    pub fn create(
        dir: &Path,
        points: &[MountPoint],
        lowers: &[PathBuf],
        is_missing_only: bool,
    ) -> io::Result<Stubs> {
        let root = Arc::new(open_dir(rustix::fs::CWD, dir)?);
        let mut stubs = Stubs::default();
        for point in points {
            stubs.create_point(&root, point, lowers, is_missing_only)?;
        }
        Ok(stubs)
    }

    fn create_point(
        &mut self,
        root: &Arc<OwnedFd>,
        point: &MountPoint,
        lowers: &[PathBuf],
        is_missing_only: bool,
    ) -> io::Result<()> {
        let components: Vec<&OsStr> = point
            .path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let mut parent = Arc::clone(root);
        let mut here = PathBuf::new();
        for (i, name) in components.iter().enumerate() {
            here.push(name);
            let is_last = i + 1 == components.len();
            let existing = match statat(&*parent, *name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
                Err(Errno::NOENT) => None,
                Err(e) => return Err(e.into()),
            };
            match existing {
                Some(_) if is_last && is_missing_only => return Ok(()),
                Some(FileType::Directory) if !is_last => {
                    parent = Arc::new(open_dir(&*parent, *name)?);
                }
                Some(FileType::Symlink) if !is_last => {
                    match openat2(
                        &**root,
                        &here,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                    ) {
                        Ok(fd) => parent = Arc::new(fd),
                        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(_) if !is_last => return Ok(()),
                Some(_) => {}
                None => {
                    self.remember_parent_time(&parent)?;
                    if is_last && !point.is_dir {
                        openat(
                            &*parent,
                            *name,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o644),
                        )?;
                        self.remember(&parent, name, &here);
                    } else {
                        let (mode, owner) = match lower_dir_md(lowers, &here) {
                            Some(md) => (md.mode() & 0o7777, Some((md.uid(), md.gid()))),
                            None => (0o755, None),
                        };
                        mkdirat(&*parent, *name, Mode::from_raw_mode(mode))?;
                        self.remember(&parent, name, &here);
                        let child = open_dir(&*parent, *name)?;
                        // The umask may have cut bits: set the mode exactly.
                        fchmod(&child, Mode::from_raw_mode(mode))?;
                        if let Some((uid, gid)) = owner {
                            fchown(&child, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
                        }
                        parent = Arc::new(child);
                    }
                }
            }
        }
        Ok(())
    }

    fn remember(&mut self, parent: &Arc<OwnedFd>, name: &OsStr, path: &Path) {
        self.created.push(Created {
            parent: Arc::clone(parent),
            name: name.to_os_string(),
            path: path.to_path_buf(),
            placed: Placed::Nothing,
        });
    }

    /// The empty file stub this set created at `path` (relative to the tree), if any.
    fn file_stub(&mut self, path: &Path) -> Option<&mut Created> {
        self.created
            .iter_mut()
            .find(|c| c.path == path && c.placed == Placed::Nothing)
    }

    /// Write `data` into the file stub at `path` (relative to the tree) and give it `mode`
    /// and owner. Returns false when this set made no file stub there (the tree has its
    /// own file: it is left as it is).
    pub fn fill(
        &mut self,
        path: &Path,
        data: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<bool> {
        let Some(stub) = self.file_stub(path) else {
            return Ok(false);
        };
        let fd = openat(
            &*stub.parent,
            &stub.name,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        fchmod(&fd, Mode::from_raw_mode(mode))?;
        std::io::Write::write_all(&mut std::fs::File::from(fd), data)?;
        stub.placed = Placed::Bytes(data.to_vec());
        Ok(true)
    }

    /// Replace the file stub at `path` by a character device `rdev`, mode 0666. Returns
    /// false when this set made no file stub there. On error (mknod refused) the stub is
    /// gone and the error returned.
    pub fn make_device(&mut self, path: &Path, rdev: u64) -> io::Result<bool> {
        let Some(stub) = self.file_stub(path) else {
            return Ok(false);
        };
        unlinkat(&*stub.parent, &stub.name, AtFlags::empty())?;
        stub.placed = Placed::Gone;
        rustix::fs::mknodat(
            &*stub.parent,
            &stub.name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rdev,
        )?;
        stub.placed = Placed::Device(rdev);
        // The umask may have cut bits. The node was just made and nothing else runs in
        // the tree yet, so following the name is safe.
        rustix::fs::chmodat(
            &*stub.parent,
            &stub.name,
            Mode::from_raw_mode(0o666),
            AtFlags::empty(),
        )?;
        Ok(true)
    }

    fn remember_parent_time(&mut self, parent: &Arc<OwnedFd>) -> io::Result<()> {
        if self
            .parent_times
            .iter()
            .any(|(p, _)| Arc::ptr_eq(p, parent))
        {
            return Ok(());
        }
        let st = fstat(&**parent)?;
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: Timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        self.parent_times.push((Arc::clone(parent), times));
        Ok(())
    }

    /// Remove every stub that is still as the sandbox left it (empty, or with the content
    /// or device it put there), newest first, and restore parent mtimes. A directory the
    /// RUN wrote into (e.g. /etc when the image had none) is kept: it is a real change, and
    /// so is anything the step put in a stub's place.
    pub fn remove(self) -> io::Result<()> {
        for Created {
            parent,
            name,
            placed,
            ..
        } in self.created.iter().rev()
        {
            let restore_parent_time = || -> io::Result<()> {
                if let Some((_, times)) = self
                    .parent_times
                    .iter()
                    .find(|(p, _)| Arc::ptr_eq(p, parent))
                {
                    futimens(&**parent, times)?;
                }
                Ok(())
            };
            let st = match statat(&**parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // A device that could not be made: its stub's unlink moved the mtime.
                Err(Errno::NOENT) if *placed == Placed::Gone => {
                    restore_parent_time()?;
                    continue;
                }
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let is_untouched = match (FileType::from_raw_mode(st.st_mode), placed) {
                (FileType::Directory, Placed::Nothing) => true,
                (FileType::RegularFile, Placed::Nothing) => st.st_size == 0,
                (FileType::RegularFile, Placed::Bytes(data)) => {
                    st.st_size as u64 == data.len() as u64 && has_content(parent, name, data)?
                }
                (FileType::CharacterDevice, Placed::Device(rdev)) => st.st_rdev == *rdev,
                _ => false,
            };
            if !is_untouched {
                continue;
            }
            let flags = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            match unlinkat(&**parent, name, flags) {
                Ok(()) => restore_parent_time()?,
                Err(Errno::NOTEMPTY | Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// One stub: the directory it was made in, its name there, its path in the tree.
#[derive(Debug)]
struct Created {
    parent: Arc<OwnedFd>,
    name: OsString,
    path: PathBuf,
    placed: Placed,
}

/// What the sandbox put into a stub itself, undone by [`Stubs::remove`].
#[derive(Debug, PartialEq, Eq)]
enum Placed {
    Nothing,
    /// File content written by [`Stubs::fill`]; removed only while unchanged.
    Bytes(Vec<u8>),
    /// A character device made by [`Stubs::make_device`] with this device number.
    Device(u64),
    /// The stub is gone (a device that could not be made).
    Gone,
}

/// Whether the file `name` in `parent` (not followed if a symlink) holds exactly `data`.
fn has_content(parent: &OwnedFd, name: &OsStr, data: &[u8]) -> io::Result<bool> {
    let fd = match openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut got = Vec::with_capacity(data.len());
    std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut got)?;
    Ok(got == data)
}

/// Open the directory `name` under `dir` for reading, not following a symlink.
fn open_dir<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, name: P) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn lower_dir_md(lowers: &[PathBuf], rel: &Path) -> Option<std::fs::Metadata> {
    lowers
        .iter()
        .find_map(|l| l.join(rel).symlink_metadata().ok())
        .filter(|md| md.is_dir())
}

/// `/a/b` → `a/b` (container paths are joined under the root).
pub(crate) fn rel(container_path: &str) -> &str {
    container_path.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn overlay_stub_layer_mirrors_lower_directories() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lower = tmp.path().join("lower");
        std::fs::create_dir_all(lower.join("etc")).expect("mkdir");
        std::fs::set_permissions(lower.join("etc"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::os::unix::fs::lchown(lower.join("etc"), Some(7), Some(8)).expect("chown");
        let stubs = overlay_stubs(
            &mount_points(&[MountSpec::Tmpfs {
                target: "/var/cache/x".into(),
                size: None,
            }]),
            std::slice::from_ref(&lower),
        );
        type Row = (String, Option<(u32, u32, u32)>);
        let got: Vec<Row> = stubs
            .iter()
            .map(|s| {
                (
                    s.path.display().to_string(),
                    s.dir.map(|d| (d.mode, d.uid, d.gid)),
                )
            })
            .collect();
        let dir = Some((0o755, 0, 0));
        let want: Vec<Row> = vec![
            ("proc".into(), dir),
            ("dev".into(), dir),
            ("sys".into(), dir),
            ("etc".into(), Some((0o750, 7, 8))),
            ("etc/resolv.conf".into(), None),
            ("etc/hosts".into(), None),
            ("var".into(), dir),
            ("var/cache".into(), dir),
            ("var/cache/x".into(), dir),
        ];
        assert_eq!(got, want);
        let md = lower.join("etc").metadata().expect("etc");
        let etc = stubs
            .iter()
            .find(|s| s.path == Path::new("etc"))
            .expect("etc stub");
        assert_eq!(
            etc.dir.expect("dir").mtime,
            (md.mtime(), md.mtime_nsec()),
            "a copy-up of the stub dir must keep the lower's mtime"
        );
    }

    #[test]
    fn stubs_are_created_and_removed_without_trace() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lower = tmp.path().join("lower");
        let upper = tmp.path().join("upper");
        std::fs::create_dir_all(lower.join("etc")).expect("mkdir");
        std::fs::set_permissions(lower.join("etc"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::fs::create_dir(&upper).expect("mkdir");
        let points = mount_points(&[]);
        let stubs = Stubs::create(&upper, &points, &[lower], false).expect("stubs");
        assert!(upper.join("etc/hosts").is_file());
        assert!(upper.join("proc").is_dir());
        let md = upper.join("etc").metadata().expect("etc");
        assert_eq!(md.mode() & 0o7777, 0o750, "parent takes the lower's mode");
        stubs.remove().expect("remove");
        let left: Vec<_> = std::fs::read_dir(&upper).expect("read").collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn stubs_keep_directories_the_run_wrote_into() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let stubs = Stubs::create(tmp.path(), &mount_points(&[]), &[], true).expect("stubs");
        std::fs::write(tmp.path().join("etc/motd"), "hi").expect("write");
        stubs.remove().expect("remove");
        let mut left: Vec<_> = walkdir::WalkDir::new(tmp.path())
            .min_depth(1)
            .into_iter()
            .map(|e| {
                e.expect("walk")
                    .path()
                    .strip_prefix(tmp.path())
                    .expect("prefix")
                    .display()
                    .to_string()
            })
            .collect();
        left.sort();
        assert_eq!(left, ["etc", "etc/motd"]);
    }
}
