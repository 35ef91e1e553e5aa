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
