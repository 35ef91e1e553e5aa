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

    // As the README says: `skopeo inspect oci:ROOT:TAG` with the name as typed.
    for name in ["busybox:oci", "localhost:5000/team/app:v1"] {
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
        .args(["inspect", &format!("oci:{root}:busybox:oci")])
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
    assert_eq!(names, ["busybox:oci", "localhost:5000/team/app:v1"]);

    // umoci can unpack what we wrote (it checks every digest on the way).
    let bundle = t.path("bundle");
    let out = Command::new(&umoci)
        .args([
            "unpack",
            "--image",
            &format!("{root}:busybox:oci"),
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

/// Runs a tool and fails the test with its stderr when it fails.
fn tool(program: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn index_entries(root: &std::path::Path) -> Vec<serde_json::Value> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

/// See: issue 13. The root is an OCI layout other tools write into too: an image that
/// skopeo or umoci put there is listed, kept by every prune that does not select it, and
/// its index entry survives strata's own rewrites of `index.json` byte for byte.
#[test]
fn issue_13_images_other_tools_write_into_the_root_are_adopted_and_kept() {
    let skopeo = require_tool("skopeo", "skopeo");
    let umoci = require_tool("umoci", "umoci");
    let t = TestDir::new();
    let root = t.root.to_str().unwrap().to_string();
    let rootfs = t.busybox_rootfs("rootfs.tar", None);
    t.strata(&["import", rootfs.to_str().unwrap(), "busybox:oci"])
        .ok();
    let doomed = t.busybox_rootfs("doomed.tar", Some(("doomed", b"d")));
    t.strata(&[
        "import",
        "-c",
        "LABEL strata-test=doomed",
        doomed.to_str().unwrap(),
        "doomed:1",
    ])
    .ok();

    // skopeo: an image from another layout, new content for this root.
    let other = t.path("other-root");
    let src = t.busybox_rootfs("src.tar", Some(("from-skopeo", b"s")));
    t.strata_on(&other, &["import", src.to_str().unwrap(), "src:1"])
        .ok();
    tool(
        &skopeo,
        &[
            "copy",
            &format!("oci:{}:src:1", other.display()),
            &format!("oci:{root}:by-skopeo"),
        ],
    );
    // umoci: an image of its own making.
    tool(&umoci, &["new", "--image", &format!("{root}:by-umoci")]);
    let file = t.path("hello.txt");
    std::fs::write(&file, "hello from umoci\n").unwrap();
    tool(
        &umoci,
        &[
            "insert",
            "--image",
            &format!("{root}:by-umoci"),
            file.to_str().unwrap(),
            "/hello.txt",
        ],
    );
    let foreign: Vec<serde_json::Value> = index_entries(&t.root)
        .into_iter()
        .filter(|e| {
            let name = e["annotations"]["org.opencontainers.image.ref.name"].as_str();
            matches!(name, Some("by-skopeo" | "by-umoci"))
        })
        .collect();
    assert_eq!(foreign.len(), 2, "{:?}", index_entries(&t.root));

    // strata sees them and rewrites index.json without losing them.
    t.strata(&["tag", "busybox:oci", "other:1"]).ok();
    let images = t.strata(&["images"]).ok();
    for repo in ["by-skopeo", "by-umoci", "busybox", "other", "doomed"] {
        assert!(
            images
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{repo} "))),
            "{repo} missing from:\n{}",
            images.stdout
        );
    }
    t.strata(&[
        "image",
        "prune",
        "-af",
        "--filter",
        "label=strata-test=doomed",
    ])
    .ok()
    .stdout_has("deleted: ");
    t.strata(&["system", "prune", "-f"]).ok();
    t.strata(&["rmi", "other:1"]).ok();

    let after = index_entries(&t.root);
    for e in &foreign {
        assert!(after.contains(e), "{e} was dropped or changed: {after:?}");
    }
    assert!(!t.strata(&["images"]).ok().stdout.contains("doomed"));
    t.strata(&["system", "verify"]).ok();
    // Intact: skopeo copies every blob out, umoci unpacks with every digest checked.
    tool(
        &skopeo,
        &[
            "copy",
            &format!("oci:{root}:by-skopeo"),
            &format!("dir:{}", t.path("out").display()),
        ],
    );
    tool(
        &umoci,
        &[
            "unpack",
            "--image",
            &format!("{root}:by-umoci"),
            t.path("bundle").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(t.path("bundle/rootfs/hello.txt")).unwrap(),
        "hello from umoci\n"
    );
    // Two repositories with the same tag stay apart, each found by its own name.
    t.strata(&["tag", "busybox:oci", "ghcr.io/team/busybox:oci"])
        .ok();
    for name in ["busybox:oci", "ghcr.io/team/busybox:oci"] {
        tool(&skopeo, &["inspect", &format!("oci:{root}:{name}")]);
    }
}

/// See: issue 13. The same image loaded as a docker-archive and then as an OCI archive is
/// one image: one row, and `image prune` has nothing to delete.
#[test]
fn issue_13_one_image_loaded_in_two_forms_is_one_row() {
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", None);
    t.strata(&["import", rootfs.to_str().unwrap(), "busybox:x"])
        .ok();
    let docker = t.path("docker.tar");
    t.strata(&["save", "-o", docker.to_str().unwrap(), "busybox:x"])
        .ok();
    let oci = t.path("oci.tar");
    t.strata(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        "busybox:x",
    ])
    .ok();
    let root2 = t.path("root2");
    t.strata_on(&root2, &["load", "-i", docker.to_str().unwrap()])
        .ok();
    t.strata_on(&root2, &["load", "-i", oci.to_str().unwrap()])
        .ok()
        .stdout_has("Loaded image: busybox:x");
    let ids = t.strata_on(&root2, &["images", "-q"]).ok().stdout;
    assert_eq!(ids.lines().count(), 1, "one row:\n{ids}");
    let out = t.strata_on(&root2, &["image", "prune", "-f"]).ok();
    assert!(!out.stdout.contains("deleted:"), "{}", out.stdout);
    assert_eq!(
        t.strata_on(&root2, &["images", "-q"]).ok().stdout,
        ids,
        "the image stays"
    );
    t.strata_on(&root2, &["system", "verify"]).ok();
}
