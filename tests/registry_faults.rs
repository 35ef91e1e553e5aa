//! Pulls and pushes through a proxy that breaks 30% of the requests (503, 429 with
//! Retry-After, connection resets, bodies cut short). Every one must succeed and the
//! store must never hold a bad blob. (skopeo with --retry-times 5 gets 5 of 15 pulls
//! and 1 of 6 pushes through such a proxy.) See issue 5.
//!
//! A hostile registry (the proxy lying about manifests) is refused at once, without
//! retries, and leaves nothing in the store (issue 12).

mod registry_common;
mod util;

use std::sync::atomic::Ordering;

use registry_common::{
    oci_layout, random_bytes, skopeo_copy, skopeo_digest, FaultProxy, Hostile, Registry,
    RegistryOptions, Strata,
};

fn layers() -> Vec<Vec<u8>> {
    vec![
        random_bytes(3 << 20, 11),
        b"compressible line of text\n".repeat(40_000),
        random_bytes(200_000, 12),
        b"tiny".to_vec(),
    ]
}

#[test]
fn fifteen_pulls_through_a_faulty_proxy_all_succeed() {
    let reg = Registry::start(RegistryOptions::default());
    let layout = tempfile::tempdir().expect("tempdir");
    let img = oci_layout(layout.path(), "t", &layers());
    skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/flaky/app:1", reg.addr),
    );
    let proxy = FaultProxy::start(&reg.addr, 30);
    let name = format!("{}/flaky/app:1", proxy.addr);
    let r = store::Reference::parse(&name).expect("ref");
    for i in 0..15 {
        let s = Strata::new();
        let out = s.run(&["pull", &name]);
        assert_eq!(
            out.status,
            Some(0),
            "pull {i} failed ({}):\n{out}",
            proxy.summary()
        );
        assert_eq!(
            s.store().resolve(&r).expect("tagged").to_string(),
            img.manifest_digest,
            "pull {i}"
        );
        s.assert_store_clean();
    }
    eprintln!("{}", proxy.summary());
    assert!(
        proxy.faults() >= 10,
        "the proxy injected too few faults: {}",
        proxy.summary()
    );
    assert!(
        proxy
            .counts
            .short_bodies
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "no body was cut: {}",
        proxy.summary()
    );
}

#[test]
fn six_pushes_through_a_faulty_proxy_all_succeed() {
    let src = Registry::start(RegistryOptions::default());
    let layout = tempfile::tempdir().expect("tempdir");
    let img = oci_layout(layout.path(), "t", &layers());
    skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/base:1", src.addr),
    );
    let s = Strata::new();
    s.run(&["pull", &format!("{}/base:1", src.addr)]).ok();
    for i in 0..6 {
        // A fresh registry each time: every blob is uploaded, none mounted.
        let dst = Registry::start(RegistryOptions::default());
        let proxy = FaultProxy::start(&dst.addr, 30);
        let name = format!("{}/pushed/app:{i}", proxy.addr);
        s.run(&["tag", &format!("{}/base:1", src.addr), &name]).ok();
        let out = s.run(&["push", &name]);
        assert_eq!(
            out.status,
            Some(0),
            "push {i} failed ({}):\n{out}",
            proxy.summary()
        );
        assert_eq!(out.pushed_digest(), img.manifest_digest, "push {i}");
        assert_eq!(
            skopeo_digest(&format!("{}/pushed/app:{i}", dst.addr)),
            img.manifest_digest
        );
        // The registry holds exactly the right bytes: skopeo verifies every blob.
        let back = tempfile::tempdir().expect("tempdir");
        skopeo_copy(
            &[],
            &format!("docker://{}/pushed/app:{i}", dst.addr),
            &format!("oci:{}:x", back.path().display()),
        );
        eprintln!("push {i}: {}", proxy.summary());
    }
}

#[test]
fn chunked_pushes_through_a_faulty_proxy_resume() {
    let src = Registry::start(RegistryOptions::default());
    let layout = tempfile::tempdir().expect("tempdir");
    let img = oci_layout(layout.path(), "t", &layers());
    skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/base:1", src.addr),
    );
    let s = Strata::new();
    s.run(&["pull", &format!("{}/base:1", src.addr)]).ok();
    let st = s.store();
    let m = st
        .resolve(&store::Reference::parse(&format!("{}/base:1", src.addr)).expect("ref"))
        .expect("pulled");
    let client = registry_client::Client::new(registry_client::ClientOptions {
        docker_config_dir: Some(s.docker_config.clone()),
        progress: registry_client::ProgressMode::Quiet,
        ..Default::default()
    })
    .expect("client");
    for i in 0..3 {
        let dst = Registry::start(RegistryOptions::default());
        let proxy = FaultProxy::start(&dst.addr, 30);
        let r = store::Reference::parse(&format!("{}/chunked:{i}", proxy.addr)).expect("ref");
        st.tag(&m, &r).expect("tag");
        let opts = registry_client::PushOptions {
            upload: registry_client::UploadMode::Chunked(256 * 1024),
            ..Default::default()
        };
        let report = registry_client::push_blocking(&client, &st, &r, &opts)
            .unwrap_or_else(|e| panic!("chunked push {i} failed ({}): {e}", proxy.summary()));
        assert_eq!(report.digest.to_string(), img.manifest_digest);
        let back = tempfile::tempdir().expect("tempdir");
        skopeo_copy(
            &[],
            &format!("docker://{}/chunked:{i}", dst.addr),
            &format!("oci:{}:x", back.path().display()),
        );
    }
}

/// A registry holding one single-layer image, behind a proxy that answers manifests
/// with `lie`; the reference to pull through it.
fn hostile_registry(lie: Hostile) -> (Registry, FaultProxy, String) {
    let reg = Registry::start(RegistryOptions::default());
    let layout = tempfile::tempdir().expect("tempdir");
    oci_layout(layout.path(), "t", &[random_bytes(300_000, 21)]);
    skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/hostile/app:1", reg.addr),
    );
    let proxy = FaultProxy::hostile(&reg.addr, lie);
    let name = format!("{}/hostile/app:1", proxy.addr);
    (reg, proxy, name)
}

/// No image, no partial download, no blob of the lying layer.
#[track_caller]
fn assert_nothing_stored(s: &Strata) {
    let images = s.run(&["images", "-q"]).ok();
    assert_eq!(images.stdout.trim(), "", "{images}");
    let ingest: Vec<_> = std::fs::read_dir(s.root.join("ingest"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(ingest.is_empty(), "ingest files left behind: {ingest:?}");
}

#[test]
fn issue_12_huge_manifest_is_refused_before_it_is_read_whole() {
    const SIZE: u64 = 64 << 20;
    let (_reg, proxy, name) = hostile_registry(Hostile::HugeManifest(SIZE));
    let s = Strata::new();
    let out = s.run(&["pull", &name]).fails();
    assert!(out.stderr.contains("is larger than 4 MiB"), "{out}");
    assert_eq!(
        proxy.counts.manifest_gets.load(Ordering::Relaxed),
        1,
        "{out}"
    );
    let sent = proxy.counts.hostile_bytes.load(Ordering::Relaxed);
    assert!(
        sent < SIZE,
        "the client read all {sent} bytes of the manifest"
    );
    assert_nothing_stored(&s);
}

#[test]
fn issue_12_layer_longer_than_the_registry_sends_fails_once() {
    let (_reg, proxy, name) = hostile_registry(Hostile::LayersOverstated(1000));
    let s = Strata::new();
    let out = s.run(&["pull", &name]).fails();
    assert!(
        out.stderr.contains("bytes but its descriptor says"),
        "{out}"
    );
    // The config and the layer, each asked for at most once.
    let gets = proxy.counts.blob_gets.load(Ordering::Relaxed);
    assert!(
        gets <= 2,
        "{gets} blob GETs: the short layer was retried\n{out}"
    );
    assert_nothing_stored(&s);
}

#[test]
fn issue_12_absurd_layer_size_is_refused_before_any_download() {
    let (_reg, proxy, name) = hostile_registry(Hostile::LayerSize(1 << 60));
    let s = Strata::new();
    let out = s.run(&["pull", &name]).fails();
    assert!(
        out.stderr.contains("beyond the 1 TiB a blob may have"),
        "{out}"
    );
    assert_eq!(proxy.counts.blob_gets.load(Ordering::Relaxed), 0, "{out}");
    assert_nothing_stored(&s);
}
