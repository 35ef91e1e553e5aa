//! The network of a RUN under [`Network::Isolated`](super::Network::Isolated): its own
//! network namespace, connected to the outside by slirp4netns, a user-mode TCP/IP stack
//! that turns the step's packets into ordinary sockets of the host.
//!
//! ```text
//! step (netns)  eth0 10.0.2.100/24, gw 10.0.2.2, DNS 10.0.2.3, lo
//!     │ tap
//! slirp4netns (host netns)  connect()/sendto() as the host; 10.0.2.2 → host loopback refused
//! ```
//!
//! The step reaches what the host reaches (registries, package mirrors) but not the host's
//! loopback services (`--disable-host-loopback`), as under docker build's bridge network.
//!
//! slirp4netns rather than pasta: both start per RUN, and the start is what a build pays.
//! Attaching to a fresh namespace and waiting for `--ready-fd` took a median of 13 ms for
//! slirp4netns and 80 ms for pasta (10 runs each, loaded 2-core machine); pasta's faster
//! data path matters only for large transfers. pasta as root also refuses a target it
//! cannot reach through a user namespace.
//!
//! One slirp4netns per step: it is started once the step's first process has unshared its
//! namespaces, while that process's child mounts the root, and the step's command starts
//! only once the network is up. It exits when its exit pipe closes ([`UserNet`]'s drop or
//! strata's death) and is reaped on drop.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use super::{ExecError, Result};

/// The program that gives an isolated step its network.
pub const SLIRP4NETNS: &str = "slirp4netns";

/// slirp4netns's DNS forwarder inside the namespace (it forwards to the host's resolvers).
pub const SLIRP_DNS: &str = "10.0.2.3";

/// The running slirp4netns of one step. Dropping it kills the process; a thread of its
/// own reaps it.
pub struct UserNet {
    child: Option<Child>,
    /// slirp4netns exits when the last write end of this pipe closes.
    exit_w: Option<OwnedFd>,
}

impl UserNet {
    /// Start slirp4netns on the network namespace of process `pid` and wait until the
    /// namespace's `eth0` is configured (addresses, default route, lo up).
    pub fn start(pid: libc::pid_t) -> Result<UserNet> {
        let fail = |reason: String| ExecError::Network { reason };
        let (ready_r, ready_w) = super::pipe::pipe()?;
        let (exit_r, exit_w) = super::pipe::pipe()?;
        let keep = [ready_w.as_raw_fd(), exit_r.as_raw_fd()];
        let mut cmd = Command::new(SLIRP4NETNS);
        cmd.arg("--configure")
            .arg("--mtu=65520")
            .arg("--disable-host-loopback")
            .arg(format!("--ready-fd={}", keep[0]))
            .arg(format!("--exit-fd={}", keep[1]))
            .arg(pid.to_string())
            .arg("eth0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only fcntl on fds this child owns, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{SLIRP4NETNS} not found: RUN's isolated network needs it (Debian/Ubuntu: \
                     apt-get install slirp4netns), or build with --network host or none"
                )
            } else {
                format!("running {SLIRP4NETNS}: {e}")
            })
        })?;
        drop((ready_w, exit_r));
        let mut byte = [0u8; 1];
        if File::from(ready_r).read_exact(&mut byte).is_err() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            return Err(fail(format!(
                "{SLIRP4NETNS} ended before the network was up: {}",
                stderr.trim()
            )));
        }
        Ok(UserNet {
            child: Some(child),
            exit_w: Some(exit_w),
        })
    }
}

impl Drop for UserNet {
    fn drop(&mut self) {
        self.exit_w.take();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        // slirp4netns takes milliseconds to die after SIGKILL (the kernel tears down its
        // tap device and the step's network namespace): the step's layer need not wait
        // for that. A zombie left when strata exits first (or when no thread can be
        // made) is reaped by init.
        let _ = std::thread::Builder::new()
            .name("slirp4netns reaper".into())
            .spawn(move || {
                let _ = child.wait();
            });
    }
}

/// The step's /etc/resolv.conf under an isolated network: the host's, with loopback
/// nameservers (a local resolver such as systemd-resolved's 127.0.0.53, unreachable from
/// the step) replaced by slirp4netns's forwarder, once.
pub fn resolv_conf(host: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(host);
    let mut out = String::new();
    let mut has_forwarder = false;
    for line in text.lines() {
        let server = line
            .trim()
            .strip_prefix("nameserver")
            .map(str::trim)
            .filter(|s| s.starts_with("127.") || *s == "::1");
        match server {
            Some(_) if has_forwarder => {}
            Some(_) => {
                has_forwarder = true;
                out.push_str(&format!("nameserver {SLIRP_DNS}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nameservers_become_the_forwarder_once() {
        let host = b"search lan\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.1.1\n";
        assert_eq!(
            String::from_utf8(resolv_conf(host)).unwrap(),
            "search lan\nnameserver 10.0.2.3\nnameserver 10.1.1.1\n"
        );
        let plain = b"nameserver 10.255.255.53\noptions ndots:1\n";
        assert_eq!(resolv_conf(plain), plain.to_vec());
    }
}
