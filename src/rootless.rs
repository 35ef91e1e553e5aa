//! Rootless strata: run by a user other than root, the process enters a user namespace in
//! which it is root, so RUN can make its namespaces and mount overlayfs, and files of any
//! owner can be unpacked and written back into layers with the image's own ids.
//!
//! ```text
//! /etc/subuid and /etc/subgid give USER a range, newuidmap/newgidmap installed:
//!     uid_map  0 UID 1  +  1 START COUNT       (image ids 1..COUNT land on the range)
//! otherwise:
//!     uid_map  0 UID 1                         (files keep one owner; said once)
//! ```
//!
//! The maps of a user namespace are written from outside it: a helper forked before the
//! unshare runs newuidmap/newgidmap (setuid root, they check /etc/subuid) on this process.
//! Everything here runs first thing in `main`, while the process is single-threaded.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A user's range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// The first range of `name` (or of its numeric `id`) in a subuid/subgid file.
pub fn find_range(file: &str, name: &str, id: u32) -> Option<SubIdRange> {
    file.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let (owner, start, count) = (parts.next()?, parts.next()?, parts.next()?);
        if owner != name && owner != id.to_string() {
            return None;
        }
        let range = SubIdRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (range.count > 0).then_some(range)
    })
}

/// Enter the user namespace when not root (see the module doc). A refused unshare (a
/// container without the right to make user namespaces) leaves the process as it is, with
/// a note: commands that do not RUN still work.
pub fn enter_user_namespace() -> Result<()> {
    let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
    if uid.is_root() {
        return Ok(());
    }
    let (uid, gid) = (uid.as_raw(), gid.as_raw());
    let name = user_name(uid).unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let ranges = match (
        find_range(&read("/etc/subuid"), &name, uid),
        find_range(&read("/etc/subgid"), &name, uid),
    ) {
        (Some(u), Some(g)) if on_path("newuidmap") && on_path("newgidmap") => Some((u, g)),
        _ => None,
    };
    // The helper waits on one end for "unshared", maps us, and exits.
    let (mut ours, mut theirs) = UnixStream::pair().context("creating a socket pair")?;
    let helper = match ranges {
        // SAFETY: the process is single-threaded here (start of main); the child runs
        // `map_from_outside` and exits without returning.
        Some((u, g)) => match unsafe { libc::fork() } {
            -1 => bail!(
                "fork for the user namespace helper: {}",
                std::io::Error::last_os_error()
            ),
            0 => {
                drop(ours);
                let ok = map_from_outside(&mut theirs, uid, gid, u, g);
                // SAFETY: leave the forked copy without running the parent's destructors.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            pid => Some(pid),
        },
        None => None,
    };
    drop(theirs);
    // SAFETY: single-threaded (start of main).
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
    {
        eprintln!(
            "strata: note: cannot create a user namespace ({e}); running as uid {uid}: RUN needs one"
        );
        return Ok(());
    }
    match helper {
        Some(pid) => {
            ours.write_all(b"1")
                .context("waking the user namespace helper")?;
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                bail!("newuidmap/newgidmap could not map the user namespace (see above)");
            }
        }
        None => {
            std::fs::write("/proc/self/setgroups", "deny")
                .context("writing /proc/self/setgroups")?;
            std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
                .context("writing /proc/self/uid_map")?;
            std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
                .context("writing /proc/self/gid_map")?;
            eprintln!(
                "strata: note: no range for {name:?} in /etc/subuid and /etc/subgid (or no \
                 newuidmap/newgidmap): building with your uid as the only one, so files in \
                 images keep a single owner"
            );
        }
    }
    Ok(())
}

/// In the helper: wait until the parent has unshared, then run newuidmap and newgidmap on
/// it: root is the user, ids 1..=COUNT the range.
fn map_from_outside(
    sync: &mut UnixStream,
    uid: u32,
    gid: u32,
    u: SubIdRange,
    g: SubIdRange,
) -> bool {
    let mut byte = [0u8; 1];
    if sync.read_exact(&mut byte).is_err() {
        return false;
    }
    let parent = rustix::process::getppid()
        .map(|p| p.as_raw_nonzero().get().to_string())
        .unwrap_or_default();
    let map = |tool: &str, id: u32, r: SubIdRange| {
        Command::new(tool)
            .args([&parent, "0", &id.to_string(), "1", "1"])
            .args([r.start.to_string(), r.count.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    };
    map("newuidmap", uid, u) && map("newgidmap", gid, g)
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_range_by_name_or_uid() {
        let file = "alice:100000:65536\n1001:165536:1000\nbob:0:0\n";
        let want = Some(SubIdRange {
            start: 100000,
            count: 65536,
        });
        assert_eq!(find_range(file, "alice", 1000), want);
        assert_eq!(
            find_range(file, "carol", 1001).map(|r| r.start),
            Some(165536)
        );
        assert_eq!(find_range(file, "bob", 1002), None);
        assert_eq!(find_range(file, "dave", 1003), None);
    }
}
