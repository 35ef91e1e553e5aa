//! [`Isolation::Chroot`](super::Isolation::Chroot): a step run by chroot in a copied tree,
//! for where namespaces and mounts are refused (an unprivileged container).
//!
//! Nothing can be mounted, so what the namespaced sandbox mounts is put into the tree as
//! stubs (stubs.rs) and taken out again before the diff, so the layer is the one the
//! namespaced sandbox gives:
//!
//! ```text
//! /etc/resolv.conf, /etc/hosts   the host's, written into the stub (when the image has none)
//! /dev/{null,zero,full,random,urandom,tty}   mknod with the host's device numbers
//! /proc, /sys                    empty directories (no proc or sysfs without a mount)
//! RUN --mount files              heredoc scripts and secrets, written like resolv.conf
//! ```
//!
//! Then child B does `chroot ROOT; chdir /` instead of the mount sequence (mounts.rs).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::mounts::{MountOp, DEV_NODES};
use super::stubs::{self, MountPoint, Stubs};
use super::{ExecError, MountSpec, Network, Result, RunSpec, Snapshotter};

/// Refuse what a step without namespaces and mounts cannot have.
pub(super) fn check(spec: &RunSpec) -> Result<()> {
    let refuse = |reason: String| Err(ExecError::InvalidSpec { reason });
    if spec.snapshotter != Snapshotter::Copy {
        return refuse(
            "--isolation chroot runs on the copy snapshotter (--snapshotter copy)".into(),
        );
    }
    if spec.network == Network::None {
        return refuse(
            "--network none needs a network namespace, which --isolation chroot does not make"
                .into(),
        );
    }
    if spec.runtime.shm_size.is_some() {
        return refuse(
            "--shm-size sizes the /dev/shm tmpfs, which --isolation chroot cannot mount".into(),
        );
    }
    for m in &spec.extra_mounts {
        let kind = match m {
            MountSpec::File { .. } => continue,
            MountSpec::Bind { .. } | MountSpec::Overlay { .. } => "bind and cache",
            MountSpec::Tmpfs { .. } => "tmpfs",
        };
        return refuse(format!(
            "RUN --mount ({kind}) needs a mount namespace, which --isolation chroot does not \
             make; build where strata can create namespaces"
        ));
    }
    Ok(())
}

/// Put the step's stubs into `root` (see the module doc). [`Stubs::remove`] takes them out.
pub(super) fn prepare(
    root: &Path,
    spec: &RunSpec,
    resolv_conf: &[u8],
    hosts: &[u8],
) -> Result<Stubs> {
    let io_err = |op: &'static str, path: PathBuf| move |source| ExecError::Io { op, path, source };
    let mut points = stubs::mount_points(&spec.extra_mounts);
    points.extend(DEV_NODES.iter().map(|node| MountPoint {
        path: Path::new("dev").join(node),
        is_dir: false,
    }));
    let mut stubs = Stubs::create(root, &points, &[], true)
        .map_err(io_err("creating mount points in", root.to_path_buf()))?;
    for (path, data) in [("etc/resolv.conf", resolv_conf), ("etc/hosts", hosts)] {
        stubs
            .fill(Path::new(path), data, 0o644, 0, 0)
            .map_err(io_err("writing", root.join(path)))?;
    }
    for m in &spec.extra_mounts {
        let MountSpec::File {
            target,
            data,
            mode,
            uid,
            gid,
        } = m
        else {
            continue;
        };
        let path = Path::new(stubs::rel(target));
        if !stubs
            .fill(path, data, *mode, *uid, *gid)
            .map_err(io_err("writing", root.join(path)))?
        {
            return Err(ExecError::InvalidSpec {
                reason: format!(
                    "RUN --mount target {target} exists in the image; under --isolation chroot \
                     a file mount needs a path the image does not have"
                ),
            });
        }
    }
    for node in DEV_NODES {
        let host = Path::new("/dev").join(node);
        let Ok(md) = host.metadata() else {
            continue;
        };
        let path = Path::new("dev").join(node);
        stubs
            .make_device(&path, md.rdev())
            .map_err(|source| ExecError::Setup {
                step: format!("making /dev/{node} in the chroot (mknod needs CAP_MKNOD)"),
                source,
            })?;
    }
    Ok(stubs)
}

/// Child B's setup: enter the tree.
pub(super) fn plan(root: &Path) -> Vec<MountOp> {
    vec![
        MountOp::Chroot(root.to_path_buf()),
        MountOp::Chdir("/".into()),
    ]
}
