//! `strata push` of images whose layers are stored as plain tars (what `build` writes):
//! the registry gets gzip layers in a manifest of the same family, the config (so the
//! image ID) is unchanged, and a second push finds every layer already there. Real
//! `docker-registry`, real skopeo.

mod registry_common;
mod util;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use registry_common::{
    http_get, random_bytes, run, sha256_hex, skopeo_copy, Registry, RegistryOptions,
};
use store::media_types::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_MANIFEST, OCI_CONFIG,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
};
use util::{image_rootfs, Output, TestEnv};

/// The manifest the registry serves for `reference` (`skopeo inspect --raw`).
fn remote_manifest(reference: &str) -> (String, serde_json::Value) {
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}")));
    let digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));
    (digest, serde_json::from_str(&raw).expect("manifest JSON"))
}

/// A blob as the registry serves it.
fn remote_blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let (status, body) = http_get(&reg.addr, &format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(status, 200, "GET blob {digest}");
    body
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip layer");
    out
}

/// Checks that each layer of `manifest` is `layer_type` and gunzips to the tar whose
/// digest the config lists as its diff_id.
#[track_caller]
fn assert_gzip_layers(reg: &Registry, repo: &str, manifest: &serde_json::Value, layer_type: &str) {
    let config = remote_blob(
        reg,
        repo,
        manifest["config"]["digest"].as_str().expect("config"),
    );
    let config: serde_json::Value = serde_json::from_slice(&config).expect("config JSON");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), diff_ids.len(), "{manifest}");
    for (l, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(l["mediaType"], layer_type, "{manifest}");
        let blob = remote_blob(reg, repo, l["digest"].as_str().expect("digest"));
        assert_eq!(blob.len() as u64, l["size"].as_u64().expect("size"));
        let tar = gunzip(&blob);
        assert_eq!(
            format!("sha256:{}", sha256_hex(&tar)),
            diff_id.as_str().expect("diff_id"),
            "layer {} does not gunzip to its diff_id",
            l["digest"]
        );
    }
}

/// Every path under `dir` with its type, mode and content (or link target).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let meta = fs::symlink_metadata(&path).expect("stat");
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link {}", fs::read_link(&path).expect("readlink").display())
            } else if meta.is_dir() {
                walk(root, &path, out);
                "dir".to_string()
            } else {
                format!("file {}", sha256_hex(&fs::read(&path).expect("read")))
            };
            out.insert(rel, format!("{what} {mode:o}"));
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn layer_lines(out: &Output, status: &str) -> usize {
    out.stdout
        .lines()
        .filter(|l| l.ends_with(&format!(": {status}")))
        .count()
}

fn pushed_digest(out: &Output) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.split(": digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `digest:` line in push output:\n{out}"))
        .to_string()
}

#[test]
fn push_of_a_built_image_sends_gzip_layers_and_pulls_back_the_same_image() {
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::with_busybox();
    let ctx = env.scratch.join("app");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY data.bin text.txt /data/\nRUN echo built > /built.txt && chmod 0750 /built.txt\n",
    )
    .expect("Dockerfile");
    fs::write(ctx.join("data.bin"), random_bytes(3 << 20, 11)).expect("data");
    fs::write(ctx.join("text.txt"), "compressible line\n".repeat(200_000)).expect("text");
    let name = format!("{}/gz/app:1", reg.addr);
    env.build(&ctx, &["-t", &name]).assert_ok();
    let local_manifest = env.manifest_digest(&name);
    let image_id = env.image_id(&name);
    let local: serde_json::Value = util::read_blob_json(&env.root, &local_manifest);
    let local_layers = local["layers"].as_array().expect("layers").clone();
    assert!(
        local_layers.iter().all(|l| l["mediaType"] == OCI_LAYER_TAR),
        "the build stores plain layers: {local}"
    );

    let out = env.strata(&["push", &name]);
    out.assert_ok();
    assert_eq!(layer_lines(&out, "Pushed"), local_layers.len(), "{out}");
    let pushed = pushed_digest(&out);
    assert_ne!(
        pushed, local_manifest,
        "the pushed manifest names gzip layers"
    );

    // What the registry holds: an OCI manifest, same config, every layer gzip.
    let (remote_digest, remote) = remote_manifest(&name);
    assert_eq!(remote_digest, pushed);
    assert_eq!(remote["mediaType"], OCI_MANIFEST);
    assert_eq!(remote["config"]["digest"], image_id.as_str());
    assert_gzip_layers(&reg, "gz/app", &remote, OCI_LAYER_GZIP);
    // Not tagged locally: the local tag still names the built manifest.
    assert_eq!(env.manifest_digest(&name), local_manifest);

    // Again: nothing compressed or uploaded anew, the same manifest.
    let blobs_before = fs::read_dir(env.root.join("blobs/sha256"))
        .expect("blobs")
        .count();
    let out = env.strata(&["push", &name]);
    out.assert_ok();
    assert_eq!(
        layer_lines(&out, "Layer already exists"),
        local_layers.len(),
        "{out}"
    );
    assert_eq!(layer_lines(&out, "Pushed"), 0, "{out}");
    assert_eq!(pushed_digest(&out), pushed);
    let blobs_after = fs::read_dir(env.root.join("blobs/sha256"))
        .expect("blobs")
        .count();
    assert_eq!(blobs_after, blobs_before);

    // A second root pulls the same image (ID = config digest) and the same files.
    let other = TestEnv::new();
    let out = other.strata(&["pull", &name]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("Digest: {pushed}")), "{out}");
    assert_eq!(other.image_id(&name), image_id);
    let built = image_rootfs(&env.root, &name);
    let pulled = image_rootfs(&other.root, &name);
    let (built, pulled) = (tree(built.path()), tree(pulled.path()));
    assert!(built.contains_key("data/data.bin") && built.contains_key("built.txt"));
    assert_eq!(built, pulled);

    // skopeo copies it into an OCI layout, digest unchanged.
    let layout = tempfile::tempdir().expect("tempdir");
    skopeo_copy(
        &[],
        &format!("docker://{name}"),
        &format!("oci:{}:x", layout.path().display()),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.path().join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], pushed.as_str());
}

/// A lease of its own for one call, dropped when the statement ends.
fn lease(st: &store::Store) -> store::Lease {
    st.lease(std::time::Duration::from_secs(60)).expect("lease")
}

/// Commits `bytes` into the store's blobs.
fn put(st: &store::Store, bytes: &[u8], media_type: &str) -> serde_json::Value {
    serde_json::to_value(
        st.put_blob(&lease(st), bytes, media_type)
            .expect("put blob"),
    )
    .expect("descriptor")
}

/// Stores `manifest` and tags it `name`.
fn add_image(st: &store::Store, manifest: &serde_json::Value, media_type: &str, name: &str) {
    let bytes = serde_json::to_vec(manifest).expect("json");
    let m = st
        .put_blob(&lease(st), &bytes, media_type)
        .expect("manifest");
    let r = store::Reference::parse(name).expect("ref");
    st.add_image(&m.digest, Some(&r)).expect("add image");
}

fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    registry_common::layer_tar(name, content)
}

#[test]
fn a_docker_schema2_image_with_plain_layers_is_pushed_as_docker_gzip() {
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::new();
    let st = store::Store::open(&env.root).expect("store");
    let tars = [
        tar_with("a.txt", &b"docker layer\n".repeat(50_000)),
        tar_with("b.bin", &random_bytes(200_000, 5)),
    ];
    let layers: Vec<serde_json::Value> =
        tars.iter().map(|t| put(&st, t, DOCKER_LAYER_TAR)).collect();
    let diff_ids: Vec<String> = tars
        .iter()
        .map(|t| format!("sha256:{}", sha256_hex(t)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = put(
        &st,
        &serde_json::to_vec(&config).expect("json"),
        DOCKER_CONFIG,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": layers,
    });
    let name = format!("{}/docker/plain:1", reg.addr);
    add_image(&st, &manifest, DOCKER_MANIFEST, &name);

    let out = env.strata(&["push", &name]);
    out.assert_ok();
    let (digest, remote) = remote_manifest(&name);
    assert_eq!(pushed_digest(&out), digest);
    assert_eq!(remote["mediaType"], DOCKER_MANIFEST);
    assert_eq!(remote["config"], config);
    assert_gzip_layers(&reg, "docker/plain", &remote, DOCKER_LAYER_GZIP);

    let other = TestEnv::new();
    other.strata(&["pull", &name]).assert_ok();
    assert_eq!(
        other.image_id(&name),
        config["digest"].as_str().expect("digest")
    );
}

#[test]
fn only_plain_layers_change_and_order_and_annotations_stay() {
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::new();
    let st = store::Store::open(&env.root).expect("store");
    let plain0 = tar_with("bottom.txt", &b"bottom\n".repeat(10_000));
    let gz_tar = tar_with("middle.txt", &b"middle\n".repeat(10_000));
    let plain2 = tar_with("top.txt", &b"top\n".repeat(10_000));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &gz_tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let mut layers = vec![
        put(&st, &plain0, OCI_LAYER_TAR),
        put(&st, &gz, OCI_LAYER_GZIP),
        put(&st, &plain2, OCI_LAYER_TAR),
    ];
    for (i, l) in layers.iter_mut().enumerate() {
        l["annotations"] = serde_json::json!({"org.example.layer": format!("n{i}")});
    }
    let diff_ids: Vec<String> = [&plain0, &gz_tar, &plain2]
        .iter()
        .map(|t| format!("sha256:{}", sha256_hex(t)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = put(&st, &serde_json::to_vec(&config).expect("json"), OCI_CONFIG);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers,
        "annotations": {"org.opencontainers.image.title": "mixed"},
    });
    let name = format!("{}/mixed/app:1", reg.addr);
    add_image(&st, &manifest, OCI_MANIFEST, &name);

    env.strata(&["push", &name]).assert_ok();
    let (_, remote) = remote_manifest(&name);
    assert_eq!(remote["annotations"], manifest["annotations"]);
    assert_eq!(remote["config"], config);
    let got = remote["layers"].as_array().expect("layers");
    assert_eq!(got.len(), 3);
    // The stored gzip layer goes as it is.
    assert_eq!(got[1], layers[1]);
    for (i, l) in got.iter().enumerate() {
        assert_eq!(
            l["annotations"]["org.example.layer"],
            format!("n{i}"),
            "{remote}"
        );
    }
    assert_ne!(got[0]["digest"], layers[0]["digest"]);
    assert_ne!(got[2]["digest"], layers[2]["digest"]);
    assert_gzip_layers(&reg, "mixed/app", &remote, OCI_LAYER_GZIP);
}

/// A first push (monolithic, the default) uploads each plain layer's gzip bytes while they
/// are written to the store. The registry gets the same manifest as from the path that
/// compresses first and uploads the stored blob after (chunked mode), from a copy of the
/// same root, and every streamed layer gunzips to its diff_id.
#[test]
fn a_streamed_first_push_gives_the_manifest_digest_of_compress_then_upload() {
    let streamed_reg = Registry::start(RegistryOptions::default());
    let stored_reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::with_busybox();
    let ctx = env.scratch.join("app");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY data.bin /data/\nCOPY text.txt /data/\n",
    )
    .expect("Dockerfile");
    fs::write(ctx.join("data.bin"), random_bytes(2 << 20, 12)).expect("data");
    fs::write(
        ctx.join("text.txt"),
        "a compressible line\n".repeat(100_000),
    )
    .expect("text");
    env.build(&ctx, &["-t", "stream/app:1"]).assert_ok();
    let local: serde_json::Value =
        util::read_blob_json(&env.root, &env.manifest_digest("docker.io/stream/app:1"));
    let plain = local["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["mediaType"] == OCI_LAYER_TAR)
        .count();
    assert!(plain >= 2, "the build stores plain layers: {local}");
    // The same root, not yet pushed, for the compress-then-upload path.
    let copy = env.scratch.join("root-copy");
    run(Command::new("cp").arg("-a").arg(&env.root).arg(&copy));

    let docker_config = tempfile::tempdir().expect("tempdir");
    let client = registry_client::Client::new(registry_client::ClientOptions {
        docker_config_dir: Some(docker_config.path().to_path_buf()),
        progress: registry_client::ProgressMode::Quiet,
        ..Default::default()
    })
    .expect("client");
    let push = |root: &Path, reg: &Registry, upload| {
        let st = store::Store::open(root).expect("store");
        let local = store::Reference::parse("stream/app:1").expect("ref");
        let m = st.resolve(&local).expect("built image");
        let r = store::Reference::parse(&format!("{}/stream/app:1", reg.addr)).expect("ref");
        st.tag(&m, &r).expect("tag");
        let opts = registry_client::PushOptions {
            upload,
            ..Default::default()
        };
        registry_client::push_blocking(&client, &st, &r, &opts).expect("push")
    };
    let streamed = push(
        &env.root,
        &streamed_reg,
        registry_client::UploadMode::Monolithic,
    );
    let stored = push(
        &copy,
        &stored_reg,
        registry_client::UploadMode::Chunked(1 << 30),
    );
    assert_eq!(streamed.streamed, plain, "every plain layer was streamed");
    assert_eq!(stored.streamed, 0, "chunked mode uploads the stored gzip");
    assert_eq!(
        streamed.digest, stored.digest,
        "the streamed push names the same gzip layers"
    );
    let (remote_digest, remote) = remote_manifest(&format!("{}/stream/app:1", streamed_reg.addr));
    assert_eq!(remote_digest, streamed.digest.to_string());
    assert_gzip_layers(&streamed_reg, "stream/app", &remote, OCI_LAYER_GZIP);
}

/// An image of one 6 MiB plain layer (one layer: no other layer's gzip form is made beside
/// it), built into `env` as `name`.
fn build_one_layer(env: &TestEnv, name: &str) {
    let ctx = env.scratch.join("app");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY data.bin /data/\n",
    )
    .expect("Dockerfile");
    fs::write(ctx.join("data.bin"), random_bytes(6 << 20, 13)).expect("data");
    env.build(&ctx, &["-t", name]).assert_ok();
}

/// Damages the plain layer of `name` (in its second chunk) and pushes it: the push finds
/// the chunk whose CRC-32 is not the one recorded when the layer was written, and fails
/// naming the blob and the byte range. The registry gets no manifest and the store no
/// gzip form.
fn assert_damaged_layer_is_not_pushed(env: &TestEnv, reg: &Registry, name: &str, repo: &str) {
    let local: serde_json::Value = util::read_blob_json(&env.root, &env.manifest_digest(name));
    let layer = local["layers"][0].clone();
    assert_eq!(layer["mediaType"], OCI_LAYER_TAR, "{local}");
    let digest = layer["digest"].as_str().expect("digest");
    let blob = env
        .root
        .join("blobs/sha256")
        .join(&digest["sha256:".len()..]);
    let chunk = store::archive::gzip::CHUNK as u64;
    assert!(layer["size"].as_u64().expect("size") > chunk + 100);
    let mut bytes = fs::read(&blob).expect("read layer");
    bytes[chunk as usize + 100] ^= 0x20;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(&blob, &bytes).expect("damage layer");
    let blobs_before = tree(&env.root.join("blobs"));

    let out = env.strata(&["push", name]);
    assert_ne!(out.status, Some(0), "{out}");
    assert!(
        out.stderr.contains(digest)
            && out.stderr.contains(&format!("from offset {chunk} "))
            && out.stderr.contains("CRC-32"),
        "{out}"
    );
    let (status, _) = http_get(&reg.addr, &format!("/v2/{repo}/manifests/1"));
    assert_eq!(status, 404, "the registry holds no manifest");
    assert_eq!(
        tree(&env.root.join("blobs")),
        blobs_before,
        "no gzip form stored"
    );
    assert_eq!(
        fs::read_dir(env.root.join("ingest"))
            .expect("ingest")
            .count(),
        0
    );
}

#[test]
fn a_built_layer_damaged_on_disk_is_not_pushed() {
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::new();
    let name = format!("{}/damaged/app:1", reg.addr);
    build_one_layer(&env, &name);
    assert_damaged_layer_is_not_pushed(&env, &reg, &name, "damaged/app");
}

/// `load` takes the chunk CRCs of the plain layers it reads, as a build does.
#[test]
fn a_loaded_layer_damaged_on_disk_is_not_pushed() {
    let reg = Registry::start(RegistryOptions::default());
    let built = TestEnv::new();
    let name = format!("{}/loaded/app:1", reg.addr);
    build_one_layer(&built, &name);
    let archive = built.scratch.join("app.tar");
    let archive = archive.to_str().expect("utf-8");
    built.strata(&["save", "-o", archive, &name]).assert_ok();
    let env = TestEnv::new();
    env.strata(&["load", "-i", archive]).assert_ok();
    assert_damaged_layer_is_not_pushed(&env, &reg, &name, "loaded/app");
}
