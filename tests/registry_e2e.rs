//! Issue 5's end-to-end check: build → push → rmi → prune everything → pull → the same
//! digest, against a real docker-registry.

mod registry_common;
mod util;

use registry_common::{Registry, RegistryOptions, Strata};

#[test]
fn build_push_rmi_prune_pull_gives_the_same_digest() {
    let reg = Registry::start(RegistryOptions::default());
    let s = Strata::new();
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("context dir");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY data.bin /data/data.bin\nENV GREETING=hi\n",
    )
    .expect("Dockerfile");
    std::fs::write(ctx.join("hello.txt"), "hello from strata\n").expect("file");
    std::fs::write(
        ctx.join("data.bin"),
        registry_common::random_bytes(2 << 20, 42),
    )
    .expect("file");
    let name = format!("{}/e2e/app:1", reg.addr);
    s.run(&["build", "-t", &name, ctx.to_str().expect("utf-8 path")])
        .ok();
    let pushed = s.run(&["push", &name]).ok().pushed_digest();

    s.run(&["rmi", &name]).ok();
    // `system prune -a`'s removal: every untagged image, all build cache, leftovers.
    let st = s.store();
    st.prune(&store::gc::PruneOptions {
        images: store::gc::ImagePolicy::Untagged,
        cache: store::gc::CachePolicy::All,
        leftovers: true,
        ..Default::default()
    })
    .expect("prune");
    let digest: store::Digest = pushed.parse().expect("digest");
    assert!(!st.has_blob(&digest), "prune left the manifest blob behind");

    let out = s.run(&["pull", &name]).ok();
    assert!(out.stdout.contains(&format!("Digest: {pushed}")), "{out}");
    let r = store::Reference::parse(&name).expect("ref");
    assert_eq!(s.store().resolve(&r).expect("pulled").to_string(), pushed);
    s.assert_store_clean();
}

#[test]
fn build_push_sends_the_built_image() {
    let reg = Registry::start(RegistryOptions::default());
    let s = Strata::new();
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("context dir");
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY a.txt /a.txt\n")
        .expect("Dockerfile");
    std::fs::write(ctx.join("a.txt"), "pushed by build\n").expect("file");
    let name = format!("{}/e2e/built:1", reg.addr);
    let pushed = s
        .run(&[
            "build",
            "--push",
            "-t",
            &name,
            ctx.to_str().expect("utf-8 path"),
        ])
        .ok()
        .pushed_digest();
    let st = s.store();
    let local = st
        .image(
            &st.resolve(&store::Reference::parse(&name).expect("ref"))
                .expect("tagged"),
        )
        .expect("image");

    // A second root pulls it back: the registry has the image we built (its layers
    // gzip'd for the push, so another manifest digest, the same config = image ID).
    let other = Strata::new();
    let out = other.run(&["pull", &name]).ok();
    assert!(out.stdout.contains(&format!("Digest: {pushed}")), "{out}");
    let st = other.store();
    let pulled = st
        .image(
            &st.resolve(&store::Reference::parse(&name).expect("ref"))
                .expect("pulled"),
        )
        .expect("image");
    assert_eq!(pulled.id(), local.id());
    assert_eq!(pulled.diff_ids(), local.diff_ids());
}
