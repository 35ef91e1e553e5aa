//! RUN sandbox: namespaces, overlay mounts, pivot_root, exec (docs/design.md §5).
//!
//! One call, [`run_step`], runs one RUN for real as root and leaves its changes in
//! `upperdir` in overlay form (whiteouts = 0:0 char devices, opaque dirs =
//! `trusted.overlay.opaque=y`), whichever snapshotter ran it. The caller then writes the
//! layer with [`crate::differ::write_layer`] and renames the upperdir into the store as
//! the new snapshot.
//!
//! ```text
//! caller ── fork ──> child A: unshare(mnt,pid,ipc,uts[,net]) ── fork ──> B (pid 1)
//!   │                   waits for B, reports its wait status       mounts (mounts.rs),
//!   ├── isolated network: once A has unshared, start slirp4netns   waits for the network
//!   │   on A's netns (network.rs), then tell B to go               before execve
//!   │                                                              pivot_root, user, cwd,
//!   └── reads stdout+stderr (one pipe), streams lines, keeps the tail      execve argv
//! ```
//!
//! Under [`Isolation::Chroot`] (no namespaces or mounts allowed, chroot.rs) A unshares
//! nothing, B leads its own process group, chroots into the copied tree and A kills the
//! group once B exits; there is no slirp4netns. probe.rs tells a build which of the two
//! isolations and snapshotters this host allows.
//!
//! Nothing here touches the store or its database; the caller owns every directory it passes in.

pub mod binfmt;
pub mod binfmt_install;
mod chroot;
mod copy_snapshotter;
pub mod mounts;
pub mod namespaces;
pub mod network;
mod output;
mod pipe;
pub mod probe;
pub mod runtime_flags;
mod sandbox;
pub mod seccomp;
#[cfg(test)]
mod seccomp_profile;
pub mod stop;
pub mod stubs;
pub mod sys;
pub mod user;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use copy_snapshotter::{diff_tree, materialize};
pub use output::{clip_note, LOG_LIMIT_BYTES, OUTPUT_TAIL_BYTES};
pub use runtime_flags::RuntimeOptions;
pub use stop::Stopper;

/// The capabilities a step keeps, docker's default set: CHOWN, DAC_OVERRIDE, FOWNER,
/// FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
/// AUDIT_WRITE, SETFCAP (`CapEff: 00000000a80425fb` in a docker build). No SYS_ADMIN:
/// a RUN cannot mount, like under docker without `--security=insecure`.
pub const DEFAULT_CAPABILITIES: u64 = 0xa804_25fb;

/// PATH given to the step when its env has none (BuildKit's default for Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything one RUN needs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Parent snapshot directories, top-first. Empty means `FROM scratch`.
    pub lowerdirs: Vec<PathBuf>,
    /// An empty directory that receives the step's changes (overlay form). Must exist and
    /// be on the same filesystem as `workdir_overlay`.
    pub upperdir: PathBuf,
    /// An empty scratch directory on the upperdir's filesystem. run_step creates in it
    /// `work/` (overlay's workdir), `rt/` (mount point of the step's private tmpfs, which
    /// holds the root mount point, the stub layer and resolv.conf/hosts) and, for the copy
    /// snapshotter, `root/` (removed again). The caller removes the scratch directory
    /// afterwards: overlay leaves mode-0 directories in `work/`.
    pub workdir_overlay: PathBuf,
    /// `["/bin/sh", "-c", "…"]` for the shell form. `argv[0]` without a `/` is looked up
    /// in the step's PATH inside the root.
    pub argv: Vec<String>,
    /// `KEY=value` entries. PATH defaults to [`DEFAULT_PATH`] and HOME to the user's home
    /// directory from the image's /etc/passwd when absent.
    pub env: Vec<String>,
    /// Working directory inside the root; created (as root, 0755) when missing, like docker.
    pub cwd: String,
    /// `""`, `name`, `uid`, `name:group` or `uid:gid`, resolved in the root's /etc/passwd
    /// and /etc/group (see [`user::resolve`]).
    pub user: String,
    pub network: Network,
    pub security: Security,
    pub hostname: String,
    pub snapshotter: Snapshotter,
    pub isolation: Isolation,
    /// RUN --mount: mounted after the standard mounts, in order.
    pub extra_mounts: Vec<MountSpec>,
    /// `--add-host`, `--shm-size`, `--ulimit` (see runtime_flags.rs).
    pub runtime: RuntimeOptions,
    /// Kills the step when it fires (another stage of the build failed); the step then
    /// ends with an error.
    pub stop: Option<Stopper>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace whose traffic leaves through slirp4netns (network.rs): the
    /// outside world is reachable, the host's loopback services are not. docker build's
    /// default.
    Isolated,
    /// Share the host's network namespace (`--network host`, `RUN --network=host`).
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// docker's default: [`DEFAULT_CAPABILITIES`] and docker's default seccomp profile
    /// (see seccomp.rs).
    Sandbox,
    /// `--security=insecure` (behind `--allow security.insecure`): every capability and no
    /// seccomp filter, as BuildKit runs it. Mounts, masks and devices stay as in `Sandbox`.
    Insecure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// overlayfs over the lowerdirs; the upperdir is written by the kernel.
    Overlay,
    /// Copy the lower chain into a fresh tree, run there, then diff it against the chain
    /// into the upperdir. For filesystems where overlay cannot mount.
    Copy,
}

/// How the step is kept apart from the host (`--isolation`, buildah's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Its own mount, pid, ipc, uts (and network) namespaces, /proc, /dev and /sys mounted,
    /// pivot_root into the root (`oci`, and `rootless` inside strata's user namespace).
    Namespaces,
    /// No new namespaces and no mounts, for where both are refused (an unprivileged
    /// container: docker's default seccomp profile and capabilities): chroot into a copied
    /// tree ([`Snapshotter::Copy`] only). The step shares the caller's network (only
    /// [`Network::None`] is refused), sees no /proc or /sys, gets docker's device nodes
    /// made with mknod, and RUN --mount accepts only files (heredocs, secrets). It keeps
    /// [`DEFAULT_CAPABILITIES`] minus SYS_CHROOT, which would let root leave a chroot;
    /// chroot is still not a security boundary: the container around strata is.
    Chroot,
}

/// A RUN --mount. `target` is a path inside the root; its mount point is created for the
/// step and never ends up in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// Bind a host path onto `target` (cache mounts, ssh sockets, read-only binds).
    Bind {
        source: PathBuf,
        target: String,
        is_readonly: bool,
    },
    /// A fresh tmpfs on `target`, optionally limited to `size` bytes.
    Tmpfs { target: String, size: Option<u64> },
    /// A throwaway writable view: overlay of `lowerdirs` (top-first, at least one) with
    /// `upperdir`/`workdir` (empty dirs on one filesystem, discarded by the caller), then
    /// `subpath` of it (a directory when `is_dir`, else a file) bound onto `target`.
    /// For `--mount=type=bind,rw` and binds from other stages or images.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
        subpath: String,
        is_dir: bool,
        target: String,
        is_readonly: bool,
    },
    /// A file with `data`, mode and owner, on the step's private tmpfs, bound read-only
    /// onto `target` (secrets); it never touches the disk.
    File {
        target: String,
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// How the step's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn is_success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code: {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// The result of a step that started. A non-zero status is not an `Err`: the caller turns
/// it into the build error (with the step and `output_tail`).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: ExitStatus,
    /// The last [`OUTPUT_TAIL_BYTES`] of combined stdout and stderr.
    pub output_tail: Vec<u8>,
    /// From fork to reap (for the copy snapshotter, excluding copy and diff).
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid RUN: {reason}")]
    InvalidSpec { reason: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The sandbox failed before the command started (mount, pivot_root, user, exec).
    #[error("setting up the RUN sandbox: {step}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    /// slirp4netns could not give an isolated step its network.
    #[error("setting up the RUN network: {reason}")]
    Network { reason: String },
    #[error(transparent)]
    Seccomp(#[from] &'static seccomp::SeccompError),
    #[error("copy snapshotter: {op} {path}")]
    Copy {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ExecError>;

/// Run one RUN step; see [`RunSpec`] for the contract. Output is discarded except for the
/// tail; use [`run_step_with_output`] to stream it.
pub fn run_step(spec: &RunSpec) -> Result<RunOutcome> {
    run_step_with_output(spec, &mut |_| {})
}

/// [`run_step`], calling `on_line` with each line of combined stdout/stderr (without the
/// newline; a last unterminated line is passed too) as it arrives. After
/// [`LOG_LIMIT_BYTES`] the output is clipped as BuildKit clips it: one more line,
/// [`clip_note`], and nothing after it (the step keeps running; its tail is still kept).
///
/// Blocks until the step's pid 1 exits; every other process of the step is killed then (pid
/// namespace). If the calling thread dies, the step is killed (PR_SET_PDEATHSIG). Safe to
/// call from several threads at once with distinct directories.
pub fn run_step_with_output(spec: &RunSpec, on_line: &mut dyn FnMut(&[u8])) -> Result<RunOutcome> {
    sandbox::run(spec, on_line)
}
