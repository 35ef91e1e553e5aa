//! The process side of a RUN: prepare directories, fork, set up the child, stream its
//! output, reap it, clean up the mount-point stubs.
//!
//! Fork discipline: the caller may be multi-threaded, so child A (forked from it) only
//! makes raw syscalls and never allocates. Child B is forked from the single-threaded A
//! and may use the whole standard library. Setup errors travel back over a close-on-exec
//! pipe as `errno (i32 LE) + message`; a clean `execve` closes it with nothing written.
//!
//! Under an isolated network two more pipes order the start (network.rs): A writes one
//! byte to the unshared pipe once its namespaces exist, the caller starts slirp4netns on
//! A's network namespace, and writes one byte to the go pipe, which B reads just before
//! `execve` (so B's mounts overlap with the network's start).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::mounts::{self, MountOp, OverlayOptions, RootfsOptions};
use super::output::{OutputLog, LOG_LIMIT_BYTES};
use super::pipe::pipe;
use super::runtime_flags::Ulimit;
use super::stubs::{self, Stubs};
use super::sys::{LinuxSyscall, Syscall};
use super::{
    chroot, copy_snapshotter, namespaces, network, seccomp, user, ExecError, ExitStatus, Isolation,
    Network, Result, RunOutcome, RunSpec, Security, Snapshotter, DEFAULT_CAPABILITIES,
    DEFAULT_PATH,
};

/// `CAP_SYS_CHROOT`'s bit: with it, root in a chroot can leave it.
const CAP_SYS_CHROOT: u64 = 1 << 18;

/// Child fds after the shuffle in child A: 0 /dev/null, 1 and 2 the output pipe,
/// 3 the error pipe (close-on-exec), 4 the status pipe (A only), 5 the unshared pipe
/// (A only), 6 the go pipe (B, close-on-exec).
const ERR_FD: RawFd = 3;
const STATUS_FD: RawFd = 4;
const UNSHARED_FD: RawFd = 5;
const GO_FD: RawFd = 6;
/// B's setup error when the go pipe closed without a byte.
const WAITING_FOR_NETWORK: &str = "waiting for the step's network";
/// Exit code of B when setup failed (the error pipe says why).
const SETUP_FAILED: i32 = 125;

pub(super) fn run(spec: &RunSpec, on_line: &mut dyn FnMut(&[u8])) -> Result<RunOutcome> {
    if spec.argv.is_empty() {
        return Err(ExecError::InvalidSpec {
            reason: "empty command".into(),
        });
    }
    let is_chroot = spec.isolation == Isolation::Chroot;
    if is_chroot {
        chroot::check(spec)?;
    }
    let scratch = &spec.workdir_overlay;
    let runtime_dir = scratch.join("rt");
    mkdir(&runtime_dir)?;
    let resolv_conf = read_host_file(Path::new("/etc/resolv.conf"))?;
    let hosts = read_host_file(Path::new("/etc/hosts"))?;
    let points = stubs::mount_points(&spec.extra_mounts);

    let (root, overlay, stubs, copied) = match spec.snapshotter {
        Snapshotter::Overlay => {
            // The stub layer (a tmpfs dir, see mounts.rs) is always the top lowerdir; for
            // scratch it is the only one, which also gives overlay the lowerdir it needs.
            let mut lowerdirs = vec![runtime_dir.join("stubs")];
            lowerdirs.extend(spec.lowerdirs.iter().cloned());
            let workdir = scratch.join("work");
            mkdir(&workdir)?;
            let ov = OverlayOptions {
                lowerdirs,
                upperdir: spec.upperdir.clone(),
                workdir,
                tuning: mounts::overlay_tuning(),
            };
            let stubs = stubs::overlay_stubs(&points, &spec.lowerdirs);
            (runtime_dir.join("root"), Some(ov), stubs, None)
        }
        Snapshotter::Copy => {
            let root = scratch.join("root");
            let state = copy_snapshotter::materialize(&spec.lowerdirs, &root)?;
            let stubs = if is_chroot {
                chroot::prepare(
                    &root,
                    spec,
                    &resolv_conf_for(spec, &resolv_conf),
                    &spec.runtime.hosts_file(&hosts),
                )?
            } else {
                Stubs::create(&root, &points, &[], true).map_err(|source| ExecError::Io {
                    op: "creating mount points in",
                    path: root.clone(),
                    source,
                })?
            };
            (root, None, Vec::new(), Some((state, stubs)))
        }
    };
    let opts = RootfsOptions {
        root: root.clone(),
        overlay,
        runtime_dir,
        stubs,
        hostname: spec.hostname.clone(),
        has_own_network: spec.network != Network::Host,
        resolv_conf: resolv_conf_for(spec, &resolv_conf),
        hosts: spec.runtime.hosts_file(&hosts),
        shm_size: spec.runtime.shm_size,
        extra_mounts: spec.extra_mounts.clone(),
        tuning: mounts::overlay_tuning(),
    };
    let ops = if is_chroot {
        chroot::plan(&root)
    } else {
        mounts::plan(&opts)
    };
    let outcome = spawn(spec, &ops, on_line);
    if let Some((state, stubs)) = copied {
        stubs.remove().map_err(|source| ExecError::Io {
            op: "removing mount points from",
            path: root.clone(),
            source,
        })?;
        let outcome = outcome?;
        copy_snapshotter::diff_tree(&spec.lowerdirs, &root, &state, &spec.upperdir)?;
        std::fs::remove_dir_all(&root).map_err(|source| ExecError::Copy {
            op: "removing the copied tree",
            path: root.clone(),
            source,
        })?;
        return Ok(outcome);
    }
    outcome
}

/// The step's /etc/resolv.conf: under slirp4netns (an isolated network in its own
/// namespace) loopback resolvers become slirp4netns's forwarder.
fn resolv_conf_for(spec: &RunSpec, host: &[u8]) -> Vec<u8> {
    match (spec.network, spec.isolation) {
        (Network::Isolated, Isolation::Namespaces) => network::resolv_conf(host),
        _ => host.to_vec(),
    }
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| ExecError::Io {
        op: "creating directory",
        path: path.to_path_buf(),
        source,
    })
}

/// The host's file (empty when missing); the step gets a read-only private copy.
fn read_host_file(src: &Path) -> Result<Vec<u8>> {
    match std::fs::read(src) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ExecError::Io {
            op: "reading",
            path: src.to_path_buf(),
            source,
        }),
    }
}

/// What child B needs, prepared before the fork.
struct ChildPlan<'a> {
    ops: &'a [MountOp],
    argv: Vec<CString>,
    env: Vec<String>,
    cwd: String,
    user: &'a str,
    /// `--ulimit`s, set before the capabilities are dropped.
    ulimits: &'a [Ulimit],
    /// Capabilities and seccomp programs of a sandboxed step; `None` for
    /// `--security=insecure` (root keeps every capability, no filter).
    confinement: Option<(u64, &'static [seccompiler::BpfProgram])>,
    /// The step waits for slirp4netns (see the module doc).
    is_isolated: bool,
    /// `--isolation chroot`: B leads its own process group, which A kills once B is gone
    /// (there is no pid namespace to end the step's other processes).
    is_chroot: bool,
}

fn spawn(spec: &RunSpec, ops: &[MountOp], on_line: &mut dyn FnMut(&[u8])) -> Result<RunOutcome> {
    let argv = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| ExecError::InvalidSpec {
            reason: "command contains a NUL byte".into(),
        })?;
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let cwd = if spec.cwd.starts_with('/') {
        spec.cwd.clone()
    } else {
        format!("/{}", spec.cwd)
    };
    let is_chroot = spec.isolation == Isolation::Chroot;
    let confinement = match spec.security {
        Security::Sandbox if is_chroot => Some((
            DEFAULT_CAPABILITIES & !CAP_SYS_CHROOT,
            // Without CAP_SYS_ADMIN (docker's default set) a filter cannot be installed
            // without no_new_privs, which would break setuid programs in the step; the
            // container's own filter (docker's default profile, the one seccomp.rs
            // carries) already confines strata and so the step.
            if store::overlay_xattr::has_cap_sys_admin() {
                seccomp::default_programs()?
            } else {
                &[]
            },
        )),
        Security::Sandbox => Some((DEFAULT_CAPABILITIES, seccomp::default_programs()?)),
        Security::Insecure => None,
    };
    let plan = ChildPlan {
        ops,
        argv,
        env,
        cwd,
        user: &spec.user,
        ulimits: &spec.runtime.ulimits,
        confinement,
        is_isolated: spec.network == Network::Isolated && !is_chroot,
        is_chroot,
    };
    let flags = if is_chroot {
        rustix::thread::UnshareFlags::empty()
    } else {
        namespaces::unshare_flags(spec.network)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (st_r, st_w) = pipe()?;
    let (unshared_r, unshared_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let devnull = File::open("/dev/null").map_err(|source| ExecError::Io {
        op: "opening",
        path: "/dev/null".into(),
        source,
    })?;
    let fds = [
        devnull.as_raw_fd(),
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
        st_w.as_raw_fd(),
        unshared_w.as_raw_fd(),
        go_r.as_raw_fd(),
    ];
    let start = Instant::now();
    // SAFETY: the child runs only `child_a`, which never returns and, until its own fork,
    // makes only async-signal-safe syscalls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ExecError::Setup {
            step: "fork".into(),
            source: io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        child_a(fds, flags, &plan);
    }
    drop((out_w, err_w, st_w, unshared_w, go_r, devnull));
    if let Some(stop) = &spec.stop {
        stop.register(pid);
    }
    let net = plan
        .is_isolated
        .then(|| start_network(pid, unshared_r, go_w));

    let tail = read_output(File::from(out_r), on_line);
    let mut report = Vec::new();
    let _ = File::from(err_r).read_to_end(&mut report);
    let status = reap(pid);
    if let Some(stop) = &spec.stop {
        stop.unregister(pid);
    }
    let duration = start.elapsed();
    let mut raw_status = [0u8; 4];
    let has_status = File::from(st_r).read_exact(&mut raw_status).is_ok();
    if report.len() >= 4 {
        // A network that never came up is the error when B only saw its go pipe close.
        if report[4..] == *WAITING_FOR_NETWORK.as_bytes() {
            if let Some(Err(e)) = net {
                return Err(e);
            }
        }
        let errno = i32::from_le_bytes([report[0], report[1], report[2], report[3]]);
        let step = String::from_utf8_lossy(&report[4..]).into_owned();
        let source = if errno == 0 {
            io::Error::other(step.clone())
        } else {
            io::Error::from_raw_os_error(errno)
        };
        return Err(ExecError::Setup { step, source });
    }
    let tail = tail.map_err(|source| ExecError::Io {
        op: "reading the output of",
        path: spec.argv[0].clone().into(),
        source,
    })?;
    if !has_status {
        return Err(ExecError::Setup {
            step: "waiting for the sandbox".into(),
            source: io::Error::other(format!("the namespace helper ended with wait status {status:#x} before reporting the step's status")),
        });
    }
    let raw = i32::from_le_bytes(raw_status);
    let status = if libc::WIFSIGNALED(raw) {
        ExitStatus::Signal(libc::WTERMSIG(raw))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(raw))
    };
    Ok(RunOutcome {
        status,
        output_tail: tail,
        duration,
    })
}

/// Once child A (`pid`) reports its namespaces, start slirp4netns on its network
/// namespace and let B go. On error B sees the go pipe close and fails its setup.
fn start_network(
    pid: libc::pid_t,
    unshared_r: OwnedFd,
    go_w: OwnedFd,
) -> Result<Option<network::UserNet>> {
    let mut byte = [0u8; 1];
    if File::from(unshared_r).read_exact(&mut byte).is_err() {
        // A failed before unsharing; its report says why.
        return Ok(None);
    }
    let net = network::UserNet::start(pid)?;
    let mut go = File::from(go_w);
    std::io::Write::write_all(&mut go, b"1").map_err(|source| ExecError::Setup {
        step: "starting the step after its network".into(),
        source,
    })?;
    Ok(Some(net))
}

/// Stream `out` line by line to `on_line`, clipped (see output.rs); return its tail.
fn read_output(mut out: File, on_line: &mut dyn FnMut(&[u8])) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut log = OutputLog::new(LOG_LIMIT_BYTES);
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => log.push(&buf[..n], on_line),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(log.finish(on_line))
}

/// The raw wait status of our child `pid` (-1 if it cannot be waited for).
pub(super) fn reap(pid: libc::pid_t) -> i32 {
    use rustix::process::{waitpid, Pid, WaitOptions};
    let Some(pid) = Pid::from_raw(pid) else {
        return -1;
    };
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return status.as_raw(),
            Ok(None) => return -1,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return -1,
        }
    }
}

/// Write `errno + message` to the error pipe without allocating (child A may not).
fn report_raw(errno: i32, message: &[u8]) {
    // SAFETY: writes to a pipe fd this process owns.
    unsafe {
        libc::write(ERR_FD, errno.to_le_bytes().as_ptr().cast(), 4);
        libc::write(ERR_FD, message.as_ptr().cast(), message.len());
    }
}

pub(super) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit skips atexit handlers and destructors that belong to the parent.
    unsafe { libc::_exit(code) }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Die with the thread that started the step (a killed build must not leave steps running).
fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
}

/// Child A: shuffle fds, unshare, fork B, wait for it, report its wait status.
fn child_a(fds: [RawFd; 6], flags: rustix::thread::UnshareFlags, plan: &ChildPlan<'_>) -> ! {
    die_with_parent();
    // SAFETY: raw fd syscalls on descriptors inherited from the parent; no allocation.
    unsafe {
        // Move the fds above 0..7 first so the dup2s below cannot clobber each other.
        let mut high = [0; 6];
        for (h, fd) in high.iter_mut().zip(fds) {
            *h = libc::fcntl(fd, libc::F_DUPFD, 10);
            if *h < 0 {
                exit_now(SETUP_FAILED);
            }
        }
        let [null, out, err, st, unshared, go] = high;
        if libc::dup2(null, 0) < 0
            || libc::dup2(out, 1) < 0
            || libc::dup2(out, 2) < 0
            || libc::dup2(err, ERR_FD) < 0
            || libc::dup2(st, STATUS_FD) < 0
            || libc::dup2(unshared, UNSHARED_FD) < 0
            || libc::dup2(go, GO_FD) < 0
            || libc::fcntl(ERR_FD, libc::F_SETFD, libc::FD_CLOEXEC) < 0
            || libc::fcntl(GO_FD, libc::F_SETFD, libc::FD_CLOEXEC) < 0
        {
            exit_now(SETUP_FAILED);
        }
        // Drop every other inherited fd: other threads' pipes must not be held open by us.
        libc::syscall(libc::SYS_close_range, 7u32, u32::MAX, 0u32);
    }
    // Not even an empty unshare under chroot: docker's seccomp profile refuses the call.
    let unshared = if flags.is_empty() {
        Ok(())
    } else {
        namespaces::unshare(flags)
    };
    if let Err(e) = unshared {
        report_raw(
            e.raw_os_error().unwrap_or(0),
            b"unshare(mount, pid, ipc, uts namespaces)",
        );
        exit_now(SETUP_FAILED);
    }
    // SAFETY: one byte to the caller (it waits for it only under an isolated network),
    // then A's end is closed so that a failing A shows as EOF there.
    unsafe {
        if plan.is_isolated {
            libc::write(UNSHARED_FD, b"1".as_ptr().cast(), 1);
        }
        libc::close(UNSHARED_FD);
    }
    // SAFETY: A is single-threaded; B runs `child_b`, which never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        report_raw(errno(), b"fork into the new pid namespace");
        exit_now(SETUP_FAILED);
    }
    if pid == 0 {
        die_with_parent();
        // SAFETY: closing our copy of the status pipe; B reports through the error pipe.
        // Under chroot B leads a new process group (see `ChildPlan::is_chroot`).
        unsafe {
            libc::close(STATUS_FD);
            if plan.is_chroot {
                libc::setpgid(0, 0);
            }
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_b(plan)));
        let (errno, message) = match result {
            Ok(Err((errno, message))) => (errno, message),
            Ok(Ok(never)) => match never {},
            Err(_) => (0, "the sandbox setup panicked".to_string()),
        };
        report_raw(errno, message.as_bytes());
        exit_now(SETUP_FAILED);
    }
    // SAFETY: A keeps only the status pipe: closing the output and error pipes lets the
    // parent see EOF when B and its descendants are gone.
    unsafe {
        libc::close(ERR_FD);
        libc::close(1);
        libc::close(2);
    }
    let status = reap(pid);
    // SAFETY: a signal to B's own process group (chroot only; B made it), then writing 4
    // bytes to our status pipe and leaving without running destructors.
    unsafe {
        if plan.is_chroot {
            libc::kill(-pid, libc::SIGKILL);
        }
        libc::write(STATUS_FD, status.to_le_bytes().as_ptr().cast(), 4);
    }
    exit_now(0)
}

enum Never {}

/// Child B (pid 1 of the new namespace): mounts, pivot_root, user, cwd, exec.
fn child_b(plan: &ChildPlan<'_>) -> std::result::Result<Never, (i32, String)> {
    let sys = LinuxSyscall;
    let os = |e: &io::Error| e.raw_os_error().unwrap_or(0);
    mounts::apply(&sys, plan.ops).map_err(|(i, e)| (os(&e), plan.ops[i].to_string()))?;
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let user = user::resolve(plan.user, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| (0, e.to_string()))?;
    let mut env = plan.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    std::fs::create_dir_all(&plan.cwd)
        .map_err(|e| (os(&e), format!("creating working directory {}", plan.cwd)))?;
    for limit in plan.ulimits {
        sys.set_rlimit(limit)
            .map_err(|e| (os(&e), format!("setting ulimit {limit}")))?;
    }
    if let Some((capabilities, programs)) = plan.confinement {
        sys.limit_bounding_set(capabilities)
            .map_err(|e| (os(&e), "dropping capabilities".to_string()))?;
        // Before set_ids: installing takes CAP_SYS_ADMIN, which a non-root user loses there.
        for program in programs {
            sys.install_seccomp(program)
                .map_err(|e| (os(&e), "installing the seccomp filter".to_string()))?;
        }
    }
    sys.set_ids(user.uid, user.gid, &user.additional_gids)
        .map_err(|e| {
            (
                os(&e),
                format!(
                    "switching to user {:?} ({}:{})",
                    plan.user, user.uid, user.gid
                ),
            )
        })?;
    if let (0, Some((capabilities, _))) = (user.uid, plan.confinement) {
        sys.set_capabilities(capabilities)
            .map_err(|e| (os(&e), "setting capabilities".to_string()))?;
    }
    sys.chdir(Path::new(&plan.cwd)).map_err(|e| {
        (
            os(&e),
            format!("changing to working directory {}", plan.cwd),
        )
    })?;
    let program = find_program(&plan.argv[0], &env).ok_or_else(|| {
        (
            libc::ENOENT,
            format!(
                "exec: {:?}: executable file not found in $PATH",
                plan.argv[0].to_string_lossy()
            ),
        )
    })?;
    if plan.is_isolated {
        let mut go = [0u8; 1];
        // SAFETY: GO_FD is B's own read end of the go pipe.
        let n = unsafe { libc::read(GO_FD, go.as_mut_ptr().cast(), 1) };
        if n != 1 {
            return Err((0, WAITING_FOR_NETWORK.to_string()));
        }
    }
    let env_c: Vec<CString> = env
        .iter()
        .filter_map(|e| CString::new(e.as_bytes()).ok())
        .collect();
    let mut argv_p: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env_c.iter().map(|e| e.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: Rust ignores SIGPIPE and the caller may block signals; the step must start
    // with default dispositions and an empty mask, as any process started by a shell does.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::execve(program.as_ptr(), argv_p.as_ptr(), env_p.as_ptr());
    }
    let e = io::Error::last_os_error();
    Err((os(&e), format!("exec {}", program.to_string_lossy())))
}

/// `argv0` with a `/` as is; otherwise the first executable match in the env's PATH.
fn find_program(argv0: &CString, env: &[String]) -> Option<CString> {
    let name = argv0.to_str().ok()?;
    if name.contains('/') {
        return Some(argv0.clone());
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':').find_map(|dir| {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = CString::new(format!("{dir}/{name}")).ok()?;
        let ok = rustix::fs::access(candidate.as_c_str(), rustix::fs::Access::EXEC_OK).is_ok();
        let is_file = PathBuf::from(format!("{dir}/{name}")).is_file();
        (ok && is_file).then_some(candidate)
    })
}
