//! Pulls and pushes through a proxy that breaks 30% of the requests (503, 429 with
//! Retry-After, connection resets, bodies cut short). Every one must succeed and the
//! store must never hold a bad blob. (skopeo with --retry-times 5 gets 5 of 15 pulls
//! and 1 of 6 pushes through such a proxy.) See issue 5.

mod registry_common;
mod util;

use registry_common::{
    oci_layout, random_bytes, skopeo_copy, skopeo_digest, FaultProxy, Registry, RegistryOptions,
    Strata,
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
