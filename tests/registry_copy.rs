//! `strata image copy SRC DST` against real `docker-registry`s: every digest at DST is the
//! one at SRC (skopeo reads both), an index goes whole (platform manifests and the
//! attestation manifest), `--platform` picks one manifest, the same registry mounts
//! instead of copying, the store root is left exactly as it was, and a copy between two
//! registries that each break 30% of the requests still lands (issue 19).

mod registry_common;
mod util;

use std::collections::BTreeMap;
use std::path::Path;

use registry_common::{
    oci_image, random_bytes, sha256_hex, skopeo_copy, skopeo_digest, write_index, FaultProxy,
    Image, Registry, RegistryOptions, Strata,
};

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).expect("writing blob");
    (format!("sha256:{hex}"), bytes.len())
}

/// An index of an amd64 and an arm64 image and a BuildKit-style attestation manifest
/// for the amd64 one, pushed with skopeo as `REGISTRY/multi:1`. Returns the index
/// digest and the three manifest digests.
fn seed_index(reg: &Registry) -> (String, Vec<String>) {
    let layout = tempfile::tempdir().expect("tempdir");
    let amd = oci_image(
        layout.path(),
        &[random_bytes(300_000, 1), b"amd64\n".to_vec()],
        "amd64",
        None,
    );
    let arm = oci_image(layout.path(), &[b"arm64\n".to_vec()], "arm64", None);
    let (statement, statement_size) = put_blob(
        layout.path(),
        br#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2"}"#,
    );
    let (config, config_size) = put_blob(layout.path(), b"{}");
    let attestation = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": statement, "size": statement_size,
                    "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}],
    }))
    .expect("json");
    let (attestation_digest, attestation_size) = put_blob(layout.path(), &attestation);
    let entry = |img: &Image, arch: &str| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest, "size": img.manifest.len(), "platform": {"os": "linux", "architecture": arch}});
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&amd, "amd64"), entry(&arm, "arm64"),
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": attestation_digest, "size": attestation_size,
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd.manifest_digest}}],
    }))
    .expect("json");
    let (index_digest, index_size) = put_blob(layout.path(), &index);
    write_index(
        layout.path(),
        &[serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        })],
    );
    skopeo_copy(
        &["--all"],
        &format!("oci:{}:multi", layout.path().display()),
        &format!("docker://{}/multi:1", reg.addr),
    );
    (
        index_digest,
        vec![amd.manifest_digest, arm.manifest_digest, attestation_digest],
    )
}

/// Every file under `root` with its size and modification time.
fn tree(root: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the store root") {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                dirs.push(entry.path());
            }
            let modified = meta.modified().expect("mtime");
            out.insert(entry.path().display().to_string(), (meta.len(), modified));
        }
    }
    out
}

#[test]
fn copies_an_index_whole_keeping_every_digest_and_storing_nothing() {
    let a = Registry::start(RegistryOptions::default());
    let b = Registry::start(RegistryOptions::default());
    let (index_digest, children) = seed_index(&a);
    let s = Strata::new();
    s.run(&["images"]).ok();
    let before = tree(&s.root);

    let out = s
        .run(&[
            "image",
            "copy",
            &format!("{}/multi:1", a.addr),
            &format!("{}/copied:2", b.addr),
        ])
        .ok();
    assert_eq!(out.pushed_digest(), index_digest, "{out}");
    assert!(out.stdout.contains("Pushed"), "{out}");
    assert_eq!(skopeo_digest(&format!("{}/copied:2", b.addr)), index_digest);
    for child in &children {
        assert_eq!(
            &skopeo_digest(&format!("{}/copied@{child}", b.addr)),
            child,
            "child manifest {child} not copied"
        );
    }
    // Every blob readable and verified: skopeo copies the whole index back out.
    let back = tempfile::tempdir().expect("tempdir");
    skopeo_copy(
        &["--all"],
        &format!("docker://{}/copied:2", b.addr),
        &format!("oci:{}:x", back.path().display()),
    );

    // Again to the same repository: nothing to send. `-q` prints the digest alone.
    let out = s
        .run(&[
            "image",
            "cp",
            "-q",
            &format!("{}/multi:1", a.addr),
            &format!("{}/copied:3", b.addr),
        ])
        .ok();
    assert_eq!(out.stdout.trim(), index_digest, "{out}");

    // One platform out of the index: DST holds that platform's manifest.
    let out = s
        .run(&[
            "image",
            "copy",
            "--platform",
            "linux/arm64",
            &format!("{}/multi:1", a.addr),
            &format!("{}/arm:1", b.addr),
        ])
        .ok();
    assert_eq!(out.pushed_digest(), children[1], "{out}");
    assert_eq!(skopeo_digest(&format!("{}/arm:1", b.addr)), children[1]);
    let out = s
        .run(&[
            "image",
            "copy",
            "--platform",
            "linux/s390x",
            &format!("{}/multi:1", a.addr),
            &format!("{}/none:1", b.addr),
        ])
        .fails();
    assert!(
        out.stderr.contains("no matching manifest for linux/s390x"),
        "{out}"
    );

    // Another repository of the same registry: every blob mounted, none sent.
    let out = s
        .run(&[
            "image",
            "copy",
            &format!("{}/multi:1", a.addr),
            &format!("{}/mounted:1", a.addr),
        ])
        .ok();
    assert!(out.stdout.contains("Mounted from multi"), "{out}");
    assert!(!out.stdout.contains(": Pushed"), "{out}");
    assert_eq!(
        skopeo_digest(&format!("{}/mounted:1", a.addr)),
        index_digest
    );

    // An image the source does not have: docker's wording, exit 1, nothing written.
    let out = s
        .run(&[
            "image",
            "copy",
            &format!("{}/nothing:1", a.addr),
            &format!("{}/nothing:1", b.addr),
        ])
        .fails();
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("not found: manifest unknown"), "{out}");

    assert_eq!(
        tree(&s.root),
        before,
        "image copy wrote into the store root"
    );
}

#[test]
fn a_copy_between_two_faulty_registries_lands_whole() {
    let a = Registry::start(RegistryOptions::default());
    let b = Registry::start(RegistryOptions::default());
    let layout = tempfile::tempdir().expect("tempdir");
    let img = registry_common::oci_layout(
        layout.path(),
        "t",
        &[
            random_bytes(3 << 20, 21),
            b"compressible line of text\n".repeat(40_000),
            random_bytes(200_000, 22),
        ],
    );
    skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/app:1", a.addr),
    );
    let from = FaultProxy::start(&a.addr, 30);
    let to = FaultProxy::start(&b.addr, 30);
    let s = Strata::new();
    for i in 0..3 {
        // A new repository each time: every blob streamed again.
        let out = s.run(&[
            "image",
            "copy",
            &format!("{}/app:1", from.addr),
            &format!("{}/copy{i}:1", to.addr),
        ]);
        assert_eq!(
            out.status,
            Some(0),
            "copy {i} failed (source {}; destination {}):\n{out}",
            from.summary(),
            to.summary()
        );
        assert_eq!(out.pushed_digest(), img.manifest_digest, "copy {i}");
        let back = tempfile::tempdir().expect("tempdir");
        skopeo_copy(
            &[],
            &format!("docker://{}/copy{i}:1", b.addr),
            &format!("oci:{}:x", back.path().display()),
        );
        assert_eq!(
            skopeo_digest(&format!("{}/copy{i}:1", b.addr)),
            img.manifest_digest
        );
    }
    eprintln!("source: {}; destination: {}", from.summary(), to.summary());
    assert!(
        from.faults() + to.faults() >= 5,
        "the proxies injected too few faults: {} / {}",
        from.summary(),
        to.summary()
    );
    assert!(
        !s.root.exists(),
        "image copy made a store root at {}",
        s.root.display()
    );
}
