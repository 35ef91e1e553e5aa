//! The root is an OCI image layout that real OCI tools read (issue 2):
//! `skopeo inspect oci:ROOT:REF` and `umoci ls --layout ROOT`. Also our
//! docker-archive is read by skopeo's docker-archive transport, and an archive
//! written by skopeo loads into strata.

mod util;

use std::process::Command;

use util::require_tool;
use util::test_dir::TestDir;

#[test]
fn skopeo_and_umoci_read_our_root() {
    let skopeo = require_tool("skopeo", "skopeo");
    let umoci = require_tool("umoci", "umoci");
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", None);
    let id = t
        .strata(&["import", rootfs.to_str().unwrap(), "busybox:oci"])
        .ok()
        .stdout
        .trim()
        .to_string();
    t.strata(&["tag", "busybox:oci", "localhost:5000/team/app:v1"])
        .ok();
    let root = t.root.to_str().unwrap();

    for name in [
        "docker.io/library/busybox:oci",
        "localhost:5000/team/app:v1",
    ] {
        let out = Command::new(&skopeo)
            .args(["inspect", "--config", &format!("oci:{root}:{name}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect oci:{root}:{name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        assert_eq!(cfg["os"], "linux");
    }
    // skopeo's manifest digest and our inspect agree.
    let ours: serde_json::Value =
        serde_json::from_str(&t.strata(&["inspect", "busybox:oci"]).ok().stdout).unwrap();
    assert_eq!(ours[0]["Id"], id.as_str());
    let out = Command::new(&skopeo)
        .args([
            "inspect",
            &format!("oci:{root}:docker.io/library/busybox:oci"),
        ])
        .output()
        .unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs["Digest"], ours[0]["Descriptor"]["digest"]);

    let out = Command::new(&umoci)
        .args(["ls", "--layout", root])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "docker.io/library/busybox:oci",
            "localhost:5000/team/app:v1"
        ]
    );

    // umoci can unpack what we wrote (it checks every digest on the way).
    let bundle = t.path("bundle");
    let out = Command::new(&umoci)
        .args([
            "unpack",
            "--image",
            &format!("{root}:docker.io/library/busybox:oci"),
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
}

#[test]
fn archives_cross_with_skopeo() {
    let skopeo = require_tool("skopeo", "skopeo");
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", None);
    t.strata(&["import", rootfs.to_str().unwrap(), "busybox:x"])
        .ok();
    let ours = t.path("ours.tar");
    t.strata(&["save", "-o", ours.to_str().unwrap(), "busybox:x"])
        .ok();
    // skopeo reads our docker-archive and writes its own...
    let theirs = t.path("theirs.tar");
    let out = Command::new(&skopeo)
        .args([
            "copy",
            &format!("docker-archive:{}:busybox:x", ours.display()),
            &format!("docker-archive:{}:copied/by-skopeo:1", theirs.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...which we load.
    let root2 = t.path("root2");
    t.strata_on(&root2, &["load", "-i", theirs.to_str().unwrap()])
        .ok()
        .stdout_has("Loaded image: copied/by-skopeo:1");
    let oci = t.path("theirs-oci.tar");
    let out = Command::new(&skopeo)
        .args([
            "copy",
            &format!("docker-archive:{}:busybox:x", ours.display()),
            &format!("oci-archive:{}:docker.io/library/viaoci:2", oci.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy to oci-archive failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.strata_on(&root2, &["load", "-i", oci.to_str().unwrap()])
        .ok()
        .stdout_has("Loaded image: viaoci:2");
    t.strata_on(&root2, &["system", "verify"]).ok();
}
