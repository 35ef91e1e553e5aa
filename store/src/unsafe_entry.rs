//! Why a tar entry cannot be extracted inside its root whatever the root holds
//! (`extract::check_entry`, and the extractor's own refusals on disk).

/// The reason in `StoreError::UnsafeEntry`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeReason {
    /// The name itself: absolute, a `..` component, not UTF-8 (`extract::safe_components`).
    #[error("{0}")]
    Name(&'static str),
    #[error("whiteout of {0:?} is not a file name")]
    Whiteout(String),
    #[error("symlink to {0:?} points outside the layer root")]
    SymlinkOutside(String),
    #[error("hard link target {target:?}: {reason}")]
    HardLinkTarget {
        target: String,
        reason: &'static str,
    },
    #[error("hard link to the layer root")]
    HardLinkToRoot,
    #[error("hard link target {0:?} goes through a symlink")]
    HardLinkThroughSymlink(String),
    #[error("a parent directory is a symlink or not a directory; refusing to follow it")]
    SymlinkParent,
}
