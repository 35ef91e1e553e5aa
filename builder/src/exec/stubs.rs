//! Mount points for the sandbox's mounts (`/proc`, `/dev`, `/sys`, `/etc/hosts`, RUN
//! --mount targets), kept out of the layer:
//!
//! - overlay: [`overlay_stubs`] lists a *stub layer* that the child builds on its private
//!   tmpfs and passes as the topmost lowerdir. The mounts cover the stubs, nothing is
//!   copied up, the upperdir is never touched, nothing needs cleaning. A stub parent
//!   directory (`/etc`) carries the lower's mode, owner and mtime, so that a copy-up of it
//!   looks exactly as it would without the stub.
//! - copy: [`Stubs`] creates the missing ones in the copied tree and removes them after.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::mounts::rel;
use super::MountSpec;

/// One entry of the overlay stub layer; `path` is relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    pub path: PathBuf,
    /// `Some` for a directory (with the attributes it shows), `None` for an empty file.
    pub dir: Option<DirAttrs>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirAttrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
}

impl Default for DirAttrs {
    fn default() -> Self {
        DirAttrs {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
        }
    }
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
#[derive(Debug, Default)]
pub struct Stubs {
    /// Created paths in creation order, with the parent's (atime, mtime) to restore.
    created: Vec<PathBuf>,
    parent_times: Vec<(PathBuf, libc::timespec, libc::timespec)>,
}

impl Stubs {
    /// Create the missing stubs in `dir`. `lowers` (top-first) lend their mode and owner to
    /// created parent directories; with `is_missing_only`, paths that already exist in `dir`
    /// are left alone.
    pub fn create(
        dir: &Path,
        points: &[MountPoint],
        lowers: &[PathBuf],
        is_missing_only: bool,
    ) -> io::Result<Stubs> {
        let mut stubs = Stubs::default();
        for point in points {
            if is_missing_only && dir.join(&point.path).symlink_metadata().is_ok() {
                continue;
            }
            let mut here = PathBuf::new();
            let components: Vec<_> = point.path.components().collect();
            for (i, c) in components.iter().enumerate() {
                let parent = dir.join(&here);
                here.push(c);
                let full = dir.join(&here);
                if full.symlink_metadata().is_ok() {
                    continue;
                }
                stubs.remember_parent_time(&parent);
                let is_last = i + 1 == components.len();
                if is_last && !point.is_dir {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o644)
                        .open(&full)?;
                } else {
                    let (mode, owner) = match lower_dir_md(lowers, &here) {
                        Some(md) => (md.mode() & 0o7777, Some((md.uid(), md.gid()))),
                        None => (0o755, None),
                    };
                    std::fs::DirBuilder::new().mode(mode).create(&full)?;
                    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))?;
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::lchown(&full, Some(uid), Some(gid))?;
                    }
                }
                stubs.created.push(full);
            }
        }
        Ok(stubs)
    }

    fn remember_parent_time(&mut self, parent: &Path) {
        if self.parent_times.iter().any(|(p, _, _)| p == parent) {
            return;
        }
        if let Ok(md) = parent.symlink_metadata() {
            let ts = |s: i64, ns: i64| libc::timespec {
                tv_sec: s as libc::time_t,
                tv_nsec: ns as _,
            };
            self.parent_times.push((
                parent.to_path_buf(),
                ts(md.atime(), md.atime_nsec()),
                ts(md.mtime(), md.mtime_nsec()),
            ));
        }
    }

    /// Remove every stub that is still empty, newest first, and restore parent mtimes.
    /// A directory the RUN wrote into (e.g. /etc when the image had none) is kept: it is a
    /// real change.
    pub fn remove(self) -> io::Result<()> {
        for path in self.created.iter().rev() {
            let md = match path.symlink_metadata() {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let res = if md.is_dir() {
                std::fs::remove_dir(path)
            } else if md.is_file() && md.len() == 0 {
                std::fs::remove_file(path)
            } else {
                continue;
            };
            match res {
                Ok(()) => {
                    let parent = path.parent().unwrap_or(Path::new("/"));
                    if let Some((_, atime, mtime)) =
                        self.parent_times.iter().find(|(p, _, _)| p == parent)
                    {
                        set_times(parent, *atime, *mtime)?;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub(crate) fn set_times(
    path: &Path,
    atime: libc::timespec,
    mtime: libc::timespec,
) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let times = [atime, mtime];
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn lower_dir_md(lowers: &[PathBuf], rel: &Path) -> Option<std::fs::Metadata> {
    lowers
        .iter()
        .find_map(|l| l.join(rel).symlink_metadata().ok())
        .filter(|md| md.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

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
