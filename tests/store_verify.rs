//! `system verify` catches a flipped byte in a blob and a tag whose blobs are gone;
//! a load of a corrupt archive is refused and leaves the store as it was (issue 2).

mod util;

use std::fs;

use util::test_dir::TestDir;

fn blob_path(t: &TestDir, digest: &str) -> std::path::PathBuf {
    t.root
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn verify_catches_a_flipped_byte() {
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", None);
    t.strata(&["import", rootfs.to_str().unwrap(), "v:1"]).ok();
    t.strata(&["system", "verify"]).ok().stdout_has(": ok");
    let v: serde_json::Value =
        serde_json::from_str(&t.strata(&["inspect", "v:1"]).ok().stdout).unwrap();
    let layer = v[0]["Manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let p = blob_path(&t, &layer);
    let mut bytes = fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&p, &bytes).unwrap();
    t.strata(&["system", "verify"])
        .code(1)
        .stdout_has(&format!("FAULT blob {layer}"))
        .stdout_has("content hashes to");
}

#[test]
fn verify_catches_a_missing_blob() {
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", None);
    let id = t
        .strata(&["import", rootfs.to_str().unwrap(), "v:2"])
        .ok()
        .stdout
        .trim()
        .to_string();
    fs::remove_file(blob_path(&t, &id)).unwrap();
    t.strata(&["system", "verify"])
        .code(1)
        .stdout_has(&format!("config blob {id} is missing"));
}

#[test]
fn load_refuses_archive_with_wrong_digest_and_changes_nothing() {
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", None);
    t.strata(&["import", rootfs.to_str().unwrap(), "keep:1"])
        .ok();
    let other = t.busybox_rootfs("other.tar", Some(("etc/x", b"x")));
    let root2 = t.path("root2");
    t.strata_on(&root2, &["import", other.to_str().unwrap(), "bad:1"])
        .ok();
    let archive = t.path("a.tar");
    t.strata_on(&root2, &["save", "-o", archive.to_str().unwrap(), "bad:1"])
        .ok();
    // Flip one byte inside the layer's content (past the tar headers).
    let mut bytes = fs::read(&archive).unwrap();
    let needle = b"ELF";
    let at = bytes
        .windows(3)
        .position(|w| w == needle)
        .expect("busybox ELF header in the archive");
    bytes[at + 1000] ^= 0xff;
    fs::write(&archive, &bytes).unwrap();
    let before: Vec<_> = fs::read_dir(t.root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    t.strata(&["load", "-i", archive.to_str().unwrap()])
        .code(1)
        .stderr_has("holds content with digest");
    let after: Vec<_> = fs::read_dir(t.root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        before.len(),
        after.len(),
        "a refused load left blobs behind"
    );
    assert_eq!(t.strata(&["images", "-q"]).ok().stdout.lines().count(), 1);
    t.strata(&["system", "verify"]).ok();
}
