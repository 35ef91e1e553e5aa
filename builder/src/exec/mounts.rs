//! The mount sequence of a RUN sandbox, as data.
//!
//! [`plan`] turns the options into a list of [`MountOp`]s (pure, testable without root);
//! [`apply`] runs them through a [`Syscall`]. The order matters:
//!
//! ```text
//! rprivate /                      nothing we mount leaks back to the host
//! tmpfs    RT                     the step's runtime dir: resolv.conf, hosts, and for
//!                                 overlay ROOT=RT/root and the stub layer RT/stubs
//! sethostname, loopback up        (uts ns; net ns unless --network host)
//! overlay  ROOT                   lowerdir=RT/stubs:L_top:…:L_0,upperdir=U,workdir=W, nodev
//!                                 (copy: rbind ROOT ROOT, remounted nodev)
//! proc     ROOT/proc
//! tmpfs    ROOT/dev (nodev)       + host nodes bound onto empty files: null zero full random urandom tty
//! devpts   ROOT/dev/pts           newinstance; ROOT/dev/ptmx -> pts/ptmx
//! tmpfs    ROOT/dev/shm           + fd, stdin, stdout, stderr symlinks into /proc/self/fd
//! sysfs    ROOT/sys               read-only
//! bind     resolv.conf, hosts     read-only copies of the host's files
//! extra mounts                    RUN --mount (bind ro/rw, tmpfs)
//! pivot_root ROOT                 chdir ROOT; pivot_root . .; umount -l .; chdir /
//! ```
//!
//! The mount points under ROOT must exist before the mounts and stay out of the layer;
//! see stubs.rs.
//!
//! Devices: every filesystem a step can write to or that a layer brings is mounted `nodev`
//! (the root, /dev, /dev/shm, the runtime tmpfs, every RUN --mount), so a device node made
//! by `mknod` in a step or shipped in an image cannot be opened. The only openable nodes are
//! docker's default set: the host's null, zero, full, random, urandom and tty, each a bind
//! mount of its own that keeps the host's flags, and the step's own devpts instance (ptmx,
//! pts/N). No cgroup device filter is installed: on cgroup v2 that is a BPF program attached
//! to a cgroup strata would have to create and own per step, and `nodev` already denies
//! every other node.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::stubs::rel;
pub use super::stubs::Stub;
pub use super::sys::DirAttrs;
use super::sys::{MountFlags, Syscall};
use super::MountSpec;

/// The overlay's option string must fit in one page; past this we mount with paths
/// relative to the lowerdirs' common parent (containerd does the same).
const MAX_OVERLAY_DATA: usize = 4000;

/// Kernel interfaces a step may read but not write (docker's read-only paths).
pub const READONLY_PROC_PATHS: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// Kernel interfaces hidden from a step (docker's masked paths): files get an empty
/// read-only file bound over them, directories an empty read-only directory.
pub const MASKED_PATHS: [&str; 7] = [
    "proc/acpi",
    "proc/kcore",
    "proc/keys",
    "proc/sched_debug",
    "proc/scsi",
    "proc/timer_list",
    "sys/firmware",
];

/// Host device nodes bound into the sandbox's /dev.
pub const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// What [`plan`] needs to know.
#[derive(Debug, Clone)]
pub struct RootfsOptions {
    /// The host directory that becomes `/`.
    pub root: PathBuf,
    /// `Some` for the overlay snapshotter; `None` when `root` already holds the tree (copy).
    pub overlay: Option<OverlayOptions>,
    /// An empty host directory; a tmpfs is mounted on it in the step's mount namespace.
    pub runtime_dir: PathBuf,
    /// The overlay stub layer's content (`runtime_dir/stubs`, which the caller lists as
    /// the first lowerdir). Empty for copy.
    pub stubs: Vec<Stub>,
    pub hostname: String,
    /// The step has its own network namespace (isolated or none): bring `lo` up.
    pub has_own_network: bool,
    /// Content bound read-only onto /etc/resolv.conf and /etc/hosts (copies of the host's).
    pub resolv_conf: Vec<u8>,
    pub hosts: Vec<u8>,
    /// Size of /dev/shm in bytes (`--shm-size`); `None` is docker's 64 MiB.
    pub shm_size: Option<u64>,
    pub extra_mounts: Vec<MountSpec>,
    /// Options for the overlays of `MountSpec::Overlay` extra mounts (see [`overlay_tuning`]).
    pub tuning: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OverlayOptions {
    /// Top-first; never empty (the caller substitutes an empty directory for scratch).
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
    /// Extra options (`index=off`, …) the running kernel knows; see [`overlay_tuning`].
    pub tuning: Vec<String>,
}

/// One step of the sandbox's setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    MakePrivate(PathBuf),
    SetHostname(String),
    LoopbackUp,
    Mount {
        source: String,
        target: PathBuf,
        fstype: String,
        flags: MountFlags,
        data: Option<String>,
    },
    /// Bind `source` onto `target`, then, unless `flags` is empty, remount the bind with
    /// exactly `flags` (`nodev`, `ro,nosuid,nodev`, …).
    Bind {
        source: PathBuf,
        target: PathBuf,
        is_recursive: bool,
        flags: MountFlags,
    },
    Mkdir(PathBuf, u32),
    CreateFile(PathBuf, u32),
    Symlink(String, PathBuf),
    Chdir(PathBuf),
    PivotRoot(PathBuf, PathBuf),
    Chroot(PathBuf),
    UnmountDetach(PathBuf),
    WriteFile(PathBuf, Vec<u8>),
    SetAttrs(PathBuf, DirAttrs),
    /// Bind a path onto itself read-only; skipped when this kernel lacks the path.
    ReadonlyPath(PathBuf),
    /// Hide a path under an empty read-only file or directory (the second path: an empty
    /// directory on the runtime tmpfs); skipped when this kernel lacks the path.
    MaskPath(PathBuf, PathBuf),
    /// overlay through the new mount API, one `lowerdir+` per layer: no page limit.
    OverlayFsconfig {
        target: PathBuf,
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
        tuning: Vec<String>,
    },
}

impl fmt::Display for MountOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountOp::MakePrivate(p) => write!(f, "making {} a private mount", p.display()),
            MountOp::SetHostname(h) => write!(f, "setting hostname {h:?}"),
            MountOp::LoopbackUp => write!(f, "bringing up lo"),
            MountOp::Mount {
                fstype,
                target,
                data,
                ..
            } => {
                write!(f, "mounting {fstype} on {}", target.display())?;
                if fstype == "overlay" {
                    if let Some(d) = data {
                        write!(f, " ({d}); if overlay is unsupported here, use the copy snapshotter (--snapshotter copy)")?;
                    }
                }
                Ok(())
            }
            MountOp::Bind { source, target, .. } => {
                write!(
                    f,
                    "bind-mounting {} on {}",
                    source.display(),
                    target.display()
                )
            }
            MountOp::Mkdir(p, _) => write!(f, "creating directory {}", p.display()),
            MountOp::CreateFile(p, _) => write!(f, "creating mount point {}", p.display()),
            MountOp::Symlink(t, l) => write!(f, "creating symlink {} -> {t}", l.display()),
            MountOp::Chdir(p) => write!(f, "changing directory to {}", p.display()),
            MountOp::PivotRoot(n, _) => write!(f, "pivot_root into {}", n.display()),
            MountOp::Chroot(p) => write!(
                f,
                "chroot into {} (--isolation chroot needs CAP_SYS_CHROOT: run strata as root in the container)",
                p.display()
            ),
            MountOp::UnmountDetach(p) => write!(f, "detaching {}", p.display()),
            MountOp::WriteFile(p, _) => write!(f, "writing {}", p.display()),
            MountOp::SetAttrs(p, _) => write!(f, "setting attributes of {}", p.display()),
            MountOp::ReadonlyPath(p) => write!(f, "making {} read-only", p.display()),
            MountOp::MaskPath(p, _) => write!(f, "masking {}", p.display()),
            MountOp::OverlayFsconfig {
                target, lowerdirs, ..
            } => write!(
                f,
                "mounting overlay with {} lowerdirs on {} (fsconfig lowerdir+, Linux 6.8+)",
                lowerdirs.len(),
                target.display()
            ),
        }
    }
}

/// The whole setup sequence, from `rprivate /` to the `chdir /` after pivot_root.
pub fn plan(opts: &RootfsOptions) -> Vec<MountOp> {
    let root = &opts.root;
    let at = |rel: &str| root.join(rel);
    let rt = &opts.runtime_dir;
    let mut ops = vec![
        MountOp::MakePrivate(PathBuf::from("/")),
        mount(
            "tmpfs",
            rt.clone(),
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some("mode=755"),
        ),
        MountOp::WriteFile(rt.join("resolv.conf"), opts.resolv_conf.clone()),
        MountOp::WriteFile(rt.join("hosts"), opts.hosts.clone()),
    ];
    if opts.overlay.is_some() {
        ops.push(MountOp::Mkdir(root.clone(), 0o755));
        ops.push(MountOp::Mkdir(rt.join("stubs"), 0o755));
        for stub in &opts.stubs {
            let path = rt.join("stubs").join(&stub.path);
            match stub.dir {
                Some(attrs) => {
                    ops.push(MountOp::Mkdir(path.clone(), attrs.mode));
                    ops.push(MountOp::SetAttrs(path, attrs));
                }
                None => ops.push(MountOp::CreateFile(path, 0o644)),
            }
        }
    }
    ops.push(MountOp::SetHostname(opts.hostname.clone()));
    if opts.has_own_network {
        ops.push(MountOp::LoopbackUp);
    }
    match &opts.overlay {
        Some(ov) => ops.extend(overlay_ops(ov, root)),
        None => ops.push(MountOp::Bind {
            source: root.clone(),
            target: root.clone(),
            is_recursive: true,
            flags: MountFlags::NODEV,
        }),
    }
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    ops.push(mount("proc", at("proc"), "proc", nosuid_nodev_noexec, None));
    ops.push(mount(
        "tmpfs",
        at("dev"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::STRICTATIME,
        Some("mode=755,size=65536k"),
    ));
    for node in DEV_NODES {
        ops.push(MountOp::CreateFile(at(&format!("dev/{node}")), 0o666));
        ops.push(MountOp::Bind {
            source: Path::new("/dev").join(node),
            target: at(&format!("dev/{node}")),
            is_recursive: false,
            flags: MountFlags::empty(),
        });
    }
    ops.push(MountOp::Mkdir(at("dev/pts"), 0o755));
    ops.push(mount(
        "devpts",
        at("dev/pts"),
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ));
    ops.push(MountOp::Symlink("pts/ptmx".into(), at("dev/ptmx")));
    ops.push(MountOp::Mkdir(at("dev/shm"), 0o1777));
    let shm = match opts.shm_size {
        Some(bytes) => format!("mode=1777,size={bytes}"),
        None => "mode=1777,size=65536k".to_string(),
    };
    ops.push(mount(
        "shm",
        at("dev/shm"),
        "tmpfs",
        nosuid_nodev_noexec,
        Some(&shm),
    ));
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink(target.into(), at(&format!("dev/{link}"))));
    }
    ops.push(mount(
        "sysfs",
        at("sys"),
        "sysfs",
        MountFlags::RDONLY | nosuid_nodev_noexec,
        None,
    ));
    for p in READONLY_PROC_PATHS {
        ops.push(MountOp::ReadonlyPath(at(p)));
    }
    for p in MASKED_PATHS {
        ops.push(MountOp::MaskPath(at(p), rt.join("masked")));
    }
    for (src, dst) in [
        (rt.join("resolv.conf"), "etc/resolv.conf"),
        (rt.join("hosts"), "etc/hosts"),
    ] {
        ops.push(MountOp::Bind {
            source: src,
            target: at(dst),
            is_recursive: false,
            flags: READONLY,
        });
    }
    for (i, m) in opts.extra_mounts.iter().enumerate() {
        ops.extend(extra_mount_ops(i, m, root, rt, &opts.tuning));
    }
    ops.extend([
        MountOp::Chdir(root.clone()),
        MountOp::PivotRoot(".".into(), ".".into()),
        MountOp::UnmountDetach(".".into()),
        MountOp::Chdir("/".into()),
    ]);
    ops
}

fn mount(
    source: &str,
    target: PathBuf,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
) -> MountOp {
    MountOp::Mount {
        source: source.into(),
        target,
        fstype: fstype.into(),
        flags,
        data: data.map(str::to_string),
    }
}

fn extra_mount_ops(
    i: usize,
    m: &MountSpec,
    root: &Path,
    rt: &Path,
    tuning: &[String],
) -> Vec<MountOp> {
    match m {
        MountSpec::Bind {
            source,
            target,
            is_readonly,
        } => vec![MountOp::Bind {
            source: source.clone(),
            target: root.join(rel(target)),
            is_recursive: true,
            flags: bind_flags(*is_readonly),
        }],
        MountSpec::Tmpfs { target, size } => {
            let data = match size {
                Some(bytes) => format!("mode=1777,size={bytes}"),
                None => "mode=1777".to_string(),
            };
            vec![mount(
                "tmpfs",
                root.join(rel(target)),
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                Some(&data),
            )]
        }
        MountSpec::Overlay {
            lowerdirs,
            upperdir,
            workdir,
            subpath,
            target,
            is_readonly,
            ..
        } => {
            let at = rt.join(format!("mount-{i}"));
            let ov = OverlayOptions {
                lowerdirs: lowerdirs.clone(),
                upperdir: upperdir.clone(),
                workdir: workdir.clone(),
                tuning: tuning.to_vec(),
            };
            let mut ops = vec![MountOp::Mkdir(at.clone(), 0o755)];
            ops.extend(overlay_ops(&ov, &at));
            let source = match rel(subpath) {
                "" => at,
                sub => at.join(sub),
            };
            ops.push(MountOp::Bind {
                source,
                target: root.join(rel(target)),
                is_recursive: false,
                flags: bind_flags(*is_readonly),
            });
            ops
        }
        MountSpec::File {
            target,
            data,
            mode,
            uid,
            gid,
        } => {
            let file = rt.join(format!("file-{i}"));
            // /dev is our tmpfs, mounted over the stub layer: a mount point under it (a
            // heredoc script in /dev/pipes) is made there, and never reaches a layer.
            let mut ops = Vec::new();
            if let Some(under_dev) = rel(target).strip_prefix("dev/") {
                let mut dir = root.join("dev");
                let parts: Vec<&str> = under_dev.split('/').collect();
                for part in &parts[..parts.len() - 1] {
                    dir = dir.join(part);
                    ops.push(MountOp::Mkdir(dir.clone(), 0o755));
                }
                ops.push(MountOp::CreateFile(root.join(rel(target)), 0o644));
            }
            ops.extend([
                MountOp::WriteFile(file.clone(), data.clone()),
                MountOp::SetAttrs(
                    file.clone(),
                    DirAttrs {
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        mtime: (0, 0),
                    },
                ),
                MountOp::Bind {
                    source: file,
                    target: root.join(rel(target)),
                    is_recursive: false,
                    flags: READONLY,
                },
            ]);
            ops
        }
    }
}

/// Flags of a read-only bind (resolv.conf, hosts, secrets, `ro` mounts).
const READONLY: MountFlags = MountFlags::RDONLY
    .union(MountFlags::NOSUID)
    .union(MountFlags::NODEV);

/// Flags a RUN --mount bind is remounted with: never a usable device node.
fn bind_flags(is_readonly: bool) -> MountFlags {
    if is_readonly {
        READONLY
    } else {
        MountFlags::NODEV
    }
}

fn overlay_ops(ov: &OverlayOptions, root: &Path) -> Vec<MountOp> {
    let data = |dirs: &[String], upper: &str, work: &str| {
        let mut d = format!(
            "lowerdir={},upperdir={upper},workdir={work}",
            dirs.join(":")
        );
        for t in &ov.tuning {
            d.push(',');
            d.push_str(t);
        }
        d
    };
    let abs: Vec<String> = ov
        .lowerdirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let full = data(
        &abs,
        &ov.upperdir.display().to_string(),
        &ov.workdir.display().to_string(),
    );
    let overlay = |d: String| {
        mount(
            "overlay",
            root.to_path_buf(),
            "overlay",
            MountFlags::NODEV,
            Some(&d),
        )
    };
    if full.len() <= MAX_OVERLAY_DATA {
        return vec![overlay(full)];
    }
    // Too long for one page: chdir to the common parent of every path and use relative ones.
    let all: Vec<&Path> = ov
        .lowerdirs
        .iter()
        .chain([&ov.upperdir, &ov.workdir])
        .map(PathBuf::as_path)
        .collect();
    let base = common_parent(&all);
    let relative = |p: &Path| {
        p.strip_prefix(&base)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| p.display().to_string())
    };
    let lowers: Vec<String> = ov.lowerdirs.iter().map(|p| relative(p)).collect();
    let short = data(&lowers, &relative(&ov.upperdir), &relative(&ov.workdir));
    if short.len() <= MAX_OVERLAY_DATA {
        return vec![MountOp::Chdir(base.clone()), overlay(short)];
    }
    // Still too long (a very deep chain): pass each lowerdir on its own.
    vec![MountOp::OverlayFsconfig {
        target: root.to_path_buf(),
        lowerdirs: ov.lowerdirs.clone(),
        upperdir: ov.upperdir.clone(),
        workdir: ov.workdir.clone(),
        tuning: ov.tuning.clone(),
    }]
}

fn common_parent(paths: &[&Path]) -> PathBuf {
    let mut base = paths
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    while !paths.iter().all(|p| p.starts_with(&base)) {
        if !base.pop() {
            return PathBuf::from("/");
        }
    }
    base
}

/// Overlay options that keep the upperdir a complete, self-contained diff: no metadata-only
/// copy-ups (`metacopy=off`: the upper file would lack its data), no directory renames by
/// redirect xattr (`redirect_dir=off`: the upper dir would lack its children), no inode
/// index (`index=off`: the same lowerdirs are mounted by many builds). Only options the
/// running kernel lists under /sys/module/overlay/parameters are passed, older kernels
/// reject unknown ones.
///
/// Plus `volatile` (Linux 5.10+): without it, tearing down the step's mount namespace
/// syncs the whole upper filesystem, which was most of the cost of a trivial RUN. The
/// upperdir needs no durability: the layer blob written from it is fsync'd by the store,
/// and a snapshot lost in a crash is unpacked again from that blob (docs/design.md §1).
pub fn overlay_tuning() -> Vec<String> {
    let params = Path::new("/sys/module/overlay/parameters");
    // In a user namespace (rootless) overlay keeps its xattrs under `user.` (userxattr,
    // kernel ≥ 5.11), and redirect_dir cannot be named there (it conflicts with userxattr).
    let is_rootless = store::overlay_xattr::is_in_user_namespace();
    let mut out: Vec<String> = ["index", "metacopy", "redirect_dir"]
        .iter()
        .filter(|p| params.join(p).exists() && !(is_rootless && **p == "redirect_dir"))
        .map(|p| format!("{p}=off"))
        .collect();
    if is_rootless {
        out.push("userxattr".to_string());
    }
    if kernel_at_least(5, 10) {
        out.push("volatile".to_string());
    }
    out
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(ma), Some(mi)) => (ma, mi) >= (major, minor),
        _ => false,
    }
}

/// Run `ops` in order; on failure return the index of the failing op and the error.
pub fn apply(sys: &dyn Syscall, ops: &[MountOp]) -> Result<(), (usize, io::Error)> {
    for (i, op) in ops.iter().enumerate() {
        apply_one(sys, op).map_err(|e| (i, e))?;
    }
    Ok(())
}

fn apply_one(sys: &dyn Syscall, op: &MountOp) -> io::Result<()> {
    match op {
        MountOp::MakePrivate(p) => sys.make_rprivate(p),
        MountOp::SetHostname(h) => sys.sethostname(h),
        MountOp::LoopbackUp => sys.loopback_up(),
        MountOp::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys.mount(source, target, fstype, *flags, data.as_deref()),
        MountOp::Bind {
            source,
            target,
            is_recursive,
            flags,
        } => {
            sys.bind(source, target, *is_recursive)?;
            if !flags.is_empty() {
                sys.remount_bind(target, *flags)?;
            }
            Ok(())
        }
        MountOp::Mkdir(p, mode) => sys.mkdir(p, *mode),
        MountOp::CreateFile(p, mode) => sys.create_file(p, *mode),
        MountOp::Symlink(t, l) => sys.symlink(t, l),
        MountOp::Chdir(p) => sys.chdir(p),
        MountOp::PivotRoot(n, o) => sys.pivot_root(n, o),
        MountOp::Chroot(p) => sys.chroot(p),
        MountOp::UnmountDetach(p) => sys.unmount_detach(p),
        MountOp::WriteFile(p, bytes) => sys.write_file(p, bytes),
        MountOp::SetAttrs(p, attrs) => sys.set_attrs(p, attrs),
        MountOp::ReadonlyPath(p) => sys.make_readonly(p),
        MountOp::MaskPath(p, empty_dir) => sys.mask(p, empty_dir),
        MountOp::OverlayFsconfig {
            target,
            lowerdirs,
            upperdir,
            workdir,
            tuning,
        } => sys.mount_overlay_fsconfig(target, lowerdirs, upperdir, workdir, tuning),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::RecordingSyscall;

    fn opts(lowers: Vec<PathBuf>) -> RootfsOptions {
        RootfsOptions {
            root: "/s/rt/root".into(),
            runtime_dir: "/s/rt".into(),
            stubs: vec![
                Stub {
                    path: "etc".into(),
                    dir: Some(DirAttrs {
                        mode: 0o750,
                        uid: 1,
                        gid: 2,
                        mtime: (3, 4),
                    }),
                },
                Stub {
                    path: "etc/hosts".into(),
                    dir: None,
                },
            ],
            overlay: Some(OverlayOptions {
                lowerdirs: lowers,
                upperdir: "/s/upper".into(),
                workdir: "/s/work".into(),
                tuning: vec!["index=off".into()],
            }),
            hostname: "box".into(),
            has_own_network: true,
            resolv_conf: b"nameserver 1.1.1.1\n".to_vec(),
            hosts: Vec::new(),
            shm_size: None,
            extra_mounts: vec![
                MountSpec::Tmpfs {
                    target: "/cache".into(),
                    size: None,
                },
                MountSpec::Overlay {
                    lowerdirs: vec!["/ctx".into()],
                    upperdir: "/s/m-up".into(),
                    workdir: "/s/m-work".into(),
                    subpath: "/sub".into(),
                    is_dir: true,
                    target: "/src".into(),
                    is_readonly: false,
                },
                MountSpec::File {
                    target: "/run/secrets/token".into(),
                    data: b"s3cret".to_vec(),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
            ],
            tuning: vec!["volatile".into()],
        }
    }

    #[test]
    fn mount_sequence_is_complete_and_ordered() {
        let sys = RecordingSyscall::default();
        apply(&sys, &plan(&opts(vec!["/l/b".into(), "/l/a".into()]))).expect("recorder");
        let calls = sys.calls.into_inner();
        let want = [
            "rprivate /",
            "mount tmpfs /s/rt tmpfs nosuid,nodev mode=755",
            "write /s/rt/resolv.conf 19 bytes",
            "write /s/rt/hosts 0 bytes",
            "mkdir /s/rt/root 755",
            "mkdir /s/rt/stubs 755",
            "mkdir /s/rt/stubs/etc 750",
            "attrs /s/rt/stubs/etc 750 1:2 3.4",
            "touch /s/rt/stubs/etc/hosts 644",
            "sethostname box",
            "loopback_up",
            "mount overlay /s/rt/root overlay nodev lowerdir=/l/b:/l/a,upperdir=/s/upper,workdir=/s/work,index=off",
            "mount proc /s/rt/root/proc proc nosuid,nodev,noexec -",
            "mount tmpfs /s/rt/root/dev tmpfs nosuid,nodev,strictatime mode=755,size=65536k",
            "touch /s/rt/root/dev/null 666",
            "bind /dev/null /s/rt/root/dev/null",
            "touch /s/rt/root/dev/zero 666",
            "bind /dev/zero /s/rt/root/dev/zero",
            "touch /s/rt/root/dev/full 666",
            "bind /dev/full /s/rt/root/dev/full",
            "touch /s/rt/root/dev/random 666",
            "bind /dev/random /s/rt/root/dev/random",
            "touch /s/rt/root/dev/urandom 666",
            "bind /dev/urandom /s/rt/root/dev/urandom",
            "touch /s/rt/root/dev/tty 666",
            "bind /dev/tty /s/rt/root/dev/tty",
            "mkdir /s/rt/root/dev/pts 755",
            "mount devpts /s/rt/root/dev/pts devpts nosuid,noexec newinstance,ptmxmode=0666,mode=0620",
            "symlink pts/ptmx /s/rt/root/dev/ptmx",
            "mkdir /s/rt/root/dev/shm 1777",
            "mount shm /s/rt/root/dev/shm tmpfs nosuid,nodev,noexec mode=1777,size=65536k",
            "symlink /proc/self/fd /s/rt/root/dev/fd",
            "symlink /proc/self/fd/0 /s/rt/root/dev/stdin",
            "symlink /proc/self/fd/1 /s/rt/root/dev/stdout",
            "symlink /proc/self/fd/2 /s/rt/root/dev/stderr",
            "mount sysfs /s/rt/root/sys sysfs ro,nosuid,nodev,noexec -",
            "readonly /s/rt/root/proc/bus",
            "readonly /s/rt/root/proc/fs",
            "readonly /s/rt/root/proc/irq",
            "readonly /s/rt/root/proc/sys",
            "readonly /s/rt/root/proc/sysrq-trigger",
            "mask /s/rt/root/proc/acpi",
            "mask /s/rt/root/proc/kcore",
            "mask /s/rt/root/proc/keys",
            "mask /s/rt/root/proc/sched_debug",
            "mask /s/rt/root/proc/scsi",
            "mask /s/rt/root/proc/timer_list",
            "mask /s/rt/root/sys/firmware",
            "bind /s/rt/resolv.conf /s/rt/root/etc/resolv.conf",
            "remount /s/rt/root/etc/resolv.conf ro,nosuid,nodev",
            "bind /s/rt/hosts /s/rt/root/etc/hosts",
            "remount /s/rt/root/etc/hosts ro,nosuid,nodev",
            "mount tmpfs /s/rt/root/cache tmpfs nosuid,nodev mode=1777",
            "mkdir /s/rt/mount-1 755",
            "mount overlay /s/rt/mount-1 overlay nodev lowerdir=/ctx,upperdir=/s/m-up,workdir=/s/m-work,volatile",
            "bind /s/rt/mount-1/sub /s/rt/root/src",
            "remount /s/rt/root/src nodev",
            "write /s/rt/file-2 6 bytes",
            "attrs /s/rt/file-2 400 0:0 0.0",
            "bind /s/rt/file-2 /s/rt/root/run/secrets/token",
            "remount /s/rt/root/run/secrets/token ro,nosuid,nodev",
            "chdir /s/rt/root",
            "pivot_root . .",
            "umount .",
            "chdir /",
        ];
        assert_eq!(calls, want);
    }

    #[test]
    fn host_network_skips_loopback_and_copy_binds_root_on_itself() {
        let mut o = opts(vec![]);
        o.has_own_network = false;
        o.overlay = None;
        o.root = "/s/root".into();
        let ops = plan(&o);
        assert!(!ops.contains(&MountOp::LoopbackUp));
        assert!(
            !ops.iter()
                .any(|op| matches!(op, MountOp::Mkdir(p, _) if p.ends_with("stubs"))),
            "no stub layer without overlay"
        );
        assert_eq!(
            ops[5],
            MountOp::Bind {
                source: "/s/root".into(),
                target: "/s/root".into(),
                is_recursive: true,
                flags: MountFlags::NODEV
            }
        );
    }

    #[test]
    fn long_overlay_options_use_relative_paths() {
        let lowers: Vec<PathBuf> = (0..48)
            .map(|i| PathBuf::from(format!("/var/lib/strata/snapshots/{:064x}/fs", i)))
            .collect();
        let mut o = opts(lowers);
        o.overlay.as_mut().expect("overlay").upperdir = "/var/lib/strata/tmp/u".into();
        o.overlay.as_mut().expect("overlay").workdir = "/var/lib/strata/tmp/w".into();
        let ops = plan(&o);
        let at = ops
            .iter()
            .position(|op| *op == MountOp::Chdir("/var/lib/strata".into()))
            .expect("chdir to the common parent");
        let MountOp::Mount { data: Some(d), .. } = &ops[at + 1] else {
            panic!("expected the overlay mount, got {:?}", ops[at + 1]);
        };
        assert!(
            d.starts_with(&format!("lowerdir=snapshots/{:064x}/fs:", 0)),
            "{d}"
        );
        assert!(d.contains(",upperdir=tmp/u,workdir=tmp/w"), "{d}");
        assert!(d.len() <= MAX_OVERLAY_DATA, "{}", d.len());
    }

    #[test]
    fn very_deep_chains_use_fsconfig() {
        let lowers: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/strata/snapshots/{:064x}/fs", i)))
            .collect();
        let ops = plan(&opts(lowers));
        let sys = RecordingSyscall::default();
        apply(&sys, &ops).expect("recorder");
        let calls = sys.calls.into_inner();
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("overlay_fsconfig /s/rt/root 200 lowerdirs")),
            "{calls:?}"
        );
    }

    #[test]
    fn failing_op_is_reported_by_index() {
        let sys = RecordingSyscall {
            fail_on: Some("mount sysfs".into()),
            ..Default::default()
        };
        let ops = plan(&opts(vec!["/l".into()]));
        let (i, err) = apply(&sys, &ops).expect_err("sysfs mount fails");
        assert_eq!(ops[i].to_string(), "mounting sysfs on /s/rt/root/sys");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }
}
