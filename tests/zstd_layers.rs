//! Images whose layers are zstd (`application/vnd.oci.image.layer.v1.tar+zstd`, what
//! docker ≥ 23 and BuildKit push with `compression=zstd`): loaded from an OCI archive
//! made here with the `zstd` tool, or pulled from a registry that skopeo filled with
//! zstd layers, then used as a base by `build` (RUN and COPY over the unpacked zstd
//! layers), saved both ways, loaded again, and verified.

mod registry_common;
mod util;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use registry_common::{random_bytes, sha256_hex, skopeo_copy, Registry, RegistryOptions};
use util::{busybox_rootfs, require_tool, run, TestEnv};

const ZSTD_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const GZIP_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const FILE_TEXT: &str = "from a zstd layer\n";
const ADDED_TEXT: &str = "added by COPY\n";

/// `data` through the `zstd` tool at `level`: one frame.
fn zstd_tool(data: &[u8], level: u32) -> Vec<u8> {
    require_tool("zstd", "zstd");
    let mut child = Command::new("zstd")
        .args(["-q", "-c", &format!("-{level}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting zstd");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("zstd");
    feeder.join().expect("feeder").expect("writing to zstd");
    assert!(out.status.success(), "zstd failed: {:?}", out.status);
    out.stdout
}

/// A tar of regular files.
fn files_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, *content).expect("tar append");
    }
    b.into_inner().expect("tar finish")
}

/// Incompressible content, big enough that its layer is over 1 MiB compressed: `load`
/// streams such entries (decompressing on the side) instead of holding them in memory.
fn big_random() -> Vec<u8> {
    random_bytes(1_500_000, 7)
}

fn put_blob(layout: &Path, bytes: &[u8]) -> serde_json::Value {
    let hex = sha256_hex(bytes);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).expect("blobs dir");
    fs::write(dir.join(&hex), bytes).expect("writing blob");
    serde_json::json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip finish")
}

/// An OCI layout tagged `tag` with two layers, the busybox rootfs and `/file` with
/// `/random`. With `zstd`, zstd layers (the rootfs cut in two frames, the way parallel
/// zstd writers emit a layer); else gzip layers.
fn busybox_layout(layout: &Path, tag: &str, zstd: bool) {
    let rootfs = fs::read(busybox_rootfs()).expect("busybox rootfs");
    let file = files_tar(&[("file", FILE_TEXT.as_bytes()), ("random", &big_random())]);
    let (media_type, blobs) = if zstd {
        let (a, b) = rootfs.split_at(rootfs.len() / 2);
        let mut two_frames = zstd_tool(a, 3);
        two_frames.extend(zstd_tool(b, 19));
        (ZSTD_TYPE, [two_frames, zstd_tool(&file, 3)])
    } else {
        (GZIP_TYPE, [gzip(&rootfs), gzip(&file)])
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, blob) in [&rootfs, &file].into_iter().zip(blobs) {
        diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
        let mut d = put_blob(layout, &blob);
        d["mediaType"] = media_type.into();
        layers.push(d);
    }
    let config = serde_json::json!({
        "architecture": host_arch(), "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "rootfs"}, {"created_by": "file"}],
    });
    let mut config_desc = put_blob(layout, &serde_json::to_vec(&config).expect("json"));
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers,
    }))
    .expect("json");
    let mut manifest_desc = put_blob(layout, &manifest);
    manifest_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest_desc]});
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index.json");
}

/// Every regular file of a tar archive on disk, by normalised path.
fn tar_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(fs::File::open(path).expect("opening archive"));
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("reading entry");
        out.insert(name.trim_start_matches("./").to_string(), bytes);
    }
    out
}

/// The regular files of a plain layer tar held in memory.
fn layer_files(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in tar::Archive::new(tar).entries().expect("layer is a tar") {
        let mut entry = entry.expect("layer entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("reading layer entry");
        out.insert(name.trim_start_matches("./").to_string(), bytes);
    }
    out
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// A build context: `added.txt` and a Dockerfile that RUNs over the base's zstd layers
/// (`/file`, busybox) and COPYs on top. The RUN fails the build if a file is wrong.
fn context_over(env: &TestEnv, base: &str) -> std::path::PathBuf {
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir ctx");
    fs::write(ctx.join("added.txt"), ADDED_TEXT).expect("write");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             COPY added.txt /added.txt\n\
             RUN cat /file /added.txt > /both.txt && cat /both.txt \
                 && test \"$(cat /file)\" = \"{}\"\n",
            FILE_TEXT.trim_end()
        ),
    )
    .expect("write Dockerfile");
    ctx
}

/// `system verify` passes on the root.
#[track_caller]
fn assert_verified(env: &TestEnv) {
    let out = env.strata(&["system", "verify"]);
    out.assert_ok();
    assert!(out.stdout.trim_end().ends_with(": ok"), "{out}");
}

/// `save` (docker-archive) of `tag`: every layer comes out as a plain tar whose digest is
/// its diff_id, and the top layers hold what the build wrote.
fn check_docker_archive(env: &TestEnv, tag: &str) {
    let path = env.scratch.join("docker-archive.tar");
    env.strata(&["save", "-o", path.to_str().expect("utf-8"), tag])
        .assert_ok();
    let files = tar_files(&path);
    let manifest = json(&files["manifest.json"]);
    let item = &manifest[0];
    let config = json(&files[item["Config"].as_str().expect("Config")]);
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    let layer_paths = item["Layers"].as_array().expect("Layers");
    assert_eq!(layer_paths.len(), diff_ids.len(), "{manifest}");
    let mut merged = BTreeMap::new();
    for (p, diff_id) in layer_paths.iter().zip(diff_ids) {
        let tar = &files[p.as_str().expect("layer path")];
        assert_eq!(
            format!("sha256:{}", sha256_hex(tar)),
            diff_id.as_str().expect("diff_id"),
            "layer {p} of the docker-archive is not the plain tar of its diff_id"
        );
        merged.extend(layer_files(tar));
    }
    assert!(
        merged.contains_key("bin/busybox"),
        "no bin/busybox among {} files",
        merged.len()
    );
    assert_eq!(merged["file"], FILE_TEXT.as_bytes());
    assert!(merged["random"] == big_random(), "/random differs");
    assert_eq!(merged["added.txt"], ADDED_TEXT.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&merged["both.txt"]),
        format!("{FILE_TEXT}{ADDED_TEXT}")
    );
}

/// `save --format oci` of `tag`: the base's zstd layers go out as stored. Returns the
/// archive's path.
fn check_oci_archive(env: &TestEnv, tag: &str) -> std::path::PathBuf {
    let path = env.scratch.join("oci-archive.tar");
    env.strata(&[
        "save",
        "--format",
        "oci",
        "-o",
        path.to_str().expect("utf-8"),
        tag,
    ])
    .assert_ok();
    let files = tar_files(&path);
    let index = json(&files["index.json"]);
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let blob = |d: &str| &files[&format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))];
    let manifest = json(blob(digest));
    let layers = manifest["layers"].as_array().expect("layers");
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().expect("mediaType"))
        .collect();
    assert_eq!(&types[..2], [ZSTD_TYPE, ZSTD_TYPE], "{manifest}");
    for l in &layers[..2] {
        let bytes = blob(l["digest"].as_str().expect("digest"));
        assert!(
            bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            "not zstd: {l}"
        );
    }
    path
}

/// Loads `archive` into a fresh root and builds on the image there: the zstd layers
/// came through `load` intact and unpack again.
fn load_and_build_again(archive: &Path, tag: &str) {
    let env = TestEnv::new();
    env.strata(&["load", "-i", archive.to_str().expect("utf-8")])
        .assert_ok();
    let ctx = env.scratch.join("again");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {tag}\nRUN test \"$(cat /both.txt)\" = \"$(printf '{}\\n{}')\"\n",
            FILE_TEXT.trim_end(),
            ADDED_TEXT.trim_end()
        ),
    )
    .expect("write Dockerfile");
    env.build(&ctx, &["-t", "again:1"]).assert_ok();
    assert_verified(&env);
}

#[test]
fn build_on_a_zstd_image_loaded_from_an_oci_archive() {
    let env = TestEnv::new();
    let layout = env.scratch.join("layout");
    busybox_layout(&layout, "zbase:1", true);
    let archive = env.scratch.join("zbase.tar");
    tar_dir(&layout, &archive, &["oci-layout", "index.json", "blobs"]);
    env.strata(&["load", "-i", archive.to_str().expect("utf-8")])
        .assert_ok();

    let out = env.build(&context_over(&env, "zbase:1"), &["-t", "zbuilt:1"]);
    out.assert_ok();
    assert!(out.stderr.contains(ADDED_TEXT.trim_end()), "{out}");
    assert_verified(&env);

    check_docker_archive(&env, "zbuilt:1");
    let oci = check_oci_archive(&env, "zbuilt:1");
    load_and_build_again(&oci, "zbuilt:1");
    assert_verified(&env);
}

#[test]
fn build_on_a_zstd_image_pulled_from_a_registry() {
    // gzip layers that skopeo recompresses as zstd on the way into the registry.
    let reg = Registry::start(RegistryOptions::default());
    let env = TestEnv::new();
    let layout = env.scratch.join("layout");
    busybox_layout(&layout, "t", false);
    let reference = format!("{}/zstd/base:1", reg.addr);
    skopeo_copy(
        &[
            "--dest-compress-format",
            "zstd",
            "--dest-compress-level",
            "9",
        ],
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{reference}"),
    );
    env.strata(&["pull", &reference]).assert_ok();
    let manifest = util::read_blob_json(&env.root, &env.manifest_digest(&reference));
    for l in manifest["layers"].as_array().expect("layers") {
        assert_eq!(l["mediaType"], ZSTD_TYPE, "{manifest}");
    }

    env.build(&context_over(&env, &reference), &["-t", "zpulled:1"])
        .assert_ok();
    assert_verified(&env);
    check_docker_archive(&env, "zpulled:1");
    let oci = check_oci_archive(&env, "zpulled:1");
    load_and_build_again(&oci, "zpulled:1");
}

/// The manifest of the layout's only image.
fn layout_manifest(layout: &Path) -> serde_json::Value {
    let index = json(&fs::read(layout.join("index.json")).expect("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let hex = digest.trim_start_matches("sha256:");
    json(&fs::read(layout.join("blobs/sha256").join(hex)).expect("manifest blob"))
}

/// `tar -cf archive -C dir names...`
fn tar_dir(dir: &Path, archive: &Path, names: &[&str]) {
    run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(archive)
        .args(names));
}

#[test]
fn load_takes_zstd_layers_from_a_docker_archive() {
    // A docker-archive names no media types: the layer's first bytes tell it is zstd
    // (docker's own load takes such archives too).
    let env = TestEnv::new();
    let dir = env.scratch.join("docker-archive");
    busybox_layout(&dir, "unused", true);
    let manifest = layout_manifest(&dir);
    let path = |d: &serde_json::Value| {
        let hex = d["digest"].as_str().expect("digest");
        format!("blobs/sha256/{}", hex.trim_start_matches("sha256:"))
    };
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(path)
        .collect();
    let items = serde_json::json!([{
        "Config": path(&manifest["config"]),
        "RepoTags": ["zdocker:1"],
        "Layers": layers,
    }]);
    fs::write(dir.join("manifest.json"), items.to_string()).expect("manifest.json");
    let archive = env.scratch.join("zdocker.tar");
    tar_dir(&dir, &archive, &["manifest.json", "blobs"]);
    env.strata(&["load", "-i", archive.to_str().expect("utf-8")])
        .assert_ok();
    let loaded = util::read_blob_json(&env.root, &env.manifest_digest("zdocker:1"));
    for l in loaded["layers"].as_array().expect("layers") {
        assert_eq!(l["mediaType"], ZSTD_TYPE, "{loaded}");
    }
    env.build(&context_over(&env, "zdocker:1"), &["-t", "zd:2"])
        .assert_ok();
    assert_verified(&env);
}

#[test]
fn load_refuses_a_layer_whose_media_type_names_another_compression() {
    let env = TestEnv::new();
    let layout = env.scratch.join("layout");
    busybox_layout(&layout, "liar:1", true);
    // Same zstd blobs, declared gzip: the manifest (and so its digest) changes.
    let mut manifest = layout_manifest(&layout);
    for l in manifest["layers"].as_array_mut().expect("layers") {
        l["mediaType"] = GZIP_TYPE.into();
    }
    let mut desc = put_blob(&layout, &serde_json::to_vec(&manifest).expect("json"));
    desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "liar:1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    let archive = env.scratch.join("liar.tar");
    tar_dir(&layout, &archive, &["oci-layout", "index.json", "blobs"]);
    let out = env.strata(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert_ne!(out.status, Some(0), "load should refuse:\n{out}");
    assert!(
        out.stderr.contains("is zstd but its media type") && out.stderr.contains("says gzip"),
        "{out}"
    );
    let images = env.strata(&["images", "-q"]);
    images.assert_ok();
    assert_eq!(images.stdout.trim(), "", "a refused load records no image");
}

/// Like `docker import` and `docker load`: a zstd-compressed rootfs tar imports, and a
/// zstd-compressed archive loads (the store keeps the import's layer gzip, as for any
/// import; the loaded image is the saved one).
#[test]
fn import_and_load_take_zstd_compressed_input() {
    let env = TestEnv::new();
    let rootfs = fs::read(busybox_rootfs()).expect("busybox rootfs");
    let zst = env.scratch.join("rootfs.tar.zst");
    fs::write(&zst, zstd_tool(&rootfs, 3)).expect("write rootfs.tar.zst");
    env.strata(&["import", zst.to_str().expect("utf-8"), "zimport:1"])
        .assert_ok();
    let ctx = env.scratch.join("on-import");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM zimport:1\nRUN busybox true && echo ok > /ok\n",
    )
    .expect("write Dockerfile");
    env.build(&ctx, &["-t", "onimport:1"]).assert_ok();

    // A zstd-compressed docker-archive of the built image loads into a fresh root.
    let archive = env.scratch.join("saved.tar");
    env.strata(&["save", "-o", archive.to_str().expect("utf-8"), "onimport:1"])
        .assert_ok();
    let compressed = env.scratch.join("saved.tar.zst");
    fs::write(
        &compressed,
        zstd_tool(&fs::read(&archive).expect("read"), 3),
    )
    .expect("write");
    let other = TestEnv::new();
    other
        .strata(&["load", "-i", compressed.to_str().expect("utf-8")])
        .assert_ok();
    let id = |e: &TestEnv| e.image_id("onimport:1");
    assert_eq!(id(&other), id(&env), "the loaded image is the saved one");
    assert_verified(&other);

    // A truncated zstd input is refused and leaves no image behind.
    let bytes = fs::read(&zst).expect("read");
    let cut = env.scratch.join("cut.tar.zst");
    fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let out = env.strata(&["import", cut.to_str().expect("utf-8"), "cut:1"]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("zstd stream"), "{out}");
    assert!(
        !env.strata(&["images"]).stdout.contains("cut"),
        "no image from a cut input"
    );
}

/// `ADD` of a local zstd-compressed tar extracts it, as docker's ADD does; `COPY` keeps it.
#[test]
fn add_extracts_a_local_zstd_tar() {
    let env = TestEnv::with_busybox();
    let ctx = env.scratch.join("add-zst");
    fs::create_dir_all(&ctx).expect("mkdir");
    let tar = files_tar(&[("a.txt", b"from a tar.zst\n"), ("d/b.txt", b"b\n")]);
    fs::write(ctx.join("files.tar.zst"), zstd_tool(&tar, 3)).expect("write");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nADD files.tar.zst /x/\nCOPY files.tar.zst /kept/\n\
         RUN test \"$(cat /x/a.txt)\" = 'from a tar.zst' && test -f /x/d/b.txt \
             && test -f /kept/files.tar.zst\n",
    )
    .expect("write Dockerfile");
    env.build(&ctx, &["-t", "addzst:1"]).assert_ok();
}
