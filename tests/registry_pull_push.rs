//! `strata pull` / `strata push` against a real `docker-registry` over plain http, and
//! interop with skopeo both ways (equal digests). See issue 5.

mod registry_common;
mod util;

use registry_common::{
    oci_image, oci_layout, random_bytes, skopeo_copy, skopeo_digest, write_index, Registry,
    RegistryOptions, Strata,
};

fn seed(reg: &Registry, repo_tag: &str, layers: &[Vec<u8>], format: &[&str]) -> String {
    let layout = tempfile::tempdir().expect("tempdir");
    oci_layout(layout.path(), "t", layers);
    skopeo_copy(
        format,
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/{repo_tag}", reg.addr),
    );
    skopeo_digest(&format!("{}/{repo_tag}", reg.addr))
}

fn small_layers() -> Vec<Vec<u8>> {
    vec![
        random_bytes(300_000, 1),
        b"hello\n".repeat(10_000),
        random_bytes(1000, 3),
    ]
}

#[test]
fn pull_then_push_round_trips_with_skopeo_and_equal_digests() {
    let reg = Registry::start(RegistryOptions::default());
    let digest = seed(&reg, "src/app:v1", &small_layers(), &[]);
    let s = Strata::new();
    let out = s.run(&["pull", &format!("{}/src/app:v1", reg.addr)]).ok();
    assert!(out.stdout.contains("v1: Pulling from src/app"), "{out}");
    assert!(out.stdout.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "Status: Downloaded newer image for {}/src/app:v1",
            reg.addr
        )),
        "{out}"
    );
    s.assert_store_clean();
    let r = store::Reference::parse(&format!("{}/src/app:v1", reg.addr)).expect("ref");
    assert_eq!(
        s.store().resolve(&r).expect("tag exists").to_string(),
        digest
    );

    // Same blobs, other repository: every blob is mounted, nothing uploaded.
    s.run(&[
        "tag",
        &format!("{}/src/app:v1", reg.addr),
        &format!("{}/dst/app:v2", reg.addr),
    ])
    .ok();
    let out = s.run(&["push", &format!("{}/dst/app:v2", reg.addr)]).ok();
    assert!(
        out.stdout.contains(&format!(
            "The push refers to repository [{}/dst/app]",
            reg.addr
        )),
        "{out}"
    );
    assert!(out.stdout.contains("Mounted from src/app"), "{out}");
    assert!(!out.stdout.contains(": Pushed"), "{out}");
    assert_eq!(out.pushed_digest(), digest, "{out}");
    assert!(
        out.stdout.contains(&format!("v2: digest: {digest} size: ")),
        "{out}"
    );

    // skopeo reads what strata pushed, into an OCI layout, with the same digest.
    let back = tempfile::tempdir().expect("tempdir");
    skopeo_copy(
        &[],
        &format!("docker://{}/dst/app:v2", reg.addr),
        &format!("oci:{}:x", back.path().display()),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.path().join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    // Pushing again: every blob exists.
    let out = s.run(&["push", &format!("{}/dst/app:v2", reg.addr)]).ok();
    assert!(out.stdout.contains("Layer already exists"), "{out}");

    // Pulling again: up to date, nothing downloaded.
    let out = s.run(&["pull", &format!("{}/src/app:v1", reg.addr)]).ok();
    assert!(out.stdout.contains("Status: Image is up to date"), "{out}");
}

#[test]
fn push_uploads_into_an_empty_registry_and_skopeo_pulls_it() {
    let reg = Registry::start(RegistryOptions::default());
    let other = Registry::start(RegistryOptions::default());
    let digest = seed(&reg, "a/b:1", &small_layers(), &[]);
    let s = Strata::new();
    s.run(&["pull", &format!("{}/a/b:1", reg.addr)]).ok();
    s.run(&[
        "tag",
        &format!("{}/a/b:1", reg.addr),
        &format!("{}/c/d:2", other.addr),
    ])
    .ok();
    let out = s.run(&["push", &format!("{}/c/d:2", other.addr)]).ok();
    assert_eq!(out.stdout.matches(": Pushed").count(), 3, "{out}");
    assert_eq!(out.pushed_digest(), digest);
    assert_eq!(skopeo_digest(&format!("{}/c/d:2", other.addr)), digest);
    let back = tempfile::tempdir().expect("tempdir");
    skopeo_copy(
        &[],
        &format!("docker://{}/c/d:2", other.addr),
        &format!("oci:{}:x", back.path().display()),
    );
}

#[test]
fn chunked_upload_through_the_library() {
    let reg = Registry::start(RegistryOptions::default());
    let other = Registry::start(RegistryOptions::default());
    let digest = seed(&reg, "a/b:1", &[random_bytes(700_000, 9)], &[]);
    let s = Strata::new();
    s.run(&["pull", &format!("{}/a/b:1", reg.addr)]).ok();
    let st = s.store();
    let src = store::Reference::parse(&format!("{}/a/b:1", reg.addr)).expect("ref");
    let dst = store::Reference::parse(&format!("{}/chunked:1", other.addr)).expect("ref");
    let m = st.resolve(&src).expect("pulled");
    st.tag(&m, &dst).expect("tag");
    let client = registry_client::Client::new(registry_client::ClientOptions {
        docker_config_dir: Some(s.docker_config.clone()),
        progress: registry_client::ProgressMode::Quiet,
        ..Default::default()
    })
    .expect("client");
    let opts = registry_client::PushOptions {
        upload: registry_client::UploadMode::Chunked(64 * 1024),
        ..Default::default()
    };
    let report = registry_client::push_blocking(&client, &st, &dst, &opts).expect("chunked push");
    assert_eq!(report.digest.to_string(), digest);
    assert_eq!(report.pushed, 2);
    assert_eq!(skopeo_digest(&format!("{}/chunked:1", other.addr)), digest);
}

#[test]
fn pulls_docker_schema2_images() {
    let reg = Registry::start(RegistryOptions::default());
    let digest = seed(&reg, "v2s2:1", &small_layers(), &["--format", "v2s2"]);
    let s = Strata::new();
    s.run(&["pull", &format!("{}/v2s2:1", reg.addr)]).ok();
    let st = s.store();
    let m = st
        .resolve(&store::Reference::parse(&format!("{}/v2s2:1", reg.addr)).expect("ref"))
        .expect("tagged");
    assert_eq!(m.to_string(), digest);
    let manifest: serde_json::Value =
        serde_json::from_slice(&st.read_blob(&m).expect("manifest blob")).expect("json");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    s.assert_store_clean();
    // And push it back unchanged (Docker media type kept, same digest).
    s.run(&[
        "tag",
        &format!("{}/v2s2:1", reg.addr),
        &format!("{}/v2s2copy:1", reg.addr),
    ])
    .ok();
    let out = s.run(&["push", &format!("{}/v2s2copy:1", reg.addr)]).ok();
    assert_eq!(out.pushed_digest(), digest);
}

#[test]
fn picks_the_platform_from_an_index_honouring_variant() {
    let reg = Registry::start(RegistryOptions::default());
    let layout = tempfile::tempdir().expect("tempdir");
    let amd = oci_image(layout.path(), &[b"amd64\n".to_vec()], "amd64", None);
    let arm7 = oci_image(layout.path(), &[b"arm v7\n".to_vec()], "arm", Some("v7"));
    let arm6 = oci_image(layout.path(), &[b"arm v6\n".to_vec()], "arm", Some("v6"));
    let entry = |img: &registry_common::Image, arch: &str, variant: Option<&str>| {
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = serde_json::json!(v);
        }
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest, "size": img.manifest.len(), "platform": p})
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&amd, "amd64", None), entry(&arm6, "arm", Some("v6")), entry(&arm7, "arm", Some("v7"))],
    }))
    .expect("json");
    let index_hex = registry_common::sha256_hex(&index);
    std::fs::write(layout.path().join("blobs/sha256").join(&index_hex), &index)
        .expect("index blob");
    write_index(
        layout.path(),
        &[serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{index_hex}"), "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        })],
    );
    skopeo_copy(
        &["--all"],
        &format!("oci:{}:multi", layout.path().display()),
        &format!("docker://{}/multi:1", reg.addr),
    );

    let s = Strata::new();
    let name = format!("{}/multi:1", reg.addr);
    let r = store::Reference::parse(&name).expect("ref");
    let cases = [
        ("linux/arm/v7", &arm7),
        ("linux/arm/v6", &arm6),
        ("linux/amd64", &amd),
    ];
    for (platform, want) in cases {
        let out = s.run(&["pull", "--platform", platform, &name]).ok();
        assert!(
            out.stdout.contains(&format!("Digest: sha256:{index_hex}")),
            "{out}"
        );
        assert_eq!(
            s.store().resolve(&r).expect("tagged").to_string(),
            want.manifest_digest,
            "platform {platform}"
        );
    }
    let out = s.run(&["pull", "--platform", "linux/s390x", &name]).fails();
    assert!(
        out.stderr.contains("no matching manifest for linux/s390x"),
        "{out}"
    );
    assert!(out.stderr.contains("linux/arm/v7"), "{out}");
    s.assert_store_clean();
}

#[test]
fn pull_by_digest_and_errors_name_the_reference() {
    let reg = Registry::start(RegistryOptions::default());
    let digest = seed(&reg, "d:1", &small_layers(), &[]);
    let s = Strata::new();
    s.run(&["pull", &format!("{}/d@{digest}", reg.addr)]).ok();
    assert!(s.store().has_blob(&digest.parse().expect("digest")));

    let out = s.run(&["pull", &format!("{}/d:nope", reg.addr)]).fails();
    assert!(out.stderr.contains("not found"), "{out}");
    assert!(out.stderr.contains("d:nope"), "{out}");
    let out = s.run(&["pull", "UPPER/Case"]).fails();
    assert_eq!(out.status, Some(2), "{out}");
    let out = s
        .run(&["push", &format!("{}/not/local:1", reg.addr)])
        .fails();
    assert!(out.stderr.contains("not/local"), "{out}");
}
