//! The extended attributes overlayfs keeps its own state in (the opaque-directory mark).
//!
//! As real root they are `trusted.overlay.*`. Writing `trusted.*` takes CAP_SYS_ADMIN in
//! the initial user namespace, which two kinds of build lack:
//!
//! - a rootless build (a user namespace): overlayfs is mounted with `userxattr` (kernel ≥
//!   5.11) and uses `user.overlay.*`;
//! - root in an unprivileged container (docker's default capabilities): overlay cannot
//!   mount at all, RUN uses the copy snapshotter, and snapshots carry the mark as
//!   `user.overlay.*`, which the copy snapshotter and the differ read back.
//!
//! Snapshots extracted and diffed there carry the same mark under that name. One process
//! uses one of the two, decided once.

use std::sync::OnceLock;

/// `trusted.overlay.opaque`, or `user.overlay.opaque` (see the module doc).
pub fn opaque() -> &'static str {
    if uses_user_xattrs() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// The prefix of every overlay attribute (`trusted.overlay.` or `user.overlay.`).
pub fn prefix() -> &'static str {
    if uses_user_xattrs() {
        "user.overlay."
    } else {
        "trusted.overlay."
    }
}

/// Whether overlay state lives in `user.overlay.*`: in a user namespace, or without
/// CAP_SYS_ADMIN (which `trusted.*` needs). Read once.
pub fn uses_user_xattrs() -> bool {
    static USES_USER: OnceLock<bool> = OnceLock::new();
    *USES_USER.get_or_init(|| is_in_user_namespace() || !has_cap_sys_admin())
}

/// Whether this process runs in a user namespace other than the initial one: its uid map
/// is not the identity over all 2^32 ids. Decides overlay's `userxattr` mount option.
/// Read once.
pub fn is_in_user_namespace() -> bool {
    static IN_USERNS: OnceLock<bool> = OnceLock::new();
    *IN_USERNS.get_or_init(|| match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    })
}

/// Whether CAP_SYS_ADMIN is in this process's effective set.
pub fn has_cap_sys_admin() -> bool {
    use rustix::thread::{capabilities, CapabilitySet};
    capabilities(None).is_ok_and(|sets| sets.effective.contains(CapabilitySet::SYS_ADMIN))
}
