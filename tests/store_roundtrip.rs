//! import → images → save → load into a second root, both archive formats;
//! tag/rmi/inspect/history behave like docker. Issue 2.

mod util;

use util::test_dir::TestDir;

/// Like `docker import`, an imported image is ready to run: its layer is unpacked at
/// import (docker's layer store does the same), not inside the first build that uses it.
#[test]
fn import_unpacks_the_layer() {
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", Some(("etc/hello", b"hi\n")));
    t.strata(&["import", rootfs.to_str().unwrap(), "busybox:test"])
        .ok();
    let snapshots = snapshot_dirs(&t.root);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(
        std::fs::read(snapshots[0].join("fs/etc/hello")).expect("the imported file"),
        b"hi\n"
    );
}

/// The snapshot directories of a root (`ROOT/snapshots/<chain hex>`, no temps).
fn snapshot_dirs(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(root.join("snapshots"))
        .expect("snapshots/")
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

#[test]
fn import_images_save_load_round_trip() {
    let t = TestDir::new();
    let rootfs = t.busybox_rootfs("rootfs.tar", Some(("etc/hello", b"hi\n")));
    let id = t
        .strata(&["import", rootfs.to_str().unwrap(), "busybox:test"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import prints the image id: {id}"
    );
    t.strata(&["tag", "busybox:test", "localhost:5000/a/b:t"])
        .ok();
    let images = t.strata(&["images"]).ok();
    let lines: Vec<&str> = images.stdout.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{}", images.stdout);
    for col in ["TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(lines[0].contains(col), "{}", images.stdout);
    }
    assert_eq!(lines.len(), 3, "{}", images.stdout);
    assert!(images.stdout.contains(&id[7..19]), "{}", images.stdout);
    assert!(
        images.stdout.contains("localhost:5000/a/b"),
        "{}",
        images.stdout
    );

    for (format, file) in [("docker", "a.tar"), ("oci", "b.tar")] {
        let archive = t.path(file);
        t.strata(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "busybox:test",
            "localhost:5000/a/b:t",
        ])
        .ok();
        let root2 = t.path(&format!("root-{format}"));
        t.strata_on(&root2, &["load", "-i", archive.to_str().unwrap()])
            .ok()
            .stdout_has("Loaded image: busybox:test")
            .stdout_has("Loaded image: localhost:5000/a/b:t");
        assert_eq!(
            snapshot_dirs(&root2).len(),
            1,
            "{format}: load unpacks the layer, as docker load does"
        );
        let ids2 = t.strata_on(&root2, &["images", "-q", "--no-trunc"]).ok();
        assert_eq!(
            util::test_dir::ids(&ids2),
            vec![id.clone(), id.clone()],
            "{format}: same image id after the round trip"
        );
        t.strata_on(&root2, &["system", "verify"]).ok();
        // The loaded image unpacks to the same files.
        let inspect = t.strata_on(&root2, &["inspect", "busybox:test"]).ok();
        let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(v[0]["Id"], id.as_str());
        assert_eq!(
            v[0]["RepoTags"],
            serde_json::json!(["busybox:test", "localhost:5000/a/b:t"])
        );
    }

    // gzip'd archives load too.
    let gz = t.path("a.tar.gz");
    let raw = std::fs::read(t.path("a.tar")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &raw).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let root3 = t.path("root-gz");
    t.strata_on(&root3, &["load", "-i", gz.to_str().unwrap()])
        .ok();
    assert_eq!(
        util::test_dir::ids(&t.strata_on(&root3, &["images", "-q", "--no-trunc"]).ok()).len(),
        2
    );
}

#[test]
fn tag_rmi_and_dangling_like_docker() {
    let t = TestDir::new();
    let a = t.busybox_rootfs("a.tar", Some(("etc/v", b"1")));
    let b = t.busybox_rootfs("b.tar", Some(("etc/v", b"2")));
    t.strata(&["import", a.to_str().unwrap(), "app:1"]).ok();
    t.strata(&["tag", "app:1", "app:latest"]).ok();
    // Moving a tag leaves nothing dangling while another tag remains...
    t.strata(&["import", b.to_str().unwrap(), "app:latest"])
        .ok();
    assert_eq!(
        t.strata(&["images", "--filter", "dangling=true", "-q"])
            .ok()
            .stdout,
        ""
    );
    // ...and untagging the last name makes `rmi` delete the image record.
    t.strata(&["rmi", "app:1"])
        .ok()
        .stdout_has("Untagged: app:1")
        .stdout_has("Deleted: sha256:");
    let left = t.strata(&["images", "--format", "json"]).ok();
    assert_eq!(left.stdout.lines().count(), 1, "{}", left.stdout);
    let row: serde_json::Value = serde_json::from_str(left.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(row["Repository"], "app");
    assert_eq!(row["Tag"], "latest");
    // Moving the last tag away makes the old image dangling, shown as <none>.
    t.strata(&["import", a.to_str().unwrap(), "app:latest"])
        .ok();
    let dangling = t.strata(&["images", "--filter", "dangling=true"]).ok();
    assert!(dangling.stdout.contains("<none>"), "{}", dangling.stdout);
    assert_eq!(dangling.stdout.lines().count(), 2, "{}", dangling.stdout);
    // reference filter
    t.strata(&["tag", "app:latest", "other/x:2"]).ok();
    let only = t.strata(&["images", "--filter", "reference=other/*"]).ok();
    assert_eq!(only.stdout.lines().count(), 2, "{}", only.stdout);
    // An id named by two repositories needs -f.
    let id = t
        .strata(&["images", "-q", "other/x:2"])
        .ok()
        .stdout
        .trim()
        .to_string();
    t.strata(&["rmi", &id]).code(1).stderr_has("must be forced");
    t.strata(&["rmi", "-f", &id])
        .ok()
        .stdout_has("Untagged: other/x:2")
        .stdout_has("Deleted:");
    t.strata(&["rmi", "nosuch:tag"])
        .code(1)
        .stderr_has("no such image")
        .stderr_has("nosuch:tag");
    t.strata(&["system", "verify"]).ok();
}

#[test]
fn bad_reference_is_a_usage_error_naming_it() {
    let t = TestDir::new();
    let a = t.busybox_rootfs("a.tar", None);
    t.strata(&["import", a.to_str().unwrap(), "Bad:Ref"])
        .code(2)
        .stderr_has("Bad:Ref");
    t.strata(&["import", a.to_str().unwrap(), "ok:1"]).ok();
    t.strata(&["tag", "ok:1", "x:-bad"])
        .code(2)
        .stderr_has("x:-bad");
    t.strata(&["inspect", "x/UPPER"])
        .code(2)
        .stderr_has("x/UPPER");
    t.strata(&["images", "--filter", "bogus=1"]).code(2);
}

#[test]
fn history_and_inspect_show_the_config() {
    let t = TestDir::new();
    let a = t.busybox_rootfs("a.tar", None);
    t.strata(&[
        "import",
        "-m",
        "first import",
        "-c",
        "CMD [\"sh\"]",
        "-c",
        "ENV A=b",
        a.to_str().unwrap(),
        "h:1",
    ])
    .ok();
    let h = t.strata(&["history", "h:1"]).ok();
    assert!(h.stdout.starts_with("IMAGE"), "{}", h.stdout);
    assert!(h.stdout.contains("first import"), "{}", h.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&t.strata(&["inspect", "h:1"]).ok().stdout).unwrap();
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(v[0]["Config"]["Env"], serde_json::json!(["A=b"]));
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Manifest"]["schemaVersion"], 2);
}

#[test]
fn import_refuses_non_tar_input_and_leaves_store_unchanged() {
    let t = TestDir::new();
    let junk = t.path("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    t.strata(&["import", junk.to_str().unwrap(), "junk:1"])
        .code(1)
        .stderr_has("not a tar archive");
    assert_eq!(t.strata(&["images", "-q"]).ok().stdout, "");
    let ingest: Vec<_> = std::fs::read_dir(t.root.join("ingest")).unwrap().collect();
    assert!(ingest.is_empty(), "ingest left behind: {ingest:?}");
    let blobs: Vec<_> = std::fs::read_dir(t.root.join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "blobs left behind: {blobs:?}");
}
