//! `load` of a multi-platform image (an image index) from an OCI archive: the whole index
//! as one image, as docker's containerd image store loads it; `load --platform` for one
//! platform's image; tampered and partial archives. The image is built `FROM scratch` with
//! COPY only, so both platforms build without emulation.

mod util;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use util::test_dir::{ids, TestDir};

/// A root holding `multi:1`, an index of linux/amd64 and linux/arm64 images each holding its
/// own 2 MiB file that does not compress (so its layer is streamed to the store at load, not
/// kept in memory), saved as an OCI archive at `multi.tar`. Returns the archive.
fn saved_multi_platform(t: &TestDir) -> PathBuf {
    let ctx = t.path("ctx");
    fs::create_dir_all(&ctx).expect("mkdir ctx");
    // Each platform gets its own file, so the platforms share no layer.
    for (arch, seed) in [
        ("amd64", 0x9e37_79b9_7f4a_7c15_u64),
        ("arm64", 0x2545_f491_4f6c_dd1d),
    ] {
        let mut x = seed;
        let noise: Vec<u8> = (0..2 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(ctx.join(format!("noise-{arch}")), noise).expect("write noise");
    }
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nCOPY noise-${TARGETARCH} /noise\n",
    )
    .expect("write");
    let ctx = ctx.to_str().expect("utf-8 path");
    t.strata(&[
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
        "-t",
        "multi:1",
        ctx,
    ])
    .ok();
    let archive = t.path("multi.tar");
    t.strata(&[
        "save",
        "--format",
        "oci",
        "-o",
        archive.to_str().expect("utf-8 path"),
        "multi:1",
    ])
    .ok();
    archive
}

/// Every entry of the tar at `path`: name and content.
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(fs::File::open(path).expect("open archive"));
    let mut out = Vec::new();
    for e in tar.entries().expect("tar") {
        let mut e = e.expect("tar entry");
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path().expect("entry name").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).expect("read entry");
        out.push((name, bytes));
    }
    out
}

/// Writes `entries` as a tar at `path`.
fn write_tar(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(fs::File::create(path).expect("create tar"));
    for (name, bytes) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &bytes[..]).expect("append");
    }
    b.finish().expect("finish tar");
}

fn json_entry(entries: &[(String, Vec<u8>)], name: &str) -> serde_json::Value {
    let bytes = &entries
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not in the archive"))
        .1;
    serde_json::from_slice(bytes).expect("json entry")
}

fn blob_name(digest: &serde_json::Value) -> String {
    let d = digest.as_str().expect("digest");
    format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))
}

/// The digest `index.json` of the OCI archive at `path` lists (its one entry).
fn archive_top_digest(path: &Path) -> String {
    let index = json_entry(&entries(path), "index.json");
    let list = index["manifests"].as_array().expect("manifests");
    assert_eq!(list.len(), 1, "{index}");
    list[0]["digest"].as_str().expect("digest").to_string()
}

/// The entry of `platform` (`os/arch`) in the archive's image index, and the layer blob
/// name of its manifest.
fn platform_entry(entries: &[(String, Vec<u8>)], platform: &str) -> (serde_json::Value, String) {
    let top = json_entry(entries, "index.json");
    let index = json_entry(entries, &blob_name(&top["manifests"][0]["digest"]));
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or_default(),
                m["platform"]["architecture"].as_str().unwrap_or_default()
            ) == platform
        })
        .unwrap_or_else(|| panic!("no {platform} in {index}"))
        .clone();
    let manifest = json_entry(entries, &blob_name(&entry["digest"]));
    let layer = blob_name(&manifest["layers"][0]["digest"]);
    (entry, layer)
}

/// The blobs under a root (none when it has no `blobs/` yet).
fn blobs(root: &Path) -> Vec<String> {
    match fs::read_dir(root.join("blobs/sha256")) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn inspect(t: &TestDir, root: &Path, image: &str) -> serde_json::Value {
    let out = t.strata_on(root, &["inspect", image]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
    v[0].clone()
}

/// The platforms (`os/arch`) an inspected image index lists, sorted.
fn platforms_of(inspected: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = inspected["Manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let p = &m["Descriptor"]["platform"];
                    format!(
                        "{}/{}",
                        p["os"].as_str().unwrap_or_default(),
                        p["architecture"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// save → load into a fresh root keeps the whole index: one image with the same IMAGE
/// ID, both platforms, and a second save writes the very same index.
#[test]
fn save_load_keeps_every_platform() {
    let t = TestDir::new();
    let archive = saved_multi_platform(&t);
    let id = ids(&t.strata(&["images", "-q", "--no-trunc"]).ok());
    assert_eq!(id.len(), 1, "{id:?}");
    assert_eq!(
        platforms_of(&inspect(&t, &t.root, "multi:1")),
        ["linux/amd64", "linux/arm64"]
    );

    let root2 = t.path("root2");
    t.strata_on(&root2, &["load", "-i", archive.to_str().unwrap()])
        .ok()
        .stdout_has("Loaded image: multi:1");
    let loaded = ids(&t.strata_on(&root2, &["images", "-q", "--no-trunc"]).ok());
    assert_eq!(loaded, id, "one image, the same IMAGE ID as the saved one");
    let inspected = inspect(&t, &root2, "multi:1");
    assert_eq!(inspected["Id"], id[0].as_str(), "{inspected}");
    assert_eq!(
        platforms_of(&inspected),
        ["linux/amd64", "linux/arm64"],
        "{inspected}"
    );
    t.strata_on(&root2, &["system", "verify"]).ok();

    let again = t.path("again.tar");
    t.strata_on(
        &root2,
        &[
            "save",
            "--format",
            "oci",
            "-o",
            again.to_str().unwrap(),
            "multi:1",
        ],
    )
    .ok();
    assert_eq!(archive_top_digest(&again), archive_top_digest(&archive));
    assert_eq!(archive_top_digest(&archive), id[0]);
}

/// `load --platform linux/arm64` loads that platform's image alone, as a single-platform
/// image; a platform the archive lacks fails and records nothing.
#[test]
fn load_platform_loads_only_that_platform() {
    let t = TestDir::new();
    let archive = saved_multi_platform(&t);
    let (arm64, _) = platform_entry(&entries(&archive), "linux/arm64");

    let root2 = t.path("root2");
    t.strata_on(
        &root2,
        &[
            "load",
            "--platform",
            "linux/arm64",
            "-i",
            archive.to_str().unwrap(),
        ],
    )
    .ok()
    .stdout_has("Loaded image: multi:1");
    let inspected = inspect(&t, &root2, "multi:1");
    assert_eq!(inspected["Architecture"], "arm64", "{inspected}");
    assert_eq!(
        inspected["Descriptor"]["digest"], arm64["digest"],
        "{inspected}"
    );
    assert!(inspected["Manifests"].is_null(), "{inspected}");
    assert_eq!(
        t.strata_on(&root2, &["images", "-q"])
            .ok()
            .stdout
            .lines()
            .count(),
        1
    );

    let root3 = t.path("root3");
    t.strata_on(
        &root3,
        &[
            "load",
            "--platform",
            "linux/s390x",
            "-i",
            archive.to_str().unwrap(),
        ],
    )
    .code(1)
    .stderr_has("requested platform(s) ([linux/s390x]) not found")
    .stderr_has("linux/amd64, linux/arm64");
    assert_eq!(
        t.strata_on(&root3, &["images", "-q"]).ok().stdout,
        "",
        "nothing recorded"
    );
    assert_eq!(blobs(&root3), Vec::<String>::new(), "no blob left");
}

/// An archive whose arm64 layer blob was changed is refused whole: the fresh root is
/// left with no image and no blob of the load.
#[test]
fn load_refuses_a_tampered_platform_layer() {
    let t = TestDir::new();
    let archive = saved_multi_platform(&t);
    let mut all = entries(&archive);
    let (_, layer) = platform_entry(&all, "linux/arm64");
    let blob = all
        .iter_mut()
        .find(|(n, _)| *n == layer)
        .expect("arm64 layer in the archive");
    let middle = blob.1.len() / 2;
    blob.1[middle] ^= 0xff;
    let tampered = t.path("tampered.tar");
    write_tar(&tampered, &all);

    let root2 = t.path("root2");
    t.strata_on(&root2, &["load", "-i", tampered.to_str().unwrap()])
        .code(1)
        .stderr_has(&layer);
    assert_eq!(t.strata_on(&root2, &["images", "-q"]).ok().stdout, "");
    assert_eq!(blobs(&root2), Vec::<String>::new(), "no blob left");
}

/// An archive that lacks one platform's layer loads this host's platform alone (a record
/// of the index would name blobs the store does not have).
#[test]
fn load_of_a_partial_archive_keeps_the_host_platform() {
    let host = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        _ => return,
    };
    let other = match host {
        "linux/amd64" => "linux/arm64",
        _ => "linux/amd64",
    };
    let t = TestDir::new();
    let archive = saved_multi_platform(&t);
    let mut all = entries(&archive);
    let (host_entry, _) = platform_entry(&all, host);
    let (_, other_layer) = platform_entry(&all, other);
    all.retain(|(n, _)| *n != other_layer);
    let partial = t.path("partial.tar");
    write_tar(&partial, &all);

    let root2 = t.path("root2");
    t.strata_on(&root2, &["load", "-i", partial.to_str().unwrap()])
        .ok()
        .stdout_has("Loaded image: multi:1");
    let inspected = inspect(&t, &root2, "multi:1");
    assert_eq!(
        inspected["Descriptor"]["digest"], host_entry["digest"],
        "{inspected}"
    );
    assert!(inspected["Manifests"].is_null(), "{inspected}");
    assert!(!blobs(&root2).contains(&other_layer.trim_start_matches("blobs/sha256/").to_string()));
}
