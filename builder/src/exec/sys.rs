//! The syscall seam: every kernel call the sandbox's mount sequence makes goes through
//! [`Syscall`], so the sequence can be checked without root by a recorder (youki's
//! `Syscall` trait, same idea). [`LinuxSyscall`] is the real thing; tests use
//! [`RecordingSyscall`], which writes each call as one line of text.

use std::io;
use std::path::Path;

pub use rustix::mount::MountFlags;

use super::runtime_flags::Ulimit;

/// The kernel calls the sandbox child makes between `unshare` and `execve`.
pub trait Syscall {
    /// `mount(source, target, fstype, flags, data)`.
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// `mount(source, target, NULL, MS_BIND [| MS_REC])`.
    fn bind(&self, source: &Path, target: &Path, recursive: bool) -> io::Result<()>;
    /// `mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | flags)`: make a bind mount read-only.
    fn remount_bind(&self, target: &Path, flags: MountFlags) -> io::Result<()>;
    /// `mount(NULL, target, NULL, MS_REC | MS_PRIVATE)`: stop mount events leaking to the host.
    fn make_rprivate(&self, target: &Path) -> io::Result<()>;
    /// `umount2(target, MNT_DETACH)`.
    fn unmount_detach(&self, target: &Path) -> io::Result<()>;
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Create an empty regular file (a bind-mount target); an existing file is fine.
    fn create_file(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// `chroot(path)` (needs CAP_SYS_CHROOT), for `--isolation chroot`.
    fn chroot(&self, path: &Path) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Bring the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> io::Result<()>;
    /// Bind `path` onto itself read-only (recursively). A path this kernel lacks is skipped.
    fn make_readonly(&self, path: &Path) -> io::Result<()>;
    /// Hide `path`: bind /dev/null over a file, or `empty_dir` (created here, on the
    /// runtime tmpfs) over a directory, read-only. A path this kernel lacks is skipped.
    fn mask(&self, path: &Path, empty_dir: &Path) -> io::Result<()>;
    /// Shrink the capability bounding set to `keep` (a `CapabilitySet` bit mask) and clear
    /// the ambient set. Before [`Syscall::set_ids`]: dropping needs CAP_SETPCAP.
    fn limit_bounding_set(&self, keep: u64) -> io::Result<()>;
    /// Set the effective and permitted capabilities to `keep` (inheritable empty), for a
    /// step that stays uid 0; a non-zero uid loses them all at `setuid` anyway.
    fn set_capabilities(&self, keep: u64) -> io::Result<()>;
    /// Install a seccomp BPF program (`seccomp(SECCOMP_SET_MODE_FILTER)`) without setting
    /// no_new_privs: the caller must still hold CAP_SYS_ADMIN (see seccomp.rs).
    fn install_seccomp(&self, program: &[seccompiler::sock_filter]) -> io::Result<()>;
    /// `setgroups`, `setgid`, `setuid`, in that order (each per-thread: the child is
    /// single-threaded).
    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> io::Result<()>;
    /// `setrlimit(resource, soft, hard)` (`--ulimit`). Before the capabilities drop:
    /// raising a hard limit takes CAP_SYS_RESOURCE.
    fn set_rlimit(&self, limit: &Ulimit) -> io::Result<()>;
    /// Create (or replace) a regular file with `bytes`, mode 0644.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Owner, mode and mtime of a stub directory.
    fn set_attrs(&self, path: &Path, attrs: &DirAttrs) -> io::Result<()>;
    /// Mount overlay on `target` through fsopen/fsconfig/fsmount/move_mount, one
    /// `lowerdir+` per lowerdir (top-first), so the option string has no size limit.
    /// Mounted `nodev`, like every overlay of the sandbox.
    fn mount_overlay_fsconfig(
        &self,
        target: &Path,
        lowerdirs: &[std::path::PathBuf],
        upperdir: &Path,
        workdir: &Path,
        tuning: &[String],
    ) -> io::Result<()>;
}

/// The real kernel, through rustix (libc only for the loopback ioctl).
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let data = data.map(std::ffi::CString::new).transpose()?;
        rustix::mount::mount(source, target, fstype, flags, data.as_deref())?;
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path, recursive: bool) -> io::Result<()> {
        if recursive {
            rustix::mount::mount_bind_recursive(source, target)?;
        } else {
            rustix::mount::mount_bind(source, target)?;
        }
        Ok(())
    }

    fn remount_bind(&self, target: &Path, flags: MountFlags) -> io::Result<()> {
        rustix::mount::mount_remount(target, flags | MountFlags::BIND, "")?;
        Ok(())
    }

    fn make_rprivate(&self, target: &Path) -> io::Result<()> {
        use rustix::mount::MountPropagationFlags as P;
        rustix::mount::mount_change(target, P::PRIVATE | P::REC)?;
        Ok(())
    }

    fn unmount_detach(&self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)?;
        Ok(())
    }

    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
            Err(e) => return Err(e),
        }
        // The umask may have cut bits (1777 for /dev/shm); set the mode exactly.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn create_file(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .open(path)
            .map(drop)
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        rustix::process::chdir(path)?;
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        rustix::process::pivot_root(new_root, put_old)?;
        Ok(())
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        rustix::process::chroot(path)?;
        Ok(())
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes())?;
        Ok(())
    }

    fn loopback_up(&self) -> io::Result<()> {
        // rustix has no interface ioctls; SIOCGIFFLAGS/SIOCSIFFLAGS through libc.
        // SAFETY: plain socket/ioctl/close calls on a zeroed, NUL-terminated ifreq we own.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
            if rc == 0 {
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
            }
            let err = io::Error::last_os_error();
            libc::close(fd);
            if rc != 0 {
                return Err(err);
            }
        }
        Ok(())
    }

    fn make_readonly(&self, path: &Path) -> io::Result<()> {
        match rustix::mount::mount_bind_recursive(path, path) {
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            r => r?,
        }
        self.remount_bind(
            path,
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        )
    }

    fn mask(&self, path: &Path, empty_dir: &Path) -> io::Result<()> {
        let source = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(md) if md.is_dir() => {
                self.mkdir(empty_dir, 0o555)?;
                empty_dir
            }
            Ok(_) => Path::new("/dev/null"),
        };
        rustix::mount::mount_bind(source, path)?;
        // Not nodev: the /dev/null bound over a file must stay readable (EOF).
        self.remount_bind(path, MountFlags::RDONLY | MountFlags::NOSUID)
    }

    fn limit_bounding_set(&self, keep: u64) -> io::Result<()> {
        // rustix takes one typed `Capability` per call; the kernel's numbers are simpler to
        // walk. EINVAL marks the end of the capabilities this kernel knows.
        for cap in 0..64u32 {
            if keep & (1u64 << cap) != 0 {
                continue;
            }
            // SAFETY: PR_CAPBSET_DROP with a capability number; no pointers involved.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINVAL) {
                    break;
                }
                return Err(err);
            }
        }
        rustix::thread::clear_ambient_capability_set()?;
        Ok(())
    }

    fn set_capabilities(&self, keep: u64) -> io::Result<()> {
        use rustix::thread::{CapabilitySet, CapabilitySets};
        let keep = CapabilitySet::from_bits_retain(keep);
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: CapabilitySet::empty(),
            },
        )?;
        Ok(())
    }

    fn install_seccomp(&self, program: &[seccompiler::sock_filter]) -> io::Result<()> {
        // seccompiler's own `apply_filter` sets no_new_privs first, which docker does not.
        let len =
            u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: the kernel copies `len` instructions from `filter`, which `program` owns
        // for the whole call; seccompiler's `sock_filter` has the kernel's layout.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
        use rustix::process::{Gid, Uid};
        let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        match rustix::thread::set_thread_groups(&groups) {
            // A rootless build without a subgid range runs where setgroups is denied
            // (/proc/self/setgroups): with no supplementary groups there is nothing to drop.
            Err(rustix::io::Errno::PERM) if groups.is_empty() => {}
            other => other?,
        }
        rustix::thread::set_thread_res_gid(
            Gid::from_raw(gid),
            Gid::from_raw(gid),
            Gid::from_raw(gid),
        )?;
        rustix::thread::set_thread_res_uid(
            Uid::from_raw(uid),
            Uid::from_raw(uid),
            Uid::from_raw(uid),
        )?;
        Ok(())
    }

    fn set_rlimit(&self, limit: &Ulimit) -> io::Result<()> {
        let value = libc::rlimit {
            rlim_cur: Ulimit::rlim(limit.soft),
            rlim_max: Ulimit::rlim(limit.hard),
        };
        // SAFETY: a valid resource number and a pointer to an initialised rlimit.
        if unsafe { libc::setrlimit(limit.resource.raw(), &value) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(path, bytes)
    }

    fn set_attrs(&self, path: &Path, attrs: &DirAttrs) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::lchown(path, Some(attrs.uid), Some(attrs.gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(attrs.mode))?;
        let t = libc::timespec {
            tv_sec: attrs.mtime.0 as libc::time_t,
            tv_nsec: attrs.mtime.1 as _,
        };
        set_times(path, t, t)
    }

    fn mount_overlay_fsconfig(
        &self,
        target: &Path,
        lowerdirs: &[std::path::PathBuf],
        upperdir: &Path,
        workdir: &Path,
        tuning: &[String],
    ) -> io::Result<()> {
        use rustix::mount as m;
        let fs = m::fsopen("overlay", m::FsOpenFlags::FSOPEN_CLOEXEC)?;
        for dir in lowerdirs {
            m::fsconfig_set_string(&fs, "lowerdir+", dir)?;
        }
        m::fsconfig_set_string(&fs, "upperdir", upperdir)?;
        m::fsconfig_set_string(&fs, "workdir", workdir)?;
        for opt in tuning {
            match opt.split_once('=') {
                Some((k, v)) => m::fsconfig_set_string(&fs, k, v)?,
                None => m::fsconfig_set_flag(&fs, opt.as_str())?,
            }
        }
        m::fsconfig_create(&fs)?;
        let mnt = m::fsmount(
            &fs,
            m::FsMountFlags::FSMOUNT_CLOEXEC,
            m::MountAttrFlags::MOUNT_ATTR_NODEV,
        )?;
        m::move_mount(
            &mnt,
            "",
            rustix::fs::CWD,
            target,
            m::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )?;
        Ok(())
    }
}

/// Records every call as a line of text and succeeds (or fails the call whose line starts
/// with `fail_on`). For unit tests of the mount sequence; needs no privileges.
#[derive(Default)]
pub struct RecordingSyscall {
    pub calls: std::cell::RefCell<Vec<String>>,
    pub fail_on: Option<String>,
}

impl RecordingSyscall {
    fn record(&self, line: String) -> io::Result<()> {
        let fail = self.fail_on.as_deref().is_some_and(|p| line.starts_with(p));
        self.calls.borrow_mut().push(line);
        if fail {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {source} {} {fstype} {} {}",
            target.display(),
            flag_names(flags),
            data.unwrap_or("-")
        ))
    }
    fn bind(&self, source: &Path, target: &Path, recursive: bool) -> io::Result<()> {
        let kind = if recursive { "rbind" } else { "bind" };
        self.record(format!("{kind} {} {}", source.display(), target.display()))
    }
    fn remount_bind(&self, target: &Path, flags: MountFlags) -> io::Result<()> {
        self.record(format!(
            "remount {} {}",
            target.display(),
            flag_names(flags)
        ))
    }
    fn make_rprivate(&self, target: &Path) -> io::Result<()> {
        self.record(format!("rprivate {}", target.display()))
    }
    fn unmount_detach(&self, target: &Path) -> io::Result<()> {
        self.record(format!("umount {}", target.display()))
    }
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(format!("mkdir {} {mode:o}", path.display()))
    }
    fn create_file(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(format!("touch {} {mode:o}", path.display()))
    }
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {target} {}", link.display()))
    }
    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", path.display()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ))
    }
    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chroot {}", path.display()))
    }
    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }
    fn loopback_up(&self) -> io::Result<()> {
        self.record("loopback_up".to_string())
    }
    fn set_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
        self.record(format!("set_ids {uid} {gid} {groups:?}"))
    }
    fn install_seccomp(&self, program: &[seccompiler::sock_filter]) -> io::Result<()> {
        self.record(format!("seccomp {} instructions", program.len()))
    }
    fn make_readonly(&self, path: &Path) -> io::Result<()> {
        self.record(format!("readonly {}", path.display()))
    }
    fn mask(&self, path: &Path, _empty_dir: &Path) -> io::Result<()> {
        self.record(format!("mask {}", path.display()))
    }
    fn limit_bounding_set(&self, keep: u64) -> io::Result<()> {
        self.record(format!("capbset {keep:#x}"))
    }
    fn set_capabilities(&self, keep: u64) -> io::Result<()> {
        self.record(format!("capset {keep:#x}"))
    }
    fn set_rlimit(&self, limit: &Ulimit) -> io::Result<()> {
        self.record(format!("setrlimit {limit}"))
    }
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.record(format!("write {} {} bytes", path.display(), bytes.len()))
    }
    fn set_attrs(&self, path: &Path, a: &DirAttrs) -> io::Result<()> {
        self.record(format!(
            "attrs {} {:o} {}:{} {}.{}",
            path.display(),
            a.mode,
            a.uid,
            a.gid,
            a.mtime.0,
            a.mtime.1
        ))
    }
    fn mount_overlay_fsconfig(
        &self,
        target: &Path,
        lowerdirs: &[std::path::PathBuf],
        upperdir: &Path,
        workdir: &Path,
        tuning: &[String],
    ) -> io::Result<()> {
        self.record(format!(
            "overlay_fsconfig {} {} lowerdirs upperdir={} workdir={} {}",
            target.display(),
            lowerdirs.len(),
            upperdir.display(),
            workdir.display(),
            tuning.join(",")
        ))
    }
}

/// `nosuid,nodev,…` for the recorder's lines, in a fixed order.
fn flag_names(flags: MountFlags) -> String {
    let names = [
        (MountFlags::RDONLY, "ro"),
        (MountFlags::NOSUID, "nosuid"),
        (MountFlags::NODEV, "nodev"),
        (MountFlags::NOEXEC, "noexec"),
        (MountFlags::STRICTATIME, "strictatime"),
        (MountFlags::REC, "rec"),
    ];
    let out: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if out.is_empty() {
        "-".to_string()
    } else {
        out.join(",")
    }
}

/// The mode, owner and mtime (seconds, nanoseconds) a created directory is given.
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

/// `utimensat` without following a symlink.
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
