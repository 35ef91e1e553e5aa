//! The extended attributes overlayfs keeps its own state in (the opaque-directory mark).
//!
//! As real root they are `trusted.overlay.*`. Inside a user namespace (a rootless build)
//! `trusted.*` cannot be written, so overlayfs is mounted with `userxattr` (kernel ≥ 5.11)
//! and uses `user.overlay.*`; snapshots extracted and diffed there carry the same mark
//! under that name. One process uses one of the two, decided once from its uid map.

use std::sync::OnceLock;

/// `trusted.overlay.opaque`, or `user.overlay.opaque` in a user namespace.
pub fn opaque() -> &'static str {
    if is_in_user_namespace() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// The prefix of every overlay attribute (`trusted.overlay.` or `user.overlay.`).
pub fn prefix() -> &'static str {
    if is_in_user_namespace() {
        "user.overlay."
    } else {
        "trusted.overlay."
    }
}

/// Whether this process runs in a user namespace other than the initial one: its uid map
/// is not the identity over all 2^32 ids. Read once.
pub fn is_in_user_namespace() -> bool {
    static IN_USERNS: OnceLock<bool> = OnceLock::new();
    *IN_USERNS.get_or_init(|| match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    })
}
