//! buildx flags that reach a registry, against a real docker-registry: provenance pushed in
//! an image index beside the image (issue 19).

mod registry_common;
mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use registry_common::{Registry, RegistryOptions};
use util::TestEnv;

fn context(env: &TestEnv) -> PathBuf {
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("hello.txt"), "hello\n").expect("write");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG GREETING\nCOPY hello.txt /\n",
    )
    .expect("write");
    ctx
}

/// `skopeo inspect --raw`: the manifest bytes as the registry serves them.
fn raw_manifest(reference: &str) -> Vec<u8> {
    registry_common::require("skopeo", "skopeo");
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo inspect {reference}: {out:?}");
    out.stdout
}

fn blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.trim_start_matches("sha256:");
    let bytes = fs::read(layout.join("blobs/sha256").join(hex)).expect("blob in the layout");
    serde_json::from_slice(&bytes).expect("JSON blob")
}

#[test]
fn build_push_attaches_slsa_provenance_in_an_image_index() {
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::with_busybox();
    let ctx = context(&env);
    let name = format!("{}/app/prov:1", reg.addr);
    let meta = env.scratch.join("metadata.json");
    let builder_id = "https://github.com/o/r/actions/runs/1";
    env.build(
        &ctx,
        &[
            "-t",
            &name,
            "--push",
            "--attest",
            &format!("type=provenance,mode=max,builder-id={builder_id}"),
            "--build-arg",
            "GREETING=hi",
            "--annotation",
            "index:org.opencontainers.image.description=demo",
            "--annotation",
            "manifest-descriptor:org.example.entry=image",
            "--metadata-file",
            &meta.to_string_lossy(),
        ],
    )
    .assert_ok();

    let raw = raw_manifest(&name);
    let index: serde_json::Value = serde_json::from_slice(&raw).expect("JSON");
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let image = &index["manifests"][0];
    let attestation = &index["manifests"][1];
    assert_eq!(image["platform"]["os"], "linux", "{index}");
    assert_eq!(
        attestation["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        attestation["annotations"]["vnd.docker.reference.digest"],
        image["digest"]
    );
    assert_eq!(
        attestation["platform"],
        serde_json::json!({"architecture": "unknown", "os": "unknown"})
    );
    // `index:` on the index, `manifest-descriptor:` on the image's entry only.
    assert_eq!(
        index["annotations"]["org.opencontainers.image.description"], "demo",
        "{index}"
    );
    assert_eq!(
        image["annotations"]["org.example.entry"], "image",
        "{index}"
    );
    assert!(
        attestation["annotations"]["org.example.entry"].is_null(),
        "{index}"
    );
    // The metadata file names the pushed index, as buildx's does.
    let metadata: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta).expect("metadata")).expect("JSON");
    let index_digest = format!("sha256:{}", registry_common::sha256_hex(&raw));
    assert_eq!(
        metadata["containerimage.digest"],
        index_digest.as_str(),
        "{metadata}"
    );

    // skopeo copies the whole index, attestation included, into an OCI layout.
    let layout = env.scratch.join("layout");
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:1", layout.display()))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo copy: {out:?}");
    let manifest = blob_json(&layout, attestation["digest"].as_str().expect("digest"));
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
    assert_eq!(
        layer["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v0.2"
    );
    let statement = blob_json(&layout, layer["digest"].as_str().expect("digest"));
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v0.1");
    assert_eq!(
        statement["predicateType"],
        "https://slsa.dev/provenance/v0.2"
    );
    let image_hex = image["digest"]
        .as_str()
        .expect("digest")
        .trim_start_matches("sha256:");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"], image_hex,
        "{statement}"
    );
    let predicate = &statement["predicate"];
    assert_eq!(predicate["builder"]["id"], builder_id);
    assert_eq!(
        predicate["buildType"],
        "https://mobyproject.org/buildkit@v1"
    );
    assert_eq!(
        predicate["invocation"]["parameters"]["args"]["build-arg:GREETING"], "hi",
        "{predicate}"
    );
    let busybox = env.manifest_digest("busybox:latest");
    let material = &predicate["materials"][0];
    assert!(
        material["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("pkg:docker/docker.io/library/busybox@latest")),
        "{predicate}"
    );
    assert_eq!(
        material["digest"]["sha256"],
        busybox.trim_start_matches("sha256:")
    );
    // mode=max: the Dockerfile itself.
    let info = &predicate["metadata"]["https://mobyproject.org/buildkit@v1#metadata"]["source"]
        ["infos"][0];
    assert_eq!(info["filename"], "Dockerfile", "{predicate}");
    assert_eq!(
        info["data"], "RlJPTSBidXN5Ym94CkFSRyBHUkVFVElORwpDT1BZIGhlbGxvLnR4dCAvCg==",
        "base64 of the Dockerfile"
    );
}

/// The argument lists docker/build-push-action builds (src/context.ts `getArgs`: the build
/// arguments, then `--builder`, `--load`, `--metadata-file`, `--push`, then the context).
#[test]
fn build_push_action_argument_lists_work() {
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::with_busybox();
    let ctx = context(&env);
    let ctx_arg = ctx.to_string_lossy().into_owned();
    let s = |p: &str| env.scratch.join(p).to_string_lossy().into_owned();
    let (iid, meta) = (s("iidfile"), s("metadata.json"));
    let tag = format!("{}/ci/app:main", reg.addr);
    let cache = format!("{}/ci/app:buildcache", reg.addr);
    let platform = registry_client::Platform::host().to_string();
    let strata = |args: &[&str]| {
        let out = env.strata(args);
        out.assert_ok();
        out
    };
    // A public repository pushing: tags, labels, build args, registry cache, max provenance.
    strata(&[
        "build",
        "--build-arg",
        "GREETING=hi",
        "--cache-from",
        &format!("type=registry,ref={cache}"),
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max"),
        "--iidfile",
        &iid,
        "--label",
        "org.opencontainers.image.source=https://github.com/o/r",
        "--platform",
        &platform,
        "--attest",
        "type=provenance,mode=max,builder-id=https://github.com/o/r/actions/runs/1",
        "--tag",
        &tag,
        "--builder",
        "builder-0123",
        "--metadata-file",
        &meta,
        "--push",
        &ctx_arg,
    ]);
    let metadata: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta).expect("metadata")).expect("JSON");
    let raw = raw_manifest(&tag);
    let pushed = format!("sha256:{}", registry_common::sha256_hex(&raw));
    assert_eq!(
        metadata["containerimage.digest"],
        pushed.as_str(),
        "{metadata}"
    );
    assert_eq!(metadata["image.name"], tag.as_str(), "{metadata}");
    let image_id = fs::read_to_string(&iid).expect("iidfile");
    assert_eq!(metadata["containerimage.config.digest"], image_id.as_str());
    assert_eq!(
        util::image_config(&env.root, &tag)["config"]["Labels"]["org.opencontainers.image.source"],
        "https://github.com/o/r"
    );
    raw_manifest(&cache);

    // load: true (no default provenance with a docker exporter).
    strata(&[
        "build",
        "--iidfile",
        &iid,
        "--tag",
        "app:loaded",
        "--load",
        "--metadata-file",
        &meta,
        &ctx_arg,
    ]);
    assert_eq!(
        env.image_id("app:loaded"),
        fs::read_to_string(&iid).expect("iidfile")
    );

    // outputs: type=local in a private repository (min provenance, inline only; no iidfile).
    let out = s("out");
    strata(&[
        "build",
        "--output",
        &format!("type=local,dest={out}"),
        "--attest",
        "type=provenance,mode=min,inline-only=true,builder-id=https://github.com/o/r/actions/runs/2",
        "--metadata-file",
        &meta,
        &ctx_arg,
    ]);
    assert_eq!(
        fs::read_to_string(format!("{out}/hello.txt")).expect("hello.txt"),
        "hello\n"
    );
    assert!(
        Path::new(&format!("{out}/bin/busybox")).exists(),
        "the base image's files are there too"
    );
}
