//! The flags and commands buildx-based CI scripts use, run through the real binary: a
//! closed stdout, `--platform`, `--load`, `--metadata-file`, outputs, labels and annotations, attestations, `version` and
//! the `image …` aliases (issue 19).

mod util;

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

use util::{strata_command, TestEnv};

/// A context of one small file: `FROM scratch`, `COPY`.
fn context(env: &TestEnv) -> PathBuf {
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("hello.txt"), "hello\n").expect("write");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n").expect("write");
    ctx
}

/// Pins the image's `created` times, so two builds in different seconds agree.
const EPOCH: &str = "SOURCE_DATE_EPOCH=1700000000";

fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

#[test]
fn closed_stdout_ends_quietly_like_docker() {
    let env = TestEnv::new();
    env.build(&context(&env), &["-t", "app:1"]).assert_ok();
    // A pipe whose reader is already gone, as after `| head -1` has exited.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills both descriptors, which are owned right away.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let out = strata_command(&env.root)
        .args(["images", "--format", "json"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run strata");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}\n{stderr}",
        out.status
    );
    assert_eq!(stderr, "", "a closed pipe prints nothing");
}

#[test]
fn build_takes_buildx_flags_and_writes_the_metadata_file() {
    let env = TestEnv::new();
    let meta = env.scratch.join("metadata.json");
    let platform = host_platform();
    let out = env.build(
        &context(&env),
        &[
            "-t",
            "app:1",
            "-t",
            "app:2",
            "--load",
            "--platform",
            &platform,
            "--provenance",
            "false",
            "--attest",
            "type=provenance,disabled=true",
            "--metadata-file",
            &meta.to_string_lossy(),
        ],
    );
    out.assert_ok();
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta).expect("metadata file")).expect("JSON");
    let manifest = env.manifest_digest("app:1");
    assert_eq!(v["containerimage.digest"], manifest.as_str(), "{v}");
    assert_eq!(
        v["containerimage.config.digest"],
        env.image_id("app:1").as_str(),
        "{v}"
    );
    let blob = util::read_blob(&env.root, &manifest);
    assert_eq!(v["containerimage.descriptor"]["digest"], manifest.as_str());
    assert_eq!(v["containerimage.descriptor"]["size"], blob.len());
    assert_eq!(
        v["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(v["image.name"], "app:1,app:2", "{v}");
    let build_ref = v["buildx.build.ref"].as_str().expect("buildx.build.ref");
    assert!(build_ref.starts_with("strata/local/"), "{v}");
    // BuildKit names the single platform in the descriptor.
    let descriptor_platform = format!(
        "{}/{}",
        v["containerimage.descriptor"]["platform"]["os"]
            .as_str()
            .unwrap_or_default(),
        v["containerimage.descriptor"]["platform"]["architecture"]
            .as_str()
            .unwrap_or_default()
    );
    assert_eq!(descriptor_platform, platform, "{v}");
    // buildx adds the build record's provenance (min mode: no `metadata`) whatever
    // `--provenance` says about the image.
    let provenance = &v["buildx.build.provenance"];
    assert_eq!(
        provenance["buildType"], "https://mobyproject.org/buildkit@v1",
        "{v}"
    );
    assert!(
        provenance["invocation"]["parameters"]["frontend"] == "dockerfile.v0",
        "{v}"
    );
    assert!(provenance.get("metadata").is_none(), "{v}");
    // The keys are exactly buildx's for an image build.
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "buildx.build.provenance",
            "buildx.build.ref",
            "containerimage.config.digest",
            "containerimage.descriptor",
            "containerimage.digest",
            "image.name",
        ],
        "{v}"
    );

    // BUILDX_METADATA_PROVENANCE: max keeps `metadata`, disabled drops the key.
    for (setting, has_provenance, has_metadata) in [("max", true, true), ("disabled", false, false)]
    {
        let mut cmd = strata_command(&env.root);
        cmd.env("BUILDX_METADATA_PROVENANCE", setting)
            .args([
                "build",
                "--progress",
                "plain",
                "-t",
                "app:1",
                "--metadata-file",
            ])
            .arg(&meta)
            .arg(context(&env));
        let out = util::Output::from_process(format!("{cmd:?}"), cmd.output().expect("run"));
        out.assert_ok();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(&meta).expect("metadata file")).expect("JSON");
        let provenance = v.get("buildx.build.provenance");
        assert_eq!(provenance.is_some(), has_provenance, "{setting}: {v}");
        assert_eq!(
            provenance.and_then(|p| p.get("metadata")).is_some(),
            has_metadata,
            "{setting}: {v}"
        );
    }
}

/// `BUILDX_METADATA_WARNINGS=1` (buildx v0.15+): the build checks' warnings go into the
/// metadata file under `buildx.build.warnings`, as BuildKit's `VertexWarning` JSON (byte
/// fields base64); unset, false or without warnings, the key is absent.
#[test]
fn metadata_file_holds_the_check_warnings_when_buildx_metadata_warnings_is_set() {
    use base64::Engine;
    let env = TestEnv::new();
    let ctx = context(&env);
    let dockerfile = "FROM scratch as base\nCOPY hello.txt /\nMAINTAINER someone\n";
    fs::write(ctx.join("Dockerfile"), dockerfile).expect("write");
    let meta = env.scratch.join("metadata.json");
    let build = |setting: Option<&str>, ctx: &PathBuf| {
        let mut cmd = strata_command(&env.root);
        if let Some(setting) = setting {
            cmd.env("BUILDX_METADATA_WARNINGS", setting);
        } else {
            cmd.env_remove("BUILDX_METADATA_WARNINGS");
        }
        cmd.args([
            "build",
            "--progress",
            "plain",
            "-t",
            "warn:1",
            "--metadata-file",
        ])
        .arg(&meta)
        .arg(ctx);
        let out = util::Output::from_process(format!("{cmd:?}"), cmd.output().expect("run"));
        out.assert_ok();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(&meta).expect("metadata file")).expect("JSON");
        v
    };
    for setting in [None, Some("0"), Some("false"), Some("yes")] {
        let v = build(setting, &ctx);
        assert!(v.get("buildx.build.warnings").is_none(), "{setting:?}: {v}");
        assert!(v.get("containerimage.digest").is_some(), "{setting:?}: {v}");
    }
    let b64 = |s: &serde_json::Value| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        String::from_utf8(bytes).expect("UTF-8")
    };
    for setting in ["1", "true"] {
        let v = build(Some(setting), &ctx);
        let warnings = v["buildx.build.warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("{setting}: no warnings: {v}"));
        assert_eq!(warnings.len(), 2, "{v}");
        let expected = [
            (
                "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
                "The 'as' keyword should match the case of the 'from' keyword",
                "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
                1,
            ),
            (
                "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 3)",
                "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
                "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/",
                3,
            ),
        ];
        for (w, (short, detail, url, line)) in warnings.iter().zip(expected) {
            assert_eq!(w["level"], 1, "{w}");
            assert_eq!(b64(&w["short"]), short, "{w}");
            let details: Vec<String> = w["detail"]
                .as_array()
                .expect("detail list")
                .iter()
                .map(b64)
                .collect();
            assert_eq!(details, [detail], "{w}");
            assert_eq!(w["url"], url, "{w}");
            assert_eq!(w["sourceInfo"]["filename"], "Dockerfile", "{w}");
            assert_eq!(w["sourceInfo"]["language"], "Dockerfile", "{w}");
            assert_eq!(b64(&w["sourceInfo"]["data"]), dockerfile, "{w}");
            assert_eq!(
                w["range"],
                serde_json::json!([{"start": {"line": line}, "end": {"line": line}}]),
                "{w}"
            );
            let vertex = w["vertex"].as_str().unwrap_or_default();
            assert!(vertex.starts_with("sha256:"), "{w}");
        }
    }
    // A Dockerfile without findings: no key, even when asked.
    let clean = context(&env);
    let v = build(Some("1"), &clean);
    assert!(v.get("buildx.build.warnings").is_none(), "{v}");
}

#[test]
fn build_refuses_docker_archives_of_multi_platform_images_and_attestations() {
    let env = TestEnv::new();
    let ctx = context(&env);
    let other = if host_platform() == "linux/s390x" {
        "linux/amd64"
    } else {
        "linux/s390x"
    };
    let list = format!("{},{other}", host_platform());
    let cases: [(&[&str], &str, i32); 3] = [
        (
            &["--platform", &list, "-o", "type=docker,dest=multi.tar"],
            "docker exporter does not currently support exporting manifest lists",
            2,
        ),
        (&["--sbom", "true"], "attestations are not supported yet", 1),
        (
            &["--attest", "type=sbom"],
            "attestations are not supported yet",
            1,
        ),
    ];
    for (args, message, code) in cases {
        let out = env.build(&ctx, args);
        assert_eq!(out.status, Some(code), "{args:?}\n{out}");
        assert!(out.stderr.contains(message), "{args:?}\n{out}");
    }
    let images = env.strata(&["images", "-q"]);
    assert_eq!(images.stdout.trim(), "", "a refused build stores nothing");

    // One other platform, and nothing to run: built without emulation, for that platform.
    env.build(&ctx, &["--platform", other, "-t", "other:1"])
        .assert_ok();
    let config = util::image_config(&env.root, "other:1");
    let (os, arch) = other.split_once('/').expect("os/arch");
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some(os), Some(arch)),
        "{config}"
    );
}

#[test]
fn version_names_the_commit() {
    let env = TestEnv::new();
    let out = env.strata(&["version"]);
    out.assert_ok();
    let commit = out
        .stdout
        .trim()
        .strip_prefix(concat!(
            "strata version ",
            env!("CARGO_PKG_VERSION"),
            ", build "
        ))
        .unwrap_or_else(|| panic!("{out}"));
    // The commit must be one of this repository's (HEAD may have moved since the build).
    let known = std::process::Command::new("git")
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{commit}^{{commit}}"),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run git");
    let in_git = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        assert_eq!(commit.len(), 12, "{out}");
        assert!(
            known.status.success(),
            "{commit} is not a commit here\n{out}"
        );
    } else {
        eprintln!("not a git checkout: only checking that `version` says so");
        assert_eq!(commit, "unknown", "{out}");
    }
}

#[test]
fn image_subcommands_are_docker_aliases() {
    let env = TestEnv::new();
    env.build(&context(&env), &["-t", "app:1"]).assert_ok();
    env.strata(&["image", "tag", "app:1", "app:alias"])
        .assert_ok();
    assert_eq!(
        env.manifest_digest("app:alias"),
        env.manifest_digest("app:1")
    );
    let history = env.strata(&["image", "history", "app:alias"]);
    history.assert_ok();
    assert!(history.stdout.contains("COPY hello.txt /"), "{history}");
    let archive = env.scratch.join("app.tar");
    let archive = archive.to_string_lossy();
    env.strata(&["image", "save", "-o", &archive, "app:alias"])
        .assert_ok();
    env.strata(&["rmi", "app:alias"]).assert_ok();
    env.strata(&["image", "load", "-i", &archive]).assert_ok();
    assert_eq!(
        env.manifest_digest("app:alias"),
        env.manifest_digest("app:1")
    );
}

#[test]
fn build_writes_every_output_type_buildx_has() {
    let env = TestEnv::new();
    let ctx = context(&env);
    fs::create_dir_all(ctx.join("sub")).expect("mkdir");
    fs::write(ctx.join("sub/deep.txt"), "deep\n").expect("write");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\nCOPY sub /sub\n",
    )
    .expect("write");
    let s = |p: &str| env.scratch.join(p).to_string_lossy().into_owned();
    let (local, fs_tar, oci_tar, layout, docker_tar) = (
        s("local"),
        s("fs.tar"),
        s("oci.tar"),
        s("layout"),
        s("docker.tar"),
    );
    env.build(
        &ctx,
        &[
            "-t",
            "app:1",
            "-o",
            &local,
            "--output",
            &format!("type=tar,dest={fs_tar}"),
            "--output",
            &format!("type=oci,dest={oci_tar}"),
            "--output",
            &format!("type=oci,dest={layout},tar=false"),
            "--output",
            &format!("type=docker,dest={docker_tar}"),
        ],
    )
    .assert_ok();
    let manifest = env.manifest_digest("app:1");
    // type=local: the image's filesystem, as files.
    assert_eq!(
        fs::read_to_string(format!("{local}/hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::read_to_string(format!("{local}/sub/deep.txt")).unwrap(),
        "deep\n"
    );
    // type=tar: the same filesystem, one tar.
    let names = util::tar_entry_names(&fs::read(&fs_tar).expect("fs.tar")[..]);
    assert_eq!(names, ["hello.txt", "sub/", "sub/deep.txt"], "{names:?}");
    // type=oci: index.json names the built manifest; tar=false: the same as a directory.
    let oci_names = util::tar_entry_names(&fs::read(&oci_tar).expect("oci.tar")[..]);
    assert!(
        oci_names.contains(&"index.json".to_string()),
        "{oci_names:?}"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{layout}/index.json")).expect("index.json"))
            .expect("JSON");
    assert_eq!(
        index["manifests"][0]["digest"],
        manifest.as_str(),
        "{index}"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"], "docker.io/library/app:1",
        "{index}"
    );
    let hex = manifest.trim_start_matches("sha256:");
    assert!(
        std::path::Path::new(&format!("{layout}/blobs/sha256/{hex}")).is_file(),
        "the layout holds the manifest blob"
    );
    // type=docker: what `docker load` takes; strata loads it into an empty root.
    let other = TestEnv::new();
    other.strata(&["load", "-i", &docker_tar]).assert_ok();
    assert_eq!(other.image_id("app:1"), env.image_id("app:1"));
}

#[test]
fn build_writes_a_tar_to_stdout_and_tags_image_outputs() {
    let env = TestEnv::new();
    let ctx = context(&env);
    let out = strata_command(&env.root)
        .args(["build", "--progress", "plain", "-o", "-"])
        .arg(&ctx)
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(util::tar_entry_names(&out.stdout[..]), ["hello.txt"]);
    env.build(
        &ctx,
        &["--output", "type=image,\"name=app:a,app:b\",push=false"],
    )
    .assert_ok();
    assert_eq!(env.manifest_digest("app:a"), env.manifest_digest("app:b"));
}

#[test]
fn build_refuses_bad_outputs_as_buildx_does() {
    let env = TestEnv::new();
    let ctx = context(&env);
    let file = env.scratch.join("a-file");
    fs::write(&file, "x").expect("write");
    let file = file.to_string_lossy().into_owned();
    let dir = env.scratch.to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["type=local".into()],
            "dest is required for local exporter",
        ),
        (vec![format!("type=local,dest={file}")], "is a file"),
        (vec![format!("type=tar,dest={dir}")], "is a directory"),
        (vec!["type=bogus,dest=x".into()], "unknown type \"bogus\""),
        (
            vec!["type=image,push=true".into()],
            "tag is needed when pushing to registry",
        ),
        (
            vec!["-".into(), "type=oci,dest=-".into()],
            "multiple outputs configured to write to stdout",
        ),
    ];
    for (outputs, message) in cases {
        let mut args = Vec::new();
        for o in &outputs {
            args.extend(["--output", o.as_str()]);
        }
        let out = env.build(&ctx, &args);
        assert_eq!(out.status, Some(2), "{args:?}\n{out}");
        assert!(out.stderr.contains(message), "{args:?}\n{out}");
    }
    let images = env.strata(&["images", "-q"]);
    assert_eq!(images.stdout.trim(), "", "a refused build stores nothing");
}

#[test]
fn build_sets_labels_and_manifest_annotations() {
    let env = TestEnv::new();
    let ctx = context(&env);
    env.build(
        &ctx,
        &[
            "-t",
            "app:1",
            "--build-arg",
            EPOCH,
            "--label",
            "org.example.team=infra",
            "--label",
            "empty",
            "--annotation",
            "org.opencontainers.image.title=App",
            "--annotation",
            "manifest:org.example.level=manifest",
        ],
    )
    .assert_ok();
    let config = util::image_config(&env.root, "app:1");
    assert_eq!(
        config["config"]["Labels"]["org.example.team"], "infra",
        "{config}"
    );
    assert_eq!(config["config"]["Labels"]["empty"], "", "{config}");
    let manifest = util::read_blob_json(&env.root, &env.manifest_digest("app:1"));
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({
            "org.opencontainers.image.title": "App",
            "org.example.level": "manifest",
        }),
        "{manifest}"
    );
    // A different annotation is a different image, even from the cache; the config (its
    // `created` pinned by SOURCE_DATE_EPOCH, whatever second each build ends in) is the same.
    env.build(
        &ctx,
        &[
            "-t",
            "app:2",
            "--build-arg",
            EPOCH,
            "--label",
            "org.example.team=infra",
            "--label",
            "empty",
        ],
    )
    .assert_ok();
    assert_ne!(env.manifest_digest("app:1"), env.manifest_digest("app:2"));
    assert_eq!(env.image_id("app:1"), env.image_id("app:2"), "same config");

    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["--label", "=x"],
            2,
            "invalid --label \"=x\": want KEY=VALUE",
        ),
        (&["--annotation", "novalue"], 2, "expected key=value"),
        (
            &["--annotation", "bogus:k=v"],
            2,
            "unknown annotation type \"bogus\"",
        ),
        (
            &["--annotation", "manifest[linux:k=v"],
            2,
            "invalid annotation type",
        ),
        // BuildKit's rule: no index without several platforms or a pushed provenance.
        (
            &["--annotation", "index:k=v"],
            1,
            "index annotations not supported for single platform export",
        ),
        (
            &["--annotation", "manifest-descriptor:k=v"],
            1,
            "index annotations not supported for single platform export",
        ),
        (
            &["--annotation", "index-descriptor:k=v"],
            1,
            "index annotations not supported for single platform export",
        ),
    ];
    for (args, status, message) in cases {
        let out = env.build(&ctx, args);
        assert_eq!(out.status, Some(status), "{args:?}\n{out}");
        assert!(out.stderr.contains(message), "{args:?}\n{out}");
    }
}

/// `manifest[PLATFORM]:` as BuildKit counts it: in a build of several platforms the
/// annotation goes on that platform's manifest only and wins over an unqualified one; a
/// platform the build does not make is an error; a single-platform build drops it. The
/// build's index (stored, no push needed) gets `index:` and `manifest-descriptor:`, and an
/// OCI archive's `index.json` entry `index-descriptor:`.
#[test]
fn a_platform_qualified_annotation_goes_on_that_platform_only() {
    let env = TestEnv::new();
    let ctx = context(&env);
    let both = "linux/amd64,linux/arm64";
    let annotations = |root: &std::path::Path, digest: &str| {
        util::read_blob_json(root, digest)["annotations"].clone()
    };
    let oci = env.scratch.join("mp-oci.tar");
    env.build(
        &ctx,
        &[
            "-t",
            "mp:1",
            "--platform",
            both,
            "--annotation",
            "org.example.k=all",
            "--annotation",
            "manifest[linux/arm64]:org.example.k=arm",
            "--annotation",
            "manifest[linux/arm64/v8]:org.example.url=u",
            "--annotation",
            "index:org.example.i=index",
            "--annotation",
            "manifest-descriptor[linux/amd64]:org.example.d=amd",
            "--annotation",
            "index-descriptor:org.example.x=top",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
        ],
    )
    .assert_ok();
    let index = util::read_blob_json(&env.root, &env.manifest_digest("mp:1"));
    assert_eq!(
        index["annotations"],
        serde_json::json!({"org.example.i": "index"})
    );
    let entries = index["manifests"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{index}");
    for entry in entries {
        let digest = entry["digest"].as_str().expect("digest");
        let (want, descriptor) = match entry["platform"]["architecture"].as_str() {
            Some("arm64") => (
                serde_json::json!({"org.example.k": "arm", "org.example.url": "u"}),
                serde_json::Value::Null,
            ),
            _ => (
                serde_json::json!({"org.example.k": "all"}),
                serde_json::json!({"org.example.d": "amd"}),
            ),
        };
        assert_eq!(annotations(&env.root, digest), want, "{entry}");
        assert_eq!(entry["annotations"], descriptor, "{entry}");
    }
    let listed = std::process::Command::new("tar")
        .args(["-xOf", &oci.to_string_lossy(), "index.json"])
        .output()
        .expect("tar");
    let top: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("index.json");
    assert_eq!(
        top["manifests"][0]["annotations"]["org.example.x"], "top",
        "{top}"
    );
    assert_eq!(
        top["manifests"][0]["digest"],
        env.manifest_digest("mp:1"),
        "{top}"
    );

    let out = env.build(
        &ctx,
        &[
            "--platform",
            both,
            "--annotation",
            "manifest[linux/s390x]:k=v",
        ],
    );
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("invalid annotation: no platform linux/s390x found in source"),
        "{out}"
    );

    let host = host_platform();
    env.build(
        &ctx,
        &[
            "-t",
            "single:1",
            "--annotation",
            "org.example.k=all",
            "--annotation",
            &format!("manifest[{host}]:org.example.k=host"),
            "--annotation",
            "manifest[linux/s390x]:org.example.other=x",
        ],
    )
    .assert_ok();
    assert_eq!(
        annotations(&env.root, &env.manifest_digest("single:1")),
        serde_json::json!({"org.example.k": "all"})
    );
}

/// `--progress rawjson` and `BUILDKIT_PROGRESS`: every stderr line is one BuildKit
/// `SolveStatus` object; each step is a vertex that starts and completes under one digest.
#[test]
fn rawjson_progress_prints_one_solve_status_per_line() {
    let env = TestEnv::new();
    let ctx = context(&env);
    let by_flag = env.strata(&[
        "build",
        "--progress",
        "rawjson",
        "-t",
        "app:1",
        &ctx.to_string_lossy(),
    ]);
    by_flag.assert_ok();
    let mut cmd = strata_command(&env.root);
    cmd.env("BUILDKIT_PROGRESS", "rawjson")
        .args(["build", "--no-cache", "-t", "app:2"])
        .arg(&ctx);
    let by_env = util::Output::from_process(format!("{cmd:?}"), cmd.output().expect("run"));
    by_env.assert_ok();
    for out in [&by_flag, &by_env] {
        let statuses: Vec<serde_json::Value> = out
            .stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{out}")))
            .collect();
        let copy: Vec<&serde_json::Value> = statuses
            .iter()
            .filter_map(|s| s["vertexes"].as_array())
            .flatten()
            .filter(|v| v["name"] == "[1/1] COPY hello.txt /")
            .collect();
        assert_eq!(copy.len(), 2, "a start and an end:\n{out}");
        assert_eq!(copy[0]["digest"], copy[1]["digest"], "{out}");
        assert!(copy[0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")));
        assert!(copy[0]["started"].is_string() && copy[0]["completed"].is_null());
        assert!(copy[1]["completed"].is_string(), "{out}");
    }
    let mut cmd = strata_command(&env.root);
    cmd.env("BUILDKIT_PROGRESS", "fancy").arg("build").arg(&ctx);
    let bad = util::Output::from_process(format!("{cmd:?}"), cmd.output().expect("run"));
    assert_eq!(bad.status, Some(2), "{bad}");
    assert!(bad.stderr.contains("invalid progress mode fancy"), "{bad}");
}
