//! `build --cache-to type=registry` / `--cache-from`: one CI runner exports its build cache
//! to a real docker-registry, another runner with an empty store builds from it without
//! running a step, and gets the very same layers.

mod registry_common;
mod util;

use std::fs;
use std::path::PathBuf;

use registry_common::{Registry, RegistryOptions};
use util::{image_config, image_rootfs, TestEnv};

/// Two stages: `deps` makes a file no later layer contains as such (only mode=max exports
/// its step), the final stage copies from it. Every RUN writes a random token, so a step
/// that ran again is told apart from one taken from the cache.
const DOCKERFILE: &str = "\
FROM busybox AS deps
RUN cat /proc/sys/kernel/random/uuid > /deps-token
FROM busybox
COPY app.txt /app.txt
RUN cat /proc/sys/kernel/random/uuid > /run-token
COPY --from=deps /deps-token /deps-token
";

/// The two `FROM busybox` lines: plain progress shows a local base as CACHED too.
const FROMS: usize = 2;

fn context(env: &TestEnv) -> PathBuf {
    let dir = env.scratch.join("app");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("Dockerfile"), DOCKERFILE).expect("Dockerfile");
    fs::write(dir.join("app.txt"), "the app\n").expect("app.txt");
    dir
}

/// The manifest at `reference`, as skopeo reads it from the registry.
fn raw_manifest(reference: &str) -> serde_json::Value {
    registry_common::require("skopeo", "skopeo");
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo inspect {reference}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("a JSON manifest")
}

fn read(rootfs: &tempfile::TempDir, path: &str) -> String {
    fs::read_to_string(rootfs.path().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_second_runner_builds_from_the_registry_cache_without_running_a_step() {
    let reg = Registry::start(RegistryOptions::default());
    let max_ref = format!("{}/cache/app:max", reg.addr);
    let min_ref = format!("{}/cache/app:min", reg.addr);

    // Runner A builds and exports both kinds of cache.
    let a = TestEnv::with_busybox();
    let ctx_a = context(&a);
    let built = a.build(
        &ctx_a,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={max_ref},mode=max"),
            "--cache-to",
            &min_ref,
        ],
    );
    built.assert_ok();
    assert!(
        built
            .stderr
            .contains(&format!("exporting cache to {max_ref}")),
        "{built}"
    );
    let a_rootfs = image_rootfs(&a.root, "app:1");
    let a_diff_ids = image_config(&a.root, "app:1")["rootfs"]["diff_ids"].clone();
    let cache_manifest = raw_manifest(&max_ref);
    let layers = cache_manifest["layers"].as_array().expect("layers");
    assert_eq!(
        layers.len(),
        4,
        "four layer steps in mode=max: {cache_manifest}"
    );
    for l in layers {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{l}"
        );
    }

    // Runner B starts empty (but for the same base image) and imports the max cache:
    // both RUNs and all COPYs come from it, so the random tokens are A's.
    let b = TestEnv::with_busybox();
    let ctx_b = context(&b);
    let out = b.build(&ctx_b, &["-t", "app:1", "--cache-from", &max_ref]);
    out.assert_ok();
    assert_eq!(
        out.cached_steps(),
        FROMS + 4,
        "every step came from the cache:\n{out}"
    );
    let b_rootfs = image_rootfs(&b.root, "app:1");
    assert_eq!(read(&b_rootfs, "run-token"), read(&a_rootfs, "run-token"));
    assert_eq!(read(&b_rootfs, "deps-token"), read(&a_rootfs, "deps-token"));
    assert_eq!(read(&b_rootfs, "app.txt"), "the app\n");
    assert_eq!(
        image_config(&b.root, "app:1")["rootfs"]["diff_ids"],
        a_diff_ids,
        "B's image is made of A's layers"
    );
    // The COPY hits read their parent directories from the layer tars: of the final
    // stage only the base is unpacked (COPY --from=deps reads deps's files from its
    // snapshots); app.txt's and the RUN's layers, taken from the cache, never are.
    let diff_ids: Vec<store::Digest> = a_diff_ids
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|d| d.as_str().expect("diff_id").parse().expect("digest"))
        .collect();
    let chains = store::Store::chain_ids(&diff_ids);
    let unpacked = |c: &store::ChainId| b.root.join("snapshots").join(c.hex()).is_dir();
    assert!(
        unpacked(&chains[0]),
        "the base is unpacked: COPY --from=deps reads deps's files from its snapshots"
    );
    for (i, c) in chains.iter().enumerate().skip(1) {
        assert!(!unpacked(c), "layer {i} of the final image was unpacked");
    }
    // What B fetched is now in B's own cache: no registry needed for a rebuild.
    let again = b.build(&ctx_b, &["-t", "app:1"]);
    again.assert_ok();
    assert_eq!(again.cached_steps(), FROMS + 4, "{again}");
    let verify = b.strata(&["system", "verify"]);
    assert_eq!(verify.status, Some(0), "{verify}");

    // Runner C imports the min cache: the deps stage's RUN is not in it (its layer is not
    // in the final image), so it runs again and makes a new token; the final COPY --from
    // then copies different bytes and misses too. The final stage's first two steps hit.
    let c = TestEnv::with_busybox();
    let ctx_c = context(&c);
    let out = c.build(&ctx_c, &["-t", "app:1", "--cache-from", &min_ref]);
    out.assert_ok();
    assert_eq!(
        out.cached_steps(),
        FROMS + 2,
        "COPY app.txt and its RUN hit:\n{out}"
    );
    let c_rootfs = image_rootfs(&c.root, "app:1");
    assert_eq!(read(&c_rootfs, "run-token"), read(&a_rootfs, "run-token"));
    assert_ne!(read(&c_rootfs, "deps-token"), read(&a_rootfs, "deps-token"));
}

/// BuildKit's inline cache, spelled as docker users do (`BUILDKIT_INLINE_CACHE=1`) or as
/// buildx does (`--cache-to type=inline`): the pushed image carries the records of its own
/// layers (mode=min), and `--cache-from IMAGE` on an empty runner uses them.
#[test]
fn an_image_pushed_with_an_inline_cache_seeds_a_build_on_an_empty_runner() {
    let reg = Registry::start(RegistryOptions::default());
    let image = format!("{}/inline/app:1", reg.addr);
    let a = TestEnv::with_busybox();
    let ctx_a = context(&a);
    let args = [
        "-t",
        &image,
        "--build-arg",
        "BUILDKIT_INLINE_CACHE=1",
        "--push",
    ];
    a.build(&ctx_a, &args).assert_ok();
    let config = image_config(&a.root, &image);
    let inline = config["strata.cache.v1"]
        .as_array()
        .expect("inline records");
    assert_eq!(inline.len(), 3, "COPY, RUN, COPY --from: {config}");
    let a_rootfs = image_rootfs(&a.root, &image);

    let b = TestEnv::with_busybox();
    let out = b.build(&context(&b), &["-t", "app:1", "--cache-from", &image]);
    out.assert_ok();
    // min: the deps stage's RUN is not in the image, so it runs (a new token) and the
    // final COPY --from misses; the final stage's COPY and RUN come from the image.
    assert_eq!(out.cached_steps(), FROMS + 2, "{out}");
    let b_rootfs = image_rootfs(&b.root, "app:1");
    assert_eq!(read(&b_rootfs, "run-token"), read(&a_rootfs, "run-token"));

    // buildx's spelling gives the same image config field; without it there is none.
    let c = TestEnv::with_busybox();
    let ctx_c = context(&c);
    c.build(&ctx_c, &["-t", "inline:1", "--cache-to", "type=inline"])
        .assert_ok();
    assert!(image_config(&c.root, "inline:1")["strata.cache.v1"].is_array());
    c.build(&ctx_c, &["-t", "plain:1"]).assert_ok();
    assert!(image_config(&c.root, "plain:1")
        .get("strata.cache.v1")
        .is_none());
}

#[test]
fn a_missing_or_foreign_cache_is_a_warning_and_the_build_runs() {
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::with_busybox();
    let ctx = context(&env);
    // An ordinary image in the registry: not a cache.
    let image_ref = format!("{}/plain/busybox:1", reg.addr);
    env.strata(&["tag", "busybox:latest", &image_ref])
        .assert_ok();
    env.strata(&["push", &image_ref]).assert_ok();

    let missing = format!("{}/cache/none:nothing", reg.addr);
    let out = env.build(
        &ctx,
        &[
            "-t",
            "app:1",
            "--cache-from",
            &missing,
            "--cache-from",
            &image_ref,
        ],
    );
    out.assert_ok();
    assert_eq!(out.cached_steps(), FROMS, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "WARNING: importing cache manifest from {missing}: not found"
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains("the image has no inline build cache"),
        "{out}"
    );
}

#[test]
fn cache_flags_that_strata_cannot_honour_are_usage_errors() {
    let env = TestEnv::with_busybox();
    let ctx = context(&env);
    for (flag, value, wanted) in [
        (
            "--cache-to",
            "type=local,dest=/tmp/x",
            "type=local is not supported",
        ),
        ("--cache-from", "type=gha", "type=gha is not supported"),
        (
            "--cache-to",
            "type=inline,mode=max",
            "type=inline takes no mode=max",
        ),
        ("--cache-to", "type=registry", "ref=REF is required"),
        (
            "--cache-to",
            "type=registry,ref=r/a:c,mode=all",
            "mode=all is not supported",
        ),
        ("--cache-from", "Bad/Ref", "invalid --cache-from reference"),
    ] {
        let out = env.build(&ctx, &[flag, value]);
        assert_eq!(out.status, Some(2), "{flag} {value}: usage error\n{out}");
        assert!(out.stderr.contains(wanted), "{flag} {value}:\n{out}");
    }
    // A registry that cannot take the export fails the build's command, unless
    // ignore-error=true says the cache is optional.
    let port = registry_common::free_port("127.0.0.1");
    let nowhere = format!("127.0.0.1:{port}/cache/app:1");
    let out = env.build(&ctx, &["-t", "app:1", "--cache-to", &nowhere]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("exporting cache to"), "{out}");
    let out = env.build(
        &ctx,
        &[
            "--cache-to",
            &format!("type=registry,ref={nowhere},ignore-error=true"),
        ],
    );
    out.assert_ok();
    assert!(out.stderr.contains("WARNING: exporting cache to"), "{out}");
}
