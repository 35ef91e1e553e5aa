//! Tar extraction refuses every escape kind and applies whiteouts in overlay form.
//! Each tar is crafted byte by byte: the `tar` crate's builder refuses `..` itself.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use store::extract::extract_tar;
use store::ErrorKind;

/// One raw ustar entry (name/linkname written verbatim, no validation).
fn entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(data.len() as u64);
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

struct World {
    _tmp: tempfile::TempDir,
    target: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("snap");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "keep me").unwrap();
    World {
        _tmp: tmp,
        target,
        outside,
    }
}

fn assert_outside_untouched(w: &World) {
    let mut names: Vec<String> = fs::read_dir(&w.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["secret"],
        "something was written outside the target"
    );
    assert_eq!(
        fs::read_to_string(w.outside.join("secret")).unwrap(),
        "keep me"
    );
}

fn refused(w: &World, tar: Vec<u8>, what: &str) {
    let err = extract_tar(&tar[..], &w.target, "test-layer")
        .expect_err(&format!("{what}: extraction should be refused"));
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}: {err}");
    assert!(
        err.to_string().contains("unsafe tar entry"),
        "{what}: {err}"
    );
    assert_outside_untouched(w);
}

#[test]
fn refuses_dotdot() {
    let w = world();
    let mut t = Vec::new();
    entry(&mut t, "../outside/evil", b'0', "", b"x");
    refused(&w, finish(t), "..");
    let mut t = Vec::new();
    entry(&mut t, "a/../../outside/evil", b'0', "", b"x");
    refused(&w, finish(t), "a/../..");
}

#[test]
fn refuses_absolute_names() {
    let w = world();
    let mut t = Vec::new();
    let abs = format!("{}/evil", w.outside.display());
    entry(&mut t, &abs, b'0', "", b"x");
    refused(&w, finish(t), "absolute");
}

#[test]
fn refuses_writing_through_a_planted_symlink() {
    let w = world();
    let mut t = Vec::new();
    // An absolute symlink is a fine entry (a container path)...
    entry(&mut t, "link", b'2', &w.outside.display().to_string(), b"");
    // ...but a later entry must not be written through it.
    entry(&mut t, "link/evil", b'0', "", b"x");
    refused(&w, finish(t), "through symlink");
    // And the same with a deeper path and a directory entry.
    let w = world();
    let mut t = Vec::new();
    entry(&mut t, "d/", b'5', "", b"");
    entry(
        &mut t,
        "d/link",
        b'2',
        &w.outside.display().to_string(),
        b"",
    );
    entry(&mut t, "d/link/sub/", b'5', "", b"");
    refused(&w, finish(t), "dir through symlink");
}

#[test]
fn refuses_relative_symlink_escape() {
    let w = world();
    let mut t = Vec::new();
    entry(&mut t, "esc", b'2', "../outside", b"");
    refused(&w, finish(t), "relative symlink out");
    let mut t = Vec::new();
    entry(&mut t, "a/", b'5', "", b"");
    entry(&mut t, "a/esc", b'2', "../../outside/secret", b"");
    refused(&w, finish(t), "nested relative symlink out");
}

#[test]
fn refuses_hardlink_escapes() {
    let w = world();
    let mut t = Vec::new();
    entry(&mut t, "hl", b'1', "../outside/secret", b"");
    refused(&w, finish(t), "hardlink ..");
    let w = world();
    let mut t = Vec::new();
    entry(&mut t, "sl", b'2', &w.outside.display().to_string(), b"");
    entry(&mut t, "hl", b'1', "sl/secret", b"");
    refused(&w, finish(t), "hardlink through symlink");
    assert_eq!(fs::metadata(w.outside.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn a_file_replacing_a_symlink_does_not_write_through_it() {
    let w = world();
    let mut t = Vec::new();
    entry(
        &mut t,
        "f",
        b'2',
        &format!("{}/secret", w.outside.display()),
        b"",
    );
    entry(&mut t, "f", b'0', "", b"new content");
    extract_tar(&finish(t)[..], &w.target, "test-layer").unwrap();
    assert_outside_untouched(&w);
    assert_eq!(
        fs::read_to_string(w.target.join("f")).unwrap(),
        "new content"
    );
}

#[test]
fn applies_whiteouts_in_overlay_form() {
    let w = world();
    let mut t = Vec::new();
    entry(&mut t, "etc/", b'5', "", b"");
    entry(&mut t, "etc/.wh.motd", b'0', "", b"");
    entry(&mut t, "opaque/", b'5', "", b"");
    entry(&mut t, "opaque/.wh..wh..opq", b'0', "", b"");
    entry(&mut t, "opaque/kept", b'0', "", b"k");
    entry(&mut t, "bin/sh", b'2', "/bin/busybox", b"");
    entry(&mut t, "bin/busybox", b'0', "", b"#!");
    entry(&mut t, "bin/hard", b'1', "bin/busybox", b"");
    let stats = extract_tar(&finish(t)[..], &w.target, "test-layer").unwrap();
    assert_eq!(stats.whiteouts, 2);
    let wh = fs::symlink_metadata(w.target.join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device(), "whiteout is a char device");
    assert_eq!(wh.rdev(), 0, "whiteout is 0:0");
    assert!(!w.target.join("etc/.wh.motd").exists());
    let opaque = xattr_get(&w.target.join("opaque"), "trusted.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    assert!(!w.target.join("opaque/.wh..wh..opq").exists());
    assert_eq!(
        fs::read_to_string(w.target.join("opaque/kept")).unwrap(),
        "k"
    );
    assert_eq!(
        fs::read_link(w.target.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(fs::metadata(w.target.join("bin/hard")).unwrap().nlink(), 2);
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

/// `.wh..` and `.wh...` would whiteout `.` and `..`: removing the directory or its parent.
#[test]
fn issue_12_refuses_whiteouts_of_dot_and_dotdot() {
    for name in [".wh..", ".wh...", "d/.wh..", "d/.wh..."] {
        let w = world();
        fs::create_dir_all(w.target.join("d")).unwrap();
        fs::write(w.target.join("d/kept"), "k").unwrap();
        let mut t = Vec::new();
        entry(&mut t, name, b'0', "", b"");
        refused(&w, finish(t), name);
        assert_eq!(
            fs::read_to_string(w.target.join("d/kept")).unwrap(),
            "k",
            "{name}: the layer's own files were removed"
        );
    }
}
