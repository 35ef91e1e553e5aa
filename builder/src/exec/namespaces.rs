//! Which namespaces a RUN gets, and the `unshare` call.
//!
//! Mount, pid, ipc and uts always (docs/design.md §5); net unless the step shares the host's
//! network (`--network host`). No user namespace: strata
//! runs as root and the layer's files must carry real ownership.
//!
//! A new pid namespace applies to the *children* of the caller, so the sandbox forks
//! twice: the first child unshares, the second becomes pid 1 and mounts /proc.

use std::io;

use rustix::thread::UnshareFlags;

use super::Network;

pub fn unshare_flags(network: Network) -> UnshareFlags {
    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    if network != Network::Host {
        flags |= UnshareFlags::NEWNET;
    }
    flags
}

/// Unshare `flags` in the calling (single-threaded, freshly forked) process.
pub fn unshare(flags: UnshareFlags) -> io::Result<()> {
    // SAFETY: called in a forked child that runs no other threads, so no thread can
    // observe its file-descriptor table or fs state changing under it.
    unsafe { rustix::thread::unshare_unsafe(flags) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_network_shares_the_net_namespace() {
        assert!(!unshare_flags(Network::Host).contains(UnshareFlags::NEWNET));
        assert!(unshare_flags(Network::None).contains(UnshareFlags::NEWNET));
        assert!(unshare_flags(Network::Isolated).contains(UnshareFlags::NEWNET));
        assert!(unshare_flags(Network::Host).contains(UnshareFlags::NEWPID | UnshareFlags::NEWNS));
    }
}
