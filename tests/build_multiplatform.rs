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
    let images_before = images_bytes(&env);
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

    kept_in_the_store(&env, &ctx, &tag, images_before);
}

/// `system df`'s Images size in bytes.
fn images_bytes(env: &TestEnv) -> u64 {
    let out = env.strata(&["system", "df", "--format", "json"]);
    out.assert_ok();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON row"))
        .find(|r| r["Type"] == "Images")
        .and_then(|r| r["SizeBytes"].as_u64())
        .unwrap_or_else(|| panic!("no Images row:\n{out}"))
}

/// The platforms of the index an OCI archive or layout holds, per `skopeo inspect --raw`.
fn index_platforms(skopeo_ref: &str) -> Vec<String> {
    let raw = util::run_tool("skopeo", &["inspect", "--raw", skopeo_ref]);
    let index: serde_json::Value = serde_json::from_str(&raw).expect("index JSON");
    assert_eq!(index["mediaType"], store::media_types::OCI_INDEX, "{index}");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"], m["platform"]["architecture"]).replace('"', "")
        })
        .collect()
}

/// After the pushed build (the same steps, all cached): the store keeps the index under
/// its tags as one image; `images`, `inspect`, `history`, `save`, `-o`, FROM, GC and `rmi`
/// treat it as one multi-platform image (issue 16).
fn kept_in_the_store(env: &TestEnv, ctx: &std::path::Path, pushed: &str, images_before: u64) {
    let both = ["linux/amd64", "linux/arm64"];
    let refused = env.build(
        ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=docker,dest=x.tar",
        ],
    );
    assert_ne!(refused.status, Some(0), "{refused}");
    assert!(
        refused
            .stderr
            .contains("docker exporter does not currently support exporting manifest lists"),
        "{refused}"
    );

    let files = env.scratch.join("files");
    let oci = env.scratch.join("built-oci.tar");
    let iid = env.scratch.join("iid");
    let local = env.build(
        ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "mp-local:1",
            // The pushed build's annotations, which its stored index carries too.
            "--annotation",
            "index:org.opencontainers.image.description=both",
            "--annotation",
            "manifest-descriptor:org.example.entry=yes",
            "--iidfile",
            &iid.to_string_lossy(),
            "-o",
            &format!("type=local,dest={}", files.display()),
            "-o",
            &format!("type=oci,dest={}", oci.display()),
        ],
    );
    local.assert_ok();
    for (dir, uname) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
        let arch = fs::read_to_string(files.join(dir).join("arch"))
            .unwrap_or_else(|e| panic!("{dir}/arch: {e}\n{local}"));
        assert_eq!(
            arch.trim(),
            uname,
            "type=local writes one directory per platform"
        );
    }
    assert_eq!(
        index_platforms(&format!("oci-archive:{}", oci.display())),
        both
    );

    // One image under both names: the index, whose id is its digest.
    let index = env.manifest_digest("mp-local:1");
    assert_eq!(
        env.manifest_digest(pushed),
        index,
        "the pushed tag names the same index"
    );
    assert_eq!(fs::read_to_string(&iid).expect("iidfile").trim(), index);
    let listed = env.strata(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]);
    listed.assert_ok();
    let rows: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| l.ends_with(&index))
        .collect();
    assert_eq!(rows.len(), 2, "one row per tag of the index:\n{listed}");
    assert!(
        !listed.stdout.contains("<none>"),
        "no platform listed on its own:\n{listed}"
    );

    let inspect = env.strata(&["inspect", "mp-local:1"]);
    inspect.assert_ok();
    let inspect: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect JSON");
    assert_eq!(inspect[0]["Id"], index.as_str(), "{inspect}");
    assert_eq!(
        inspect[0]["Architecture"],
        store::platform::host_architecture(),
        "{inspect}"
    );
    let platforms: Vec<String> = inspect[0]["Manifests"]
        .as_array()
        .expect("Manifests")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["Descriptor"]["platform"]["os"], m["Descriptor"]["platform"]["architecture"]
            )
            .replace('"', "")
        })
        .collect();
    assert_eq!(platforms, both, "{inspect}");
    let history = env.strata(&["history", "--no-trunc", "mp-local:1"]);
    history.assert_ok();
    assert!(history.stdout.contains("uname -m"), "{history}");

    // Other OCI tools read the index out of the store and out of `save --format oci`.
    let layout = format!("oci:{}:mp-local:1", env.root.display());
    assert_eq!(index_platforms(&layout), both);
    let umoci = util::run_tool("umoci", &["ls", "--layout", &env.root.to_string_lossy()]);
    assert!(umoci.lines().any(|l| l == "mp-local:1"), "{umoci}");
    let saved = env.scratch.join("saved-oci.tar");
    env.strata(&[
        "save",
        "--format",
        "oci",
        "-o",
        &saved.to_string_lossy(),
        "mp-local:1",
    ])
    .assert_ok();
    assert_eq!(
        index_platforms(&format!("oci-archive:{}", saved.display())),
        both
    );

    // FROM a local multi-platform image takes the build's platform out of it.
    let from = env.scratch.join("from");
    fs::create_dir_all(&from).expect("mkdir");
    fs::write(
        from.join("Dockerfile"),
        "FROM mp-local:1\nCOPY Dockerfile /df\n",
    )
    .expect("write");
    let picked = env.scratch.join("picked");
    env.build(
        &from,
        &[
            "--platform",
            "linux/arm64",
            "-o",
            &format!("type=local,dest={}", picked.display()),
        ],
    )
    .assert_ok();
    let arch = fs::read_to_string(picked.join("arch")).expect("arch");
    assert_eq!(arch.trim(), "aarch64");

    // `push NAME` of a stored index: every platform, then the index.
    let again = pushed.replace("/mp:1", "/mp:2");
    env.strata(&["tag", "mp-local:1", &again]).assert_ok();
    env.strata(&["push", &again]).assert_ok();
    let raw = util::run_tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{again}"),
        ],
    );
    let remote: serde_json::Value = serde_json::from_str(&raw).expect("index JSON");
    assert_eq!(
        remote["manifests"].as_array().map(Vec::len),
        Some(2),
        "{remote}"
    );
    // The stored index's annotations go with it.
    assert_eq!(
        remote["annotations"]["org.opencontainers.image.description"], "both",
        "{remote}"
    );
    assert_eq!(
        remote["manifests"][1]["annotations"]["org.example.entry"], "yes",
        "{remote}"
    );
    env.strata(&["rmi", &again]).assert_ok();

    // GC keeps every platform of a tagged index; removing its names frees them all.
    env.strata(&["image", "prune", "-f"]).assert_ok();
    env.strata(&["system", "verify"]).assert_ok();
    assert_eq!(env.manifest_digest("mp-local:1"), index);
    assert_eq!(index_platforms(&layout), both);
    let index_json = util::read_blob_json(&env.root, &index);
    let mut only_its_own = vec![index.clone()];
    for m in index_json["manifests"].as_array().expect("manifests") {
        let digest = m["digest"].as_str().expect("digest");
        let manifest = util::read_blob_json(&env.root, digest);
        only_its_own.push(digest.to_string());
        only_its_own.push(
            manifest["config"]["digest"]
                .as_str()
                .expect("config")
                .to_string(),
        );
    }
    let held = images_bytes(env);
    env.strata(&["rmi", "mp-local:1", pushed]).assert_ok();
    env.strata(&["image", "prune", "-f"]).assert_ok();
    let blob = |d: &str| {
        env.root
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    for d in &only_its_own {
        assert!(!blob(d).exists(), "{d} is gone after rmi and prune");
    }
    let left = images_bytes(env);
    assert!(
        left < held && left >= images_before,
        "rmi and prune give the index's space back: {held} → {left} (busybox alone: {images_before})"
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
