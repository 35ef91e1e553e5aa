//! What a step reads from the image below it without running anything: whether a path is a
//! directory, a parent directory's mode, owner and time, and small files (/etc/passwd and
//! /etc/group for `--chown`). COPY, ADD and WORKDIR ask these through [`ImageTree`], so
//! the image may be the unpacked snapshots ([`UnionFs`]) or the layer tars themselves
//! (`crate::below::Below`, for layers that have no snapshot yet).

use std::io;
use std::os::unix::fs::MetadataExt;

use crate::rootfs::UnionFs;

/// The kind of an entry of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatKind {
    Dir,
    File,
    Symlink,
    /// Devices, fifos, sockets.
    Other,
}

/// What [`ImageTree::stat_follow`] reports of an entry: what a layer step copies from a
/// parent directory it does not create itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: StatKind,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.kind == StatKind::Dir
    }
}

/// The read-only view of an image below a step, paths resolved as inside a chroot of it
/// (see `crate::rootfs`).
pub trait ImageTree {
    /// `path`, every symlink followed inside the image; `None` when it does not exist.
    fn stat_follow(&self, path: &str) -> io::Result<Option<Stat>>;

    /// The whole content of the regular file at `path` (symlinks followed); `None` when it
    /// is absent or not a regular file.
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>>;

    fn is_dir(&self, path: &str) -> io::Result<bool> {
        Ok(self.stat_follow(path)?.is_some_and(|s| s.is_dir()))
    }
}

/// The [`Stat`] of a file's metadata.
pub fn stat_of(metadata: &std::fs::Metadata) -> Stat {
    let ft = metadata.file_type();
    let kind = if ft.is_dir() {
        StatKind::Dir
    } else if ft.is_symlink() {
        StatKind::Symlink
    } else if ft.is_file() {
        StatKind::File
    } else {
        StatKind::Other
    };
    Stat {
        kind,
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        mtime: metadata.mtime(),
    }
}

impl ImageTree for UnionFs {
    fn stat_follow(&self, path: &str) -> io::Result<Option<Stat>> {
        Ok(self.lookup_follow(path)?.map(|f| stat_of(&f.metadata)))
    }

    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        UnionFs::read(self, path)
    }
}
