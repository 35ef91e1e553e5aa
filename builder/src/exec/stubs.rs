//! Mount points for the sandbox's mounts (`/proc`, `/dev`, `/sys`, `/etc/hosts`, RUN
//! --mount targets), kept out of the layer:
//!
//! - overlay: [`overlay_stubs`] lists a *stub layer* that the child builds on its private
//!   tmpfs and passes as the topmost lowerdir. The mounts cover the stubs, nothing is
//!   copied up, the upperdir is never touched, nothing needs cleaning. A stub parent
//!   directory (`/etc`) carries the lower's mode, owner and mtime, so that a copy-up of it
//!   looks exactly as it would without the stub.
//! - copy: [`Stubs`] creates the missing ones in the copied tree and removes them after.

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
    /// Created entries in creation order: the directory they were made in and their name.
    created: Vec<(Arc<OwnedFd>, OsString)>,
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
                        self.created
                            .push((Arc::clone(&parent), name.to_os_string()));
                    } else {
                        let (mode, owner) = match lower_dir_md(lowers, &here) {
                            Some(md) => (md.mode() & 0o7777, Some((md.uid(), md.gid()))),
                            None => (0o755, None),
                        };
                        mkdirat(&*parent, *name, Mode::from_raw_mode(mode))?;
                        self.created
                            .push((Arc::clone(&parent), name.to_os_string()));
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

    /// Remove every stub that is still empty, newest first, and restore parent mtimes.
    /// A directory the RUN wrote into (e.g. /etc when the image had none) is kept: it is a
    /// real change, and so is anything the step put in a stub's place.
    pub fn remove(self) -> io::Result<()> {
        for (parent, name) in self.created.iter().rev() {
            let st = match statat(&**parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let flags = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => AtFlags::REMOVEDIR,
                FileType::RegularFile if st.st_size == 0 => AtFlags::empty(),
                _ => continue,
            };
            match unlinkat(&**parent, name, flags) {
                Ok(()) => {
                    if let Some((_, times)) = self
                        .parent_times
                        .iter()
                        .find(|(p, _)| Arc::ptr_eq(p, parent))
                    {
                        futimens(&**parent, times)?;
                    }
                }
                Err(Errno::NOTEMPTY | Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
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
