//! Safe tar extraction into a snapshot directory, in overlayfs form.
//!
//! Never writes outside `target`:
//! - names that are absolute or contain `..` are refused (moby refuses them too);
//! - every parent directory is opened one component at a time with
//!   `O_NOFOLLOW | O_DIRECTORY`, so a symlink planted by an earlier entry cannot
//!   redirect a later one (it fails with ELOOP/ENOTDIR and the layer is refused);
//! - a symlink whose target, joined to its directory, leaves the root is refused
//!   (moby's `invalid symlink` rule; absolute targets are container paths and join
//!   under the root, so they are fine);
//! - a hard link must name an entry inside the root, found the same no-follow way.
//!
//! The directories of the last parent opened stay open ([`Extractor::open_dirs`]): a
//! layer's entries come grouped by directory, so most entries open no directory at all.
//! Those descriptors were opened the no-follow way; the only thing that could make one
//! stale, removing a directory this extraction made (a later entry replacing it), drops
//! them all.
//!
//! OCI whiteouts become overlay whiteouts: `.wh.NAME` → a 0:0 character device
//! `NAME`; `.wh..wh..opq` → `trusted.overlay.opaque=y` on its directory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::error::{Result, StoreError};
use crate::unsafe_entry::UnsafeReason;

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// What one extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExtractStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub bytes: u64,
}

/// Extracts the plain tar stream `tar` into the existing directory `target`.
/// `layer` names the source in errors. On error, `target` is left partly written:
/// callers extract into a temp directory and remove it.
pub fn extract_tar(tar: impl Read, target: &Path, layer: &str) -> Result<ExtractStats> {
    let root = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StoreError::io("opening extraction target", target)(e.into()))?;
    let mut x = Extractor {
        root: Rc::new(root),
        open_dirs: Vec::new(),
        target: target.to_path_buf(),
        layer: layer.to_string(),
        stats: ExtractStats::default(),
        dir_times: Vec::new(),
        is_root: rustix::process::geteuid().is_root(),
        buf: vec![0; COPY_BUFFER],
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| x.bad_archive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| x.bad_archive(e.to_string()))?;
        x.entry(&mut entry)?;
    }
    // Directory times last: writing children changes them.
    for (rel, mtime) in std::mem::take(&mut x.dir_times) {
        if let Ok(fd) = x.open_dir(&rel, false) {
            let _ = rustix::fs::futimens(&fd, &times(mtime));
        }
    }
    Ok(x.stats)
}

struct Extractor {
    root: Rc<OwnedFd>,
    /// The directories of the last path opened under the root, outermost first, each
    /// opened no-follow from the one before: a cache of `open_dir`.
    open_dirs: Vec<(String, Rc<OwnedFd>)>,
    target: PathBuf,
    layer: String,
    stats: ExtractStats,
    dir_times: Vec<(Vec<String>, u64)>,
    is_root: bool,
    /// Between an entry's content and its file: large enough that a file of a few
    /// hundred KiB is one read and one write.
    buf: Vec<u8>,
}

/// Splits a tar name into safe components, or says why it is unsafe.
/// `./a/b/` → ["a", "b"]; "" and "." → [] (the root itself).
pub fn safe_components(name: &str) -> std::result::Result<Vec<String>, &'static str> {
    if name.starts_with('/') {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(s) => match s.to_str() {
                Some(s) => out.push(s.to_string()),
                None => return Err("name is not UTF-8"),
            },
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

/// Why entry `name` (of tar type `kind`, link target `link`) could not be extracted inside
/// its root whatever the root holds: an absolute name or one that climbs with `..`, a
/// whiteout of `.` or `..` (it would remove the directory or its parent), a symlink whose
/// target leaves the root, a hard link to a name that does. Extraction checks each entry;
/// `import` and `load` check every entry up front, so such a layer never enters the store.
pub fn check_entry(
    name: &str,
    kind: tar::EntryType,
    link: &str,
) -> std::result::Result<(), UnsafeReason> {
    let comps = safe_components(name).map_err(UnsafeReason::Name)?;
    let Some((base, parent)) = comps.split_last() else {
        return Ok(());
    };
    if base != OPAQUE_WHITEOUT {
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            if matches!(hidden, "" | "." | "..") {
                return Err(UnsafeReason::Whiteout(hidden.to_string()));
            }
        }
    }
    match kind {
        tar::EntryType::Symlink if symlink_escapes(parent, link) => {
            Err(UnsafeReason::SymlinkOutside(link.to_string()))
        }
        tar::EntryType::Link => match safe_components(link.trim_start_matches('/')) {
            Err(reason) => Err(UnsafeReason::HardLinkTarget {
                target: link.to_string(),
                reason,
            }),
            Ok(t) if t.is_empty() => Err(UnsafeReason::HardLinkToRoot),
            Ok(_) => Ok(()),
        },
        _ => Ok(()),
    }
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Extractor {
    fn bad_archive(&self, reason: String) -> StoreError {
        StoreError::InvalidArchive {
            path: PathBuf::from(&self.layer),
            reason,
        }
    }

    fn unsafe_entry(&self, entry: &str, reason: UnsafeReason) -> StoreError {
        StoreError::UnsafeEntry {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            reason,
        }
    }

    fn io_err(&self, op: &'static str, rel: &[String], e: impl Into<io::Error>) -> StoreError {
        StoreError::Io {
            op,
            path: self.target.join(rel.join("/")),
            source: e.into(),
        }
    }

    /// Opens the directory at `rel` under the root without following any symlink;
    /// with `create`, missing directories are made (0755, like docker). The components
    /// `rel` shares with the last directory opened are not opened again.
    fn open_dir(
        &mut self,
        rel: &[String],
        create: bool,
    ) -> std::result::Result<Rc<OwnedFd>, rustix::io::Errno> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let shared = self
            .open_dirs
            .iter()
            .zip(rel)
            .take_while(|((name, _), c)| name == *c)
            .count();
        self.open_dirs.truncate(shared);
        for c in &rel[shared..] {
            let fd = match self.open_dirs.last() {
                Some((_, fd)) => fd,
                None => &self.root,
            };
            let next = match rustix::fs::openat(fd, c.as_str(), flags, Mode::empty()) {
                Ok(next) => next,
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(fd, c.as_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    rustix::fs::openat(fd, c.as_str(), flags, Mode::empty())?
                }
                Err(e) => return Err(e),
            };
            self.open_dirs.push((c.clone(), Rc::new(next)));
        }
        Ok(match self.open_dirs.last() {
            Some((_, fd)) => fd.clone(),
            None => self.root.clone(),
        })
    }

    /// The parent's fd for an entry, refusing any symlink on the way.
    fn parent_fd(&mut self, name: &str, parent: &[String]) -> Result<Rc<OwnedFd>> {
        let opened = self.open_dir(parent, true);
        opened.map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                self.unsafe_entry(name, UnsafeReason::SymlinkParent)
            }
            e => self.io_err("opening parent directory", parent, e),
        })
    }

    /// Removes whatever this layer already put at `name` (duplicate entries:
    /// the last one wins, like tar), unless both are directories.
    fn clear(
        &mut self,
        dir: &OwnedFd,
        parent: &[String],
        name: &str,
        keep_dir: bool,
    ) -> Result<()> {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.io_err("stat", parent, e)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir && keep_dir {
            return Ok(());
        }
        if is_dir {
            // A cached descriptor may be this directory or one below it.
            self.open_dirs.clear();
            // No symlink on the way (parent opened no-follow); remove_dir_all does
            // not follow symlinks inside.
            let mut p = self.target.clone();
            for c in parent {
                p.push(c);
            }
            p.push(name);
            std::fs::remove_dir_all(&p).map_err(StoreError::io("removing", &p))
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| self.io_err("removing", parent, e))
        }
    }

    /// Runs `make`, which creates `name` in `dir`; when something is there already (a
    /// duplicate entry: the last one wins, like tar), removes it and runs `make` again.
    /// Creating first spares a stat of every new name.
    fn replacing<T>(
        &mut self,
        dir: &OwnedFd,
        parent: &[String],
        name: &str,
        make: impl Fn() -> rustix::io::Result<T>,
    ) -> Result<rustix::io::Result<T>> {
        match make() {
            Err(rustix::io::Errno::EXIST) => {
                self.clear(dir, parent, name, false)?;
                Ok(make())
            }
            other => Ok(other),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header().clone();
        let kind = header.entry_type();
        check_entry(&raw, kind, &link_name(entry)).map_err(|r| self.unsafe_entry(&raw, r))?;
        let comps =
            safe_components(&raw).map_err(|r| self.unsafe_entry(&raw, UnsafeReason::Name(r)))?;
        self.stats.entries += 1;
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // "." — the snapshot root keeps its own mode.
        };
        let dir = self.parent_fd(&raw, parent)?;

        if name == OPAQUE_WHITEOUT {
            self.stats.whiteouts += 1;
            return rustix::fs::fsetxattr(
                &dir,
                crate::overlay_xattr::opaque(),
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| self.io_err("setting the overlay opaque xattr on", parent, e));
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            self.stats.whiteouts += 1;
            let made = self.replacing(&dir, parent, hidden, || {
                rustix::fs::mknodat(
                    &dir,
                    hidden,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
            })?;
            return made.map_err(|e| self.io_err("creating whiteout", parent, e));
        }

        let mode = Mode::from_raw_mode(header.mode().unwrap_or(0o644) & 0o7777);
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0);
        let xattrs = pax_xattrs(entry);
        let mut rel = parent.to_vec();
        rel.push(name.clone());
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let mut made = rustix::fs::mkdirat(&dir, name.as_str(), mode);
                if made == Err(rustix::io::Errno::EXIST) {
                    // A directory there stays (its entries too); anything else goes.
                    self.clear(&dir, parent, name, true)?;
                    made = rustix::fs::mkdirat(&dir, name.as_str(), mode);
                }
                match made {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(self.io_err("creating directory", &rel, e)),
                }
                let opened = self.open_dir(&rel, false);
                let fd = opened.map_err(|e| self.io_err("opening directory", &rel, e))?;
                self.own_and_mode(&fd, &rel, uid, gid, mode)?;
                self.set_xattrs(&fd, &rel, &xattrs)?;
                self.dir_times.push((rel, mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let made = self.replacing(&dir, parent, name, || {
                    rustix::fs::openat(
                        &dir,
                        name.as_str(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                })?;
                let fd = made.map_err(|e| self.io_err("creating file", &rel, e))?;
                let mut file = File::from(fd);
                let n = copy_content(entry, &mut file, &mut self.buf)
                    .map_err(|e| self.io_err("writing file", &rel, e))?;
                self.stats.bytes += n;
                self.own_and_mode(&file, &rel, uid, gid, mode)?;
                self.set_xattrs(&file, &rel, &xattrs)?;
                let _ = rustix::fs::futimens(&file, &times(mtime));
            }
            T::Symlink => {
                let target = link_name(entry);
                let made = self.replacing(&dir, parent, name, || {
                    rustix::fs::symlinkat(target.as_str(), &dir, name.as_str())
                })?;
                made.map_err(|e| self.io_err("creating symlink", &rel, e))?;
                self.chown_at(&dir, &rel, uid, gid)?;
                let _ = rustix::fs::utimensat(
                    &dir,
                    name.as_str(),
                    &times(mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
            }
            T::Link => {
                let target = link_name(entry);
                let tcomps = safe_components(target.trim_start_matches('/')).map_err(|reason| {
                    let target = target.clone();
                    self.unsafe_entry(&raw, UnsafeReason::HardLinkTarget { target, reason })
                })?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.unsafe_entry(&raw, UnsafeReason::HardLinkToRoot));
                };
                let opened = self.open_dir(tparent, false);
                let tdir = opened.map_err(|e| match e {
                    rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => self
                        .unsafe_entry(&raw, UnsafeReason::HardLinkThroughSymlink(target.clone())),
                    e => self.io_err("opening hard link target directory", tparent, e),
                })?;
                let made = self.replacing(&dir, parent, name, || {
                    rustix::fs::linkat(&tdir, tname.as_str(), &dir, name.as_str(), AtFlags::empty())
                })?;
                made.map_err(|e| self.io_err("creating hard link", &rel, e))?;
            }
            T::Char | T::Block | T::Fifo => {
                let ft = match kind {
                    T::Char => FileType::CharacterDevice,
                    T::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                let made = self.replacing(&dir, parent, name, || {
                    rustix::fs::mknodat(&dir, name.as_str(), ft, mode, dev)
                })?;
                made.map_err(|e| self.io_err("creating device node", &rel, e))?;
                self.chown_at(&dir, &rel, uid, gid)?;
                let _ = rustix::fs::chmodat(&dir, name.as_str(), mode, AtFlags::empty());
            }
            // PAX/GNU metadata entries are consumed by the tar crate; anything else
            // (e.g. Solaris ACLs) carries nothing a container can use.
            _ => {}
        }
        Ok(())
    }

    fn own_and_mode(
        &self,
        fd: impl AsFd,
        rel: &[String],
        uid: u32,
        gid: u32,
        mode: Mode,
    ) -> Result<()> {
        if let Err(e) = rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        ) {
            if self.is_root || e != rustix::io::Errno::PERM {
                return Err(self.io_err("chown", rel, e));
            }
        }
        // After chown: chown clears setuid/setgid bits.
        rustix::fs::fchmod(&fd, mode).map_err(|e| self.io_err("chmod", rel, e))
    }

    fn chown_at(&self, dir: &OwnedFd, rel: &[String], uid: u32, gid: u32) -> Result<()> {
        let name = rel.last().map(String::as_str).unwrap_or(".");
        match rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Err(rustix::io::Errno::PERM) if !self.is_root => Ok(()),
            Err(e) => Err(self.io_err("chown", rel, e)),
            Ok(()) => Ok(()),
        }
    }

    fn set_xattrs(
        &self,
        fd: impl AsFd,
        rel: &[String],
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        for (k, v) in xattrs {
            match rustix::fs::fsetxattr(&fd, k.as_str(), v, rustix::fs::XattrFlags::empty()) {
                Ok(()) => {}
                // Unprivileged or unsupported namespaces: docker skips these too.
                Err(rustix::io::Errno::PERM | rustix::io::Errno::NOTSUP) => {}
                Err(e) => return Err(self.io_err("setting xattr", rel, e)),
            }
        }
        Ok(())
    }
}

/// Size of [`Extractor::buf`].
const COPY_BUFFER: usize = 256 << 10;

/// Copies `from` to `to` through `buf`; returns the bytes copied.
fn copy_content(from: &mut impl Read, to: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn link_name<R: Read>(entry: &tar::Entry<R>) -> String {
    entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `SCHILY.xattr.*` PAX records (how docker and GNU tar carry xattrs).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Ok(k) = ext.key() {
                if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                    out.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    out
}

/// moby's rule: join the link's directory and its target lexically; an absolute
/// target joins under the root. Escaping means climbing above the root.
pub fn symlink_escapes(parent: &[String], target: &str) -> bool {
    let mut depth: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        parent.iter().map(String::as_str).collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    // Absolute targets clamp at the root (as the kernel does in a
                    // chroot); relative ones that climb out are refused, like moby.
                    if !target.starts_with('/') {
                        return true;
                    }
                }
            }
            c => depth.push(c),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_table() {
        let cases: &[(&str, std::result::Result<&[&str], &str>)] = &[
            ("a/b", Ok(&["a", "b"])),
            ("./a/b/", Ok(&["a", "b"])),
            (".", Ok(&[])),
            ("a/./b", Ok(&["a", "b"])),
            ("/etc/passwd", Err("absolute path")),
            ("../x", Err("`..` component")),
            ("a/../../x", Err("`..` component")),
            ("a/..", Err("`..` component")),
        ];
        for (input, want) in cases {
            let got = safe_components(input);
            match want {
                Ok(w) => assert_eq!(
                    got.unwrap(),
                    w.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    "{input}"
                ),
                Err(e) => assert_eq!(got.unwrap_err(), *e, "{input}"),
            }
        }
    }

    #[test]
    fn symlink_escape_table() {
        let p = |s: &str| -> Vec<String> {
            s.split('/')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        let cases = [
            ("", "busybox", false),
            ("bin", "busybox", false),
            ("bin", "../usr/bin/env", false),
            ("", "/etc/passwd", false),
            ("a/b", "/../../../../etc", false),
            ("", "..", true),
            ("a", "../..", true),
            ("a/b", "../../../etc/passwd", true),
            ("a", "x/../../..", true),
        ];
        for (parent, target, want) in cases {
            assert_eq!(
                symlink_escapes(&p(parent), target),
                want,
                "{parent} -> {target}"
            );
        }
    }
}
