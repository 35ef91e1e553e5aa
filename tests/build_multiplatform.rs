//! Multi-platform builds (issue 16): an arm64 base imported with `--platform`, a Dockerfile
//! built for linux/amd64 and linux/arm64 at once (arm64's RUN through QEMU user emulation in
//! binfmt_misc, a `FROM --platform=$BUILDPLATFORM` stage run natively), pushed as one index
//! into a real docker-registry and read back with skopeo and `strata pull --platform`; and a
//! platform without a binfmt handler refused before any step.
//! The arm64 busybox comes from Debian's busybox-static:arm64 (see `util::foreign`).

mod registry_common;
mod util;

use std::fs;

use registry_common::{skopeo_copy, Registry, RegistryOptions};
use util::foreign;
use util::TestEnv;

/// A root holding `busybox:amd64` and `busybox:arm64`, each imported with its platform.
fn env_with_both_busyboxes() -> TestEnv {
    let env = TestEnv::new();
    let amd64 = util::busybox_rootfs().to_string_lossy().into_owned();
    let arm64 = foreign::arm64_busybox_rootfs()
        .to_string_lossy()
        .into_owned();
    env.strata(&[
        "import",
        "--platform",
        "linux/amd64",
        &amd64,
        "busybox:amd64",
    ])
    .assert_ok();
    env.strata(&[
        "import",
        "--platform",
        "linux/arm64",
        &arm64,
        "busybox:arm64",
    ])
    .assert_ok();
    env
}

/// A root holding `busybox:amd64` and `busybox:arm64` built from their rootfs tars with a
/// fixed SOURCE_DATE_EPOCH: every such root has the very same base images (an import's
/// config carries the time of the import).
fn env_with_same_busyboxes() -> TestEnv {
    let env = TestEnv::new();
    for (arch, rootfs) in [
        ("amd64", util::busybox_rootfs()),
        ("arm64", foreign::arm64_busybox_rootfs()),
    ] {
        let ctx = env.scratch.join(format!("busybox-{arch}"));
        fs::create_dir_all(&ctx).expect("mkdir");
        fs::copy(rootfs, ctx.join("rootfs.tar")).expect("copy rootfs");
        fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nADD rootfs.tar /\nCMD [\"sh\"]\n",
        )
        .expect("write");
        let tag = format!("busybox:{arch}");
        let platform = format!("linux/{arch}");
        let args = [
            "-t",
            &tag,
            "--platform",
            &platform,
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ];
        env.build(&ctx, &args).assert_ok();
    }
    env
}

/// `import --platform linux/arm64` writes the platform into the config.
#[test]
fn import_platform_sets_the_config_platform() {
    let env = env_with_both_busyboxes();
    let config = util::image_config(&env.root, "busybox:arm64");
    assert_eq!(config["architecture"], "arm64", "{config}");
    assert_eq!(config["os"], "linux", "{config}");

    let rootfs = foreign::arm64_busybox_rootfs()
        .to_string_lossy()
        .into_owned();
    let bad = env.strata(&["import", "--platform", "linux", &rootfs, "x:1"]);
    assert_eq!(bad.status, Some(2), "{bad}");
    assert!(bad.stderr.contains("invalid platform"), "{bad}");
}

const DOCKERFILE: &str = "\
FROM --platform=$BUILDPLATFORM busybox:$BUILDARCH AS tool
RUN echo \"made on $(uname -m)\" > /artifact
FROM busybox:$TARGETARCH
RUN uname -m > /arch
COPY --from=tool /artifact /artifact
";

/// The file `path` of the image `tag` in `root`.
fn image_file(root: &std::path::Path, tag: &str, path: &str) -> String {
    let fs_root = util::image_rootfs(root, tag);
    fs::read_to_string(fs_root.path().join(path))
        .unwrap_or_else(|e| panic!("reading {path} of {tag}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn two_platforms_build_into_one_pushed_index() {
    if !foreign::arm64_emulation() {
        return;
    }
    let env = env_with_both_busyboxes();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir ctx");
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
    let reg = Registry::start(RegistryOptions::default());
    let tag = format!("{}/mp:1", reg.addr);
    let args = [
        "--platform",
        "linux/amd64,linux/arm64",
        "--push",
        "-t",
        &tag,
        "--annotation",
        "index:org.opencontainers.image.description=both",
        "--annotation",
        "manifest-descriptor:org.example.entry=yes",
    ];
    let first = env.build(&ctx, &args);
    first.assert_ok();
    assert!(
        first
            .stderr
            .contains("[linux/arm64 stage-1 2/3] RUN uname -m"),
        "each step is labelled with its platform:\n{first}"
    );

    // The registry holds an index of both platforms.
    let raw = util::run_tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{tag}"),
        ],
    );
    let index: serde_json::Value = serde_json::from_str(&raw).expect("index JSON");
    assert_eq!(index["mediaType"], store::media_types::OCI_INDEX, "{index}");
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or(""),
                m["platform"]["architecture"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    assert_eq!(
        index["annotations"]["org.opencontainers.image.description"], "both",
        "{index}"
    );
    assert!(
        index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .all(|m| m["annotations"]["org.example.entry"] == "yes"),
        "{index}"
    );

    // Each platform's image: its RUN ran on that architecture, its artifact natively.
    for (platform, arch, uname) in [
        ("linux/amd64", "amd64", "x86_64"),
        ("linux/arm64", "arm64", "aarch64"),
    ] {
        let puller = TestEnv::new();
        puller
            .strata(&["pull", "--platform", platform, &tag])
            .assert_ok();
        assert_eq!(
            image_file(&puller.root, &tag, "arch"),
            uname,
            "{platform} via strata pull"
        );
        assert_eq!(
            image_file(&puller.root, &tag, "artifact"),
            "made on x86_64",
            "{platform}"
        );

        let copier = TestEnv::new();
        fs::create_dir_all(&copier.root).expect("mkdir root");
        skopeo_copy(
            &["--override-arch", arch],
            &format!("docker://{tag}"),
            &format!("oci:{}:copied:{arch}", copier.root.display()),
        );
        // strata adopts what skopeo wrote into its root; the tag names it the way the
        // test helpers look images up.
        copier
            .strata(&["tag", &format!("copied:{arch}"), "skopeo:copied"])
            .assert_ok();
        assert_eq!(
            image_file(&copier.root, "skopeo:copied", "arch"),
            uname,
            "{platform} via skopeo"
        );
    }

    // The same command again: every step of both platforms comes from the cache.
    let second = env.build(&ctx, &args);
    second.assert_ok();
    let started = second
        .stderr
        .lines()
        .filter(|l| l.starts_with('#') && l.contains(" ["))
        .count();
    assert_eq!(started, 10, "two platforms of five steps:\n{second}");
    assert_eq!(
        second.cached_steps(),
        started,
        "second build fully cached:\n{second}"
    );
}

/// The index pushed as `tag`, as skopeo reads it.
fn pushed_index(tag: &str) -> serde_json::Value {
    let raw = util::run_tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{tag}"),
        ],
    );
    serde_json::from_str(&raw).expect("index JSON")
}

/// The image manifests of `index` by platform (`os/arch`), in order.
fn index_images(index: &serde_json::Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or(""),
                    m["platform"]["architecture"].as_str().unwrap_or("")
                ),
                m["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .filter(|(platform, _)| platform != "unknown/unknown")
        .collect()
}

/// A two-platform build exports one registry cache (mode=max) and an inline cache per
/// platform, with one provenance attestation per image in the index; fresh roots build the
/// same images from either cache without running the target stage's steps.
#[test]
fn two_platforms_share_caches_and_get_an_attestation_each() {
    if !foreign::arm64_emulation() {
        return;
    }
    let reg = Registry::start(RegistryOptions::default());
    let cache_ref = format!("{}/mp-cache:max", reg.addr);
    let build_in = |env: &TestEnv, tag: &str, extra: &[&str]| {
        let ctx = env.scratch.join("ctx");
        fs::create_dir_all(&ctx).expect("mkdir ctx");
        fs::write(ctx.join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
        // A fixed SOURCE_DATE_EPOCH: the config's `created` is otherwise the build's time.
        let mut args = vec![
            "--platform",
            "linux/amd64,linux/arm64",
            "--push",
            "-t",
            tag,
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ];
        args.extend_from_slice(extra);
        let out = env.build(&ctx, &args);
        out.assert_ok();
        out
    };

    let first_tag = format!("{}/mpc:1", reg.addr);
    let first = env_with_same_busyboxes();
    build_in(
        &first,
        &first_tag,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max"),
            "--cache-to",
            "type=inline",
            "--provenance",
            "mode=max",
        ],
    );
    let index = pushed_index(&first_tag);
    let images = index_images(&index);
    assert_eq!(
        images.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"],
        "{index}"
    );
    let attestations: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|m| m["platform"]["os"] == "unknown" && m["platform"]["architecture"] == "unknown")
        .collect();
    assert_eq!(attestations.len(), 2, "one attestation per image: {index}");
    for (a, (_, image)) in attestations.iter().zip(&images) {
        let annotations = &a["annotations"];
        assert_eq!(
            annotations["vnd.docker.reference.type"], "attestation-manifest",
            "{index}"
        );
        assert_eq!(
            annotations["vnd.docker.reference.digest"].as_str(),
            Some(image.as_str()),
            "{index}"
        );
    }

    // `COPY --from=IMAGE` reads the image for its stage's platform: the host's in a
    // `FROM --platform=$BUILDPLATFORM` stage, the target's in the other.
    let ctx = first.scratch.join("copy-from");
    fs::create_dir_all(&ctx).expect("mkdir ctx");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM --platform=$BUILDPLATFORM busybox:$BUILDARCH AS tool\n\
             COPY --from={first_tag} /arch /tool-arch\n\
             FROM busybox:$TARGETARCH\n\
             COPY --from={first_tag} /arch /target-arch\n\
             COPY --from=tool /tool-arch /tool-arch\n"
        ),
    )
    .expect("write Dockerfile");
    first
        .build(&ctx, &["--platform", "linux/arm64", "-t", "copy-from:1"])
        .assert_ok();
    assert_eq!(
        image_file(&first.root, "copy-from:1", "target-arch"),
        "aarch64"
    );
    assert_eq!(
        image_file(&first.root, "copy-from:1", "tool-arch"),
        "x86_64"
    );

    // A fresh root with the registry cache: every step of both platforms is CACHED and
    // the images are the first build's (inline caches included, so their configs match).
    let from_registry = build_in(
        &env_with_same_busyboxes(),
        &format!("{}/mpc:2", reg.addr),
        &["--cache-from", &cache_ref, "--cache-to", "type=inline"],
    );
    assert_eq!(
        from_registry.cached_steps(),
        10,
        "two platforms of five steps, all from the cache:\n{from_registry}"
    );
    assert_eq!(
        index_images(&pushed_index(&format!("{}/mpc:2", reg.addr))),
        images,
        "the same images as the first build"
    );

    // A fresh root with the first image's inline caches (one per platform, read through
    // its index): each platform's own steps are CACHED, and the images are the same.
    let from_inline = build_in(
        &env_with_same_busyboxes(),
        &format!("{}/mpc:3", reg.addr),
        &["--cache-from", &first_tag, "--cache-to", "type=inline"],
    );
    for platform in ["linux/amd64", "linux/arm64"] {
        let step = format!("[{platform} stage-1 2/3] RUN uname -m");
        let number = from_inline
            .stderr
            .lines()
            .find(|l| l.contains(&step))
            .and_then(|l| l.split_once(' '))
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| panic!("{step} is shown:\n{from_inline}"));
        assert!(
            from_inline
                .stderr
                .lines()
                .any(|l| l == format!("{number} CACHED")),
            "{step} comes from the inline cache:\n{from_inline}"
        );
    }
    assert_eq!(
        index_images(&pushed_index(&format!("{}/mpc:3", reg.addr))),
        images,
        "the same images as the first build"
    );
}

/// A platform this kernel has no binfmt_misc handler for fails before any step, naming
/// the platform and the package that brings the handlers.
#[test]
fn platform_without_handler_fails_before_any_step() {
    let Some(platform) = foreign::unhandled_platform() else {
        return;
    };
    let env = TestEnv::with_busybox();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir ctx");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo hi > /x\n").expect("write");
    let out = env.build(&ctx, &["--platform", platform]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains(platform), "names the platform:\n{out}");
    assert!(
        out.stderr.contains("qemu-user-static"),
        "names the package:\n{out}"
    );
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("#1 ")),
        "no step ran:\n{out}"
    );
}
