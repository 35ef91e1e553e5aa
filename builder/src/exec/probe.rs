//! What this host lets a RUN use, probed at most once per build, when the first RUN
//! executes: the build picks [`Isolation::Chroot`] when namespaces are refused and
//! [`Snapshotter::Copy`] when overlayfs is.
//!
//! The probe forks a child that tries the real calls in throwaway namespaces and exits;
//! nothing is left behind. That is a fork and a few mounts and their teardown, which a build
//! whose steps are all cached need not pay: it never probes ([`SandboxChoice`]).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::thread::UnshareFlags;

use super::namespaces;
use super::sandbox::{exit_now, reap};
use super::{Isolation, Snapshotter};

/// `--isolation` and `--snapshotter` as the user gave them; what is not given is decided by
/// [`probe`] the first time a RUN asks ([`SandboxChoice::get`]), with a one-line note
/// through `note` when it is not namespaces and overlay.
#[derive(Debug)]
pub struct SandboxChoice {
    isolation: Option<Isolation>,
    snapshotter: Option<Snapshotter>,
    /// A new directory path on the filesystem the upperdirs live on (see [`probe`]).
    scratch: PathBuf,
    /// The store root, named in the copy-snapshotter note.
    root: PathBuf,
    note: fn(&str),
    chosen: OnceLock<(Isolation, Snapshotter)>,
}

impl SandboxChoice {
    /// `isolation`/`snapshotter`: the user's choice, `None` to probe. Chroot with overlay is
    /// the caller's to refuse (a chroot cannot mount).
    pub fn new(
        isolation: Option<Isolation>,
        snapshotter: Option<Snapshotter>,
        scratch: PathBuf,
        root: PathBuf,
        note: fn(&str),
    ) -> Self {
        SandboxChoice {
            isolation,
            snapshotter,
            scratch,
            root,
            note,
            chosen: OnceLock::new(),
        }
    }

    /// The isolation and snapshotter every RUN of the build uses; probes on the first call
    /// only when the user left one of them open.
    pub fn get(&self) -> (Isolation, Snapshotter) {
        *self.chosen.get_or_init(|| self.choose())
    }

    /// Whether [`get`](Self::get) has decided already (it returns at once then).
    pub fn is_chosen(&self) -> bool {
        self.chosen.get().is_some()
    }

    fn choose(&self) -> (Isolation, Snapshotter) {
        let support = OnceLock::new();
        let probe = || *support.get_or_init(|| probe(&self.scratch));
        let isolation = match self.isolation {
            Some(i) => i,
            None if probe().has_namespaces => Isolation::Namespaces,
            None => {
                (self.note)(
                    "namespaces or mounts are refused here (an unprivileged container?): RUN \
                     uses --isolation chroot and the copy snapshotter, shares this network and \
                     has no /proc",
                );
                Isolation::Chroot
            }
        };
        let snapshotter = match (self.snapshotter, isolation) {
            (Some(s), _) => s,
            (None, Isolation::Chroot) => Snapshotter::Copy,
            (None, Isolation::Namespaces) if probe().has_overlay => Snapshotter::Overlay,
            (None, Isolation::Namespaces) => {
                (self.note)(&format!(
                    "overlayfs does not mount on {}'s filesystem: RUN uses the copy snapshotter",
                    self.root.display()
                ));
                Snapshotter::Copy
            }
        };
        (isolation, snapshotter)
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSupport {
    /// A step can get its mount and pid namespaces and mount tmpfs and proc in them.
    pub has_namespaces: bool,
    /// overlayfs mounts with upperdirs on the scratch directory's filesystem.
    pub has_overlay: bool,
}

/// Probe both in one child, with `scratch` a new directory path on the filesystem the
/// upperdirs will live on (created and removed). The child unshares mount and pid
/// namespaces and, as pid 1 of the new pid namespace, mounts a tmpfs on `scratch/t` and
/// /proc (docker's default seccomp profile refuses the unshare; a user namespace inside a
/// container may refuse the proc mount); if that worked, it mounts an overlay with its
/// upper and work directories on `scratch` (overlayfs refuses an upper on overlayfs itself,
/// on some network filesystems, or without CAP_SYS_ADMIN) and its lower directory and mount
/// point in the tmpfs, with the options every step mounts with (userxattr when rootless,
/// and `volatile`: without it the namespace's teardown would sync the whole upper
/// filesystem, the base layer just unpacked included). One fork and three directories on
/// disk: on a busy filesystem each directory operation waits on its journal, and a cold
/// build's first RUN waits on the probe.
pub fn probe(scratch: &Path) -> HostSupport {
    let support = probe_in(scratch);
    let _ = std::fs::remove_dir_all(scratch);
    support
}

/// Exit code of the probe child when namespaces work and overlay does not.
const NO_OVERLAY: i32 = 2;

fn probe_in(scratch: &Path) -> HostSupport {
    let unsupported = HostSupport {
        has_namespaces: false,
        has_overlay: false,
    };
    let (tmp, upper, work) = (
        scratch.join("t"),
        scratch.join("upper"),
        scratch.join("work"),
    );
    if [&tmp, &upper, &work]
        .iter()
        .any(|d| std::fs::create_dir_all(d).is_err())
    {
        return unsupported;
    }
    let (lower, merged) = (tmp.join("lower"), tmp.join("merged"));
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    for option in super::mounts::overlay_tuning() {
        data.push(',');
        data.push_str(&option);
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).ok();
    let (Some(tmp_c), Some(proc_c), Some(lower_c), Some(merged_c), Ok(data)) = (
        c(&tmp),
        c(&tmp.join("proc")),
        c(&lower),
        c(&merged),
        CString::new(data),
    ) else {
        return unsupported;
    };
    // SAFETY: the children make only raw syscalls on prepared C strings, then _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        use rustix::fs::{mkdir, Mode};
        use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags as P};
        if namespaces::unshare(UnshareFlags::NEWNS | UnshareFlags::NEWPID).is_err()
            || mount_change(c"/", P::PRIVATE | P::REC).is_err()
        {
            exit_now(1);
        }
        // SAFETY: as above; the grandchild is pid 1 of the new pid namespace.
        let inner = unsafe { libc::fork() };
        if inner == 0 {
            let dir_mode = Mode::from_raw_mode(0o755);
            let has_namespaces = mount(
                c"tmpfs",
                tmp_c.as_c_str(),
                c"tmpfs",
                MountFlags::empty(),
                None,
            )
            .is_ok()
                && mkdir(proc_c.as_c_str(), dir_mode).is_ok()
                && mount(
                    c"proc",
                    proc_c.as_c_str(),
                    c"proc",
                    MountFlags::empty(),
                    None,
                )
                .is_ok();
            if !has_namespaces {
                exit_now(1);
            }
            let has_overlay = mkdir(lower_c.as_c_str(), dir_mode).is_ok()
                && mkdir(merged_c.as_c_str(), dir_mode).is_ok()
                && mount(
                    c"overlay",
                    merged_c.as_c_str(),
                    c"overlay",
                    MountFlags::empty(),
                    Some(data.as_c_str()),
                )
                .is_ok();
            exit_now(if has_overlay { 0 } else { NO_OVERLAY });
        }
        let status = if inner > 0 { reap(inner) } else { -1 };
        exit_now(if inner > 0 && libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            1
        });
    }
    let status = if pid > 0 { reap(pid) } else { -1 };
    let code = (pid > 0 && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status));
    HostSupport {
        has_namespaces: matches!(code, Some(0) | Some(NO_OVERLAY)),
        has_overlay: code == Some(0),
    }
}
