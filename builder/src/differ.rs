//! Differ: an overlay upperdir (or a plain directory) → a layer tar.
//!
//! The tar is reproducible: entries in byte order of their paths (depth-first, a directory
//! before its children), no user/group names, no atime/ctime, mtimes in whole seconds and
//! clamped to `SOURCE_DATE_EPOCH` when given. Overlay's markers become OCI whiteouts:
//!
//! ```text
//! upperdir                              layer tar
//! a/x            (0:0 char device)   →  a/.wh.x           empty regular file, mode 0
//! d/   trusted.overlay.opaque=y      →  d/  then  d/.wh..wh..opq  (before d's children)
//! trusted.overlay.* xattrs           →  dropped (overlay's bookkeeping)
//! other xattrs                       →  PAX SCHILY.xattr.<name>
//! second name of a hardlinked file   →  hardlink entry to the first name
//! ```
//!
//! Paths over ustar's limits, long link targets and xattrs go in PAX extended headers.
//! The tar bytes go to the caller's writer, which hashes (and maybe compresses) them on
//! the way: the differ never re-reads what it wrote (docs/design.md §4.1).

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Clamp every mtime to this many seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

/// What went into the tar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries, not counting PAX headers.
    pub entries: u64,
    pub whiteouts: u64,
    /// Bytes of regular-file content.
    pub content_bytes: u64,
    /// Every byte written to `out`, trailer included.
    pub tar_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("reading {path} for the layer")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the layer tar (entry {name})")]
    Write {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} changed size while being written to the layer (expected {expected} bytes); don't modify a snapshot while its layer is written")]
    Changed { path: PathBuf, expected: u64 },
}

pub type Result<T> = std::result::Result<T, DiffError>;

/// Write the layer tar of an overlay upperdir to `out`; see the module docs.
/// Pass `&mut writer` to keep the writer.
pub fn write_layer(upperdir: &Path, out: impl Write, opts: &DiffOptions) -> Result<LayerStats> {
    write_tree(upperdir, out, opts, true)
}

/// Write a plain directory (a COPY result) as a layer: the same tar, but char devices and
/// xattrs are taken literally (no whiteout or opaque conversion).
pub fn write_dir_layer(dir: &Path, out: impl Write, opts: &DiffOptions) -> Result<LayerStats> {
    write_tree(dir, out, opts, false)
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
    move |source| DiffError::Read {
        path: path.to_path_buf(),
        source,
    }
}

struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_tree(
    dir: &Path,
    out: impl Write,
    opts: &DiffOptions,
    is_overlay: bool,
) -> Result<LayerStats> {
    let mut tar = tar::Builder::new(Counting {
        inner: out,
        count: 0,
    });
    let mut stats = LayerStats::default();
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut buf = vec![0u8; COPY_BUFFER];
    for entry in WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| DiffError::Read {
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e.into(),
        })?;
        let path = entry.path();
        let rel = path
            .strip_prefix(dir)
            .expect("walkdir yields paths under its root");
        let name = rel.to_string_lossy().into_owned();
        let md = entry.metadata().map_err(|e| DiffError::Read {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let w = |source| DiffError::Write {
            name: name.clone(),
            source,
        };
        if is_overlay && is_whiteout(&md) {
            let parent = rel.parent().map(|p| p.to_string_lossy().into_owned());
            let base = rel
                .file_name()
                .map(|b| b.to_string_lossy())
                .unwrap_or_default();
            let wh = match parent.filter(|p| !p.is_empty()) {
                Some(p) => format!("{p}/{WHITEOUT_PREFIX}{base}"),
                None => format!("{WHITEOUT_PREFIX}{base}"),
            };
            append_empty(&mut tar, &wh, &md, opts).map_err(w)?;
            stats.entries += 1;
            stats.whiteouts += 1;
            continue;
        }
        let xattrs = if is_overlay {
            list_xattrs(path)
        } else {
            all_xattrs(path)
        }
        .map_err(read_err(path))?;
        let ft = md.file_type();
        let mut header = base_header(&md, opts);
        let mut pax: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        let mut tar_name = name.clone();
        if ft.is_dir() {
            tar_name.push('/');
            header.set_entry_type(tar::EntryType::Directory);
        } else if md.nlink() > 1 && links.contains_key(&(md.dev(), md.ino())) {
            let first = &links[&(md.dev(), md.ino())];
            header.set_entry_type(tar::EntryType::Link);
            set_link(&mut header, first, &mut pax);
        } else if ft.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(md.len());
        } else if ft.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = std::fs::read_link(path).map_err(read_err(path))?;
            set_link(&mut header, &target.to_string_lossy(), &mut pax);
        } else if ft.is_char_device() || ft.is_block_device() {
            header.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = md.rdev();
            header.set_device_major(libc::major(rdev)).map_err(w)?;
            header.set_device_minor(libc::minor(rdev)).map_err(w)?;
        } else if ft.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
        } else {
            // Sockets have no tar form; docker and containerd skip them too.
            continue;
        }
        if md.nlink() > 1 && !ft.is_dir() {
            links
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| name.clone());
        }
        set_name(&mut header, &tar_name, &mut pax);
        append_pax(&mut tar, &tar_name, &pax).map_err(w)?;
        header.set_cksum();
        if header.entry_type() == tar::EntryType::Regular {
            let file = std::fs::File::open(path).map_err(read_err(path))?;
            append_file(tar.get_mut(), &header, file, md.len(), &mut buf).map_err(|e| match e {
                FileError::Read(source) => DiffError::Read {
                    path: path.to_path_buf(),
                    source,
                },
                FileError::Write(source) => DiffError::Write {
                    name: name.clone(),
                    source,
                },
                FileError::Changed => DiffError::Changed {
                    path: path.to_path_buf(),
                    expected: md.len(),
                },
            })?;
            stats.content_bytes += md.len();
        } else {
            tar.append(&header, io::empty()).map_err(w)?;
        }
        stats.entries += 1;
        if is_overlay && ft.is_dir() && is_opaque(path).map_err(read_err(path))? {
            let opq = format!("{name}/{OPAQUE_WHITEOUT}");
            append_empty(&mut tar, &opq, &md, opts).map_err(|source| DiffError::Write {
                name: opq.clone(),
                source,
            })?;
            stats.entries += 1;
            stats.whiteouts += 1;
        }
    }
    let counting = tar.into_inner().map_err(|source| DiffError::Write {
        name: "(trailer)".into(),
        source,
    })?;
    stats.tar_bytes = counting.count;
    Ok(stats)
}

/// Size of the buffer file content is read through: a file of a few hundred KiB is one
/// read (the tar crate's `append` reads 8 KiB at a time).
const COPY_BUFFER: usize = 256 << 10;

enum FileError {
    Read(io::Error),
    Write(io::Error),
    /// The file does not have the `len` bytes its header says.
    Changed,
}

/// Appends a regular file's entry to the tar stream `out` as `tar::Builder::append`
/// does (header, `len` bytes of content, zeros to the next 512-byte block), reading
/// through `buf`.
fn append_file(
    out: &mut impl Write,
    header: &tar::Header,
    file: std::fs::File,
    len: u64,
    buf: &mut [u8],
) -> std::result::Result<(), FileError> {
    out.write_all(header.as_bytes()).map_err(FileError::Write)?;
    let mut file = io::Read::take(file, len);
    let mut copied = 0u64;
    loop {
        let n = match io::Read::read(&mut file, buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FileError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(FileError::Write)?;
        copied += n as u64;
    }
    if copied != len {
        return Err(FileError::Changed);
    }
    let pad = (512 - len % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])
        .map_err(FileError::Write)
}

fn clamp_mtime(md: &Metadata, opts: &DiffOptions) -> u64 {
    let mut t = md.mtime();
    if let Some(epoch) = opts.source_date_epoch {
        t = t.min(epoch);
    }
    t.max(0) as u64
}

fn base_header(md: &Metadata, opts: &DiffOptions) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(clamp_mtime(md, opts));
    h.set_size(0);
    h
}

/// A whiteout or opaque marker: an empty regular file owned like the thing it marks.
fn append_empty<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    md: &Metadata,
    opts: &DiffOptions,
) -> io::Result<()> {
    let mut h = base_header(md, opts);
    h.set_mode(0);
    h.set_entry_type(tar::EntryType::Regular);
    let mut pax = Vec::new();
    set_name(&mut h, name, &mut pax);
    append_pax(tar, name, &pax)?;
    h.set_cksum();
    tar.append(&h, io::empty())
}

/// Put `name` in the ustar name (≤ 100 bytes) or prefix/name split (≤ 155/100); else a
/// PAX `path` record carries it and the header keeps a truncated copy.
fn set_name(h: &mut tar::Header, name: &str, pax: &mut Vec<(String, Vec<u8>)>) {
    let bytes = name.as_bytes();
    let ustar = h.as_ustar_mut().expect("new_ustar headers are ustar");
    let fill = |dst: &mut [u8], src: &[u8]| {
        dst.iter_mut().for_each(|b| *b = 0);
        dst[..src.len()].copy_from_slice(src);
    };
    if bytes.len() <= 100 {
        fill(&mut ustar.name, bytes);
        fill(&mut ustar.prefix, b"");
        return;
    }
    // Split at a '/' so that the prefix fits in 155 and the rest in 100 (no trailing '/'
    // may be split off: the directory marker stays in the name).
    let split = bytes
        .iter()
        .enumerate()
        .filter(|(i, b)| {
            **b == b'/' && *i <= 155 && bytes.len() - i - 1 <= 100 && *i + 1 < bytes.len()
        })
        .map(|(i, _)| i)
        .next();
    match split {
        Some(i) if bytes.len() - i - 1 > 0 => {
            fill(&mut ustar.prefix, &bytes[..i]);
            fill(&mut ustar.name, &bytes[i + 1..]);
        }
        _ => {
            fill(&mut ustar.name, &bytes[..100]);
            fill(&mut ustar.prefix, b"");
            pax.push(("path".into(), bytes.to_vec()));
        }
    }
}

fn set_link(h: &mut tar::Header, target: &str, pax: &mut Vec<(String, Vec<u8>)>) {
    let bytes = target.as_bytes();
    let ustar = h.as_ustar_mut().expect("new_ustar headers are ustar");
    ustar.linkname.iter_mut().for_each(|b| *b = 0);
    let n = bytes.len().min(100);
    ustar.linkname[..n].copy_from_slice(&bytes[..n]);
    if bytes.len() > 100 {
        pax.push(("linkpath".into(), bytes.to_vec()));
    }
}

/// Write a PAX extended header (`x`) for the next entry, if it has any records.
fn append_pax<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    records: &[(String, Vec<u8>)],
) -> io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut data = Vec::new();
    for (key, value) in records {
        // "%d %s=%s\n" where %d counts the whole record, its own digits included.
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    let base = name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name);
    let pax_name: String = format!("PaxHeaders.0/{base}").chars().take(100).collect();
    let mut ignored = Vec::new();
    set_name(&mut h, &pax_name, &mut ignored);
    h.set_cksum();
    tar.append(&h, data.as_slice())
}

/// An overlay whiteout: a character device with device number 0:0.
pub fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Whether `dir` carries `trusted.overlay.opaque=y`.
pub fn is_opaque(dir: &Path) -> io::Result<bool> {
    let mut buf = [0u8; 4];
    match rustix::fs::lgetxattr(dir, store::overlay_xattr::opaque(), &mut buf[..]) {
        Ok(n) => Ok(&buf[..n] == b"y"),
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => Ok(false),
        Err(e) if e == rustix::io::Errno::RANGE => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Make `path` an overlay whiteout (0:0 character device, mode 0).
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )?;
    Ok(())
}

/// Mark `dir` opaque for overlay.
pub fn set_opaque(dir: &Path) -> io::Result<()> {
    rustix::fs::lsetxattr(
        dir,
        store::overlay_xattr::opaque(),
        b"y",
        rustix::fs::XattrFlags::empty(),
    )?;
    Ok(())
}

/// The xattrs of `path` (not following symlinks), sorted by name, without overlay's own
/// `trusted.overlay.*` bookkeeping.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut all = all_xattrs(path)?;
    all.retain(|(k, _)| !k.starts_with(store::overlay_xattr::prefix()));
    Ok(all)
}

fn all_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    let mut out = Vec::new();
    for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(raw).into_owned();
        let len = match rustix::fs::lgetxattr_query(path, name.as_str()) {
            Ok(len) => len,
            Err(e) if e == rustix::io::Errno::NODATA => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..])?;
        value.truncate(got);
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, u64, Vec<u8>)> {
        let mut ar = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let h = e.header().clone();
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            out.push((
                name,
                h.entry_type(),
                h.mode().expect("mode"),
                h.mtime().expect("mtime"),
                data,
            ));
        }
        out
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_oci_markers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let up = tmp.path();
        std::fs::create_dir_all(up.join("etc")).expect("mkdir");
        make_whiteout(&up.join("etc/passwd")).expect("whiteout");
        std::fs::create_dir(up.join("dir")).expect("mkdir");
        set_opaque(&up.join("dir")).expect("opaque");
        std::fs::write(up.join("dir/-first"), "a").expect("write");
        std::fs::write(up.join("x"), "hi\n").expect("write");
        std::os::unix::fs::symlink("x", up.join("y")).expect("symlink");
        std::fs::hard_link(up.join("x"), up.join("z")).expect("link");
        let mut buf = Vec::new();
        let stats = write_layer(
            up,
            &mut buf,
            &DiffOptions {
                source_date_epoch: Some(7),
            },
        )
        .expect("layer");
        let got: Vec<(String, tar::EntryType)> =
            entries(&buf).into_iter().map(|(n, t, ..)| (n, t)).collect();
        use tar::EntryType as T;
        let want = [
            ("dir/", T::Directory),
            ("dir/.wh..wh..opq", T::Regular),
            ("dir/-first", T::Regular),
            ("etc/", T::Directory),
            ("etc/.wh.passwd", T::Regular),
            ("x", T::Regular),
            ("y", T::Symlink),
            ("z", T::Link),
        ];
        let want: Vec<(String, T)> = want.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        assert_eq!(got, want);
        assert_eq!(stats.whiteouts, 2);
        assert_eq!(stats.entries, 8);
        assert_eq!(stats.tar_bytes, buf.len() as u64);
        assert!(entries(&buf).iter().all(|e| e.3 == 7), "mtimes clamped");
    }

    #[test]
    fn long_names_links_and_xattrs_use_pax() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let up = tmp.path();
        let long_dir = "d".repeat(120);
        let long_file = format!("{long_dir}/{}", "f".repeat(150));
        std::fs::create_dir(up.join(&long_dir)).expect("mkdir");
        std::fs::write(up.join(&long_file), "content").expect("write");
        let target = "t".repeat(140);
        std::os::unix::fs::symlink(&target, up.join("link")).expect("symlink");
        rustix::fs::lsetxattr(
            up.join(&long_file).as_path(),
            "user.note",
            b"v",
            rustix::fs::XattrFlags::empty(),
        )
        .expect("xattr (user xattrs need ext4/tmpfs)");
        let mut buf = Vec::new();
        write_layer(up, &mut buf, &DiffOptions::default()).expect("layer");
        let mut ar = tar::Archive::new(buf.as_slice());
        let mut names = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            if name.ends_with(&"f".repeat(150)) {
                let exts: Vec<(String, Vec<u8>)> = e
                    .pax_extensions()
                    .expect("pax")
                    .expect("has pax")
                    .map(|x| {
                        let x = x.expect("record");
                        (x.key().expect("key").to_string(), x.value_bytes().to_vec())
                    })
                    .collect();
                assert!(
                    exts.contains(&("SCHILY.xattr.user.note".to_string(), b"v".to_vec())),
                    "{exts:?}"
                );
            }
            if name == "link" {
                assert_eq!(
                    e.link_name()
                        .expect("link")
                        .expect("some")
                        .to_string_lossy(),
                    target
                );
            }
            names.push(name);
        }
        assert_eq!(
            names,
            [format!("{long_dir}/"), long_file, "link".to_string()]
        );
    }

    #[test]
    fn same_tree_gives_same_bytes_with_source_date_epoch() {
        let make = || {
            let tmp = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(tmp.path().join("b")).expect("mkdir");
            std::fs::write(tmp.path().join("b/file"), "same").expect("write");
            std::fs::write(tmp.path().join("a"), "x").expect("write");
            let mut buf = Vec::new();
            write_layer(
                tmp.path(),
                &mut buf,
                &DiffOptions {
                    source_date_epoch: Some(1_000),
                },
            )
            .expect("layer");
            buf
        };
        let first = make();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(first, make());
    }

    #[test]
    fn plain_dir_layer_keeps_char_devices_literal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        make_whiteout(&tmp.path().join("node")).expect("mknod");
        let mut buf = Vec::new();
        write_dir_layer(tmp.path(), &mut buf, &DiffOptions::default()).expect("layer");
        let e = entries(&buf);
        assert_eq!((e[0].0.as_str(), e[0].1), ("node", tar::EntryType::Char));
    }

    /// File content is copied through a buffer, not `tar::Builder::append`: every size
    /// around a 512-byte block and above the buffer reads back whole, and the layer is
    /// what `append` writes, byte for byte.
    #[test]
    fn file_content_and_padding_match_the_tar_crate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sizes = [0usize, 1, 511, 512, 513, COPY_BUFFER + 700];
        for (i, n) in sizes.iter().enumerate() {
            let content: Vec<u8> = (0..*n).map(|k| (k * 7 + i) as u8).collect();
            std::fs::write(tmp.path().join(format!("f{i}")), content).expect("write");
        }
        let opts = DiffOptions {
            source_date_epoch: Some(1_000),
        };
        let mut layer = Vec::new();
        write_dir_layer(tmp.path(), &mut layer, &opts).expect("layer");
        let mut want = tar::Builder::new(Vec::new());
        for (i, _) in sizes.iter().enumerate() {
            let path = tmp.path().join(format!("f{i}"));
            let md = std::fs::symlink_metadata(&path).expect("stat");
            let mut h = base_header(&md, &opts);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            set_name(&mut h, &format!("f{i}"), &mut Vec::new());
            h.set_cksum();
            want.append(&h, std::fs::File::open(&path).expect("open"))
                .expect("append");
        }
        assert!(
            layer == want.into_inner().expect("finish"),
            "layer bytes differ"
        );
        let mut archive = tar::Archive::new(&layer[..]);
        for (i, entry) in archive.entries().expect("entries").enumerate() {
            let mut entry = entry.expect("entry");
            let mut got = Vec::new();
            io::Read::read_to_end(&mut entry, &mut got).expect("read");
            assert_eq!(got.len(), sizes[i], "f{i}");
            assert!(
                got.iter().enumerate().all(|(k, b)| *b == (k * 7 + i) as u8),
                "f{i}"
            );
        }
    }
}
