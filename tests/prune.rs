//! End-to-end tests of `image prune`, `builder prune`, `system prune` and `system df`
//! (issue 6): real builds (busybox base, RUN in namespaces: root, as CI has), a real
//! `docker-registry` for the concurrency test, and byte counts taken from the disk.

mod registry_common;
mod util;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{read_blob_json, strata_command, TestEnv};

// ---- what is on disk ----

/// Bytes of regular files in a tree, each inode once (how `system df` counts snapshots).
fn tree_bytes(dir: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let m = fs::symlink_metadata(e.path()).expect("stat");
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every blob file with its size.
fn blob_files(root: &Path) -> Vec<(String, u64)> {
    fs::read_dir(root.join("blobs/sha256"))
        .expect("blobs dir")
        .flatten()
        .map(|e| {
            (
                format!("sha256:{}", e.file_name().to_string_lossy()),
                e.metadata().expect("stat").len(),
            )
        })
        .collect()
}

/// Snapshot directories (by chain id hex).
fn snapshot_dirs(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("snapshots"))
        .expect("snapshots dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_hex64(n))
        .collect()
}

/// Bytes of every blob and every snapshot.
fn bytes_on_disk(root: &Path) -> u64 {
    let blobs: u64 = blob_files(root).iter().map(|(_, s)| s).sum();
    let snaps: u64 = snapshot_dirs(root)
        .iter()
        .map(|h| tree_bytes(&root.join("snapshots").join(h)))
        .sum();
    blobs + snaps
}

/// What an image holds: its manifest, config and layer blobs, and its layer chains'
/// snapshot dirs (as "snap:<hex>").
fn objects(root: &Path, manifest: &str) -> BTreeSet<String> {
    let m = read_blob_json(root, manifest);
    let config = m["config"]["digest"].as_str().expect("config").to_string();
    let mut out: BTreeSet<String> = [manifest.to_string(), config.clone()].into();
    for l in m["layers"].as_array().expect("layers") {
        out.insert(l["digest"].as_str().expect("digest").to_string());
    }
    let diff_ids: Vec<store::Digest> = read_blob_json(root, &config)["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|d| d.as_str().expect("diff_id").parse().expect("digest"))
        .collect();
    for c in store::Store::chain_ids(&diff_ids) {
        out.insert(format!("snap:{}", c.hex()));
    }
    out
}

fn object_bytes(root: &Path, o: &str) -> u64 {
    match o.strip_prefix("snap:") {
        Some(hex) => tree_bytes(&root.join("snapshots").join(hex)),
        None => fs::metadata(
            root.join("blobs/sha256")
                .join(o.trim_start_matches("sha256:")),
        )
        .map(|m| m.len())
        .unwrap_or(0),
    }
}

fn exists(root: &Path, o: &str) -> bool {
    match o.strip_prefix("snap:") {
        Some(hex) => root.join("snapshots").join(hex).exists(),
        None => root
            .join("blobs/sha256")
            .join(o.trim_start_matches("sha256:"))
            .exists(),
    }
}

/// `system df --format json` as (type → (total, active, size bytes)).
fn df(env: &TestEnv) -> std::collections::BTreeMap<String, (u64, u64, u64)> {
    let out = env.strata(&["system", "df", "--format", "json"]);
    out.assert_ok();
    out.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let n = |k: &str| {
                v[k].as_str()
                    .expect("count")
                    .parse::<u64>()
                    .expect("number")
            };
            (
                v["Type"].as_str().expect("type").to_string(),
                (
                    n("TotalCount"),
                    n("Active"),
                    v["SizeBytes"].as_u64().expect("bytes"),
                ),
            )
        })
        .collect()
}

#[track_caller]
fn assert_df_matches_disk(env: &TestEnv) {
    let d = df(env);
    let counted = d["Images"].2 + d["Build Cache"].2;
    assert_eq!(
        counted,
        bytes_on_disk(&env.root),
        "Images + Build Cache SIZE vs bytes of blobs and snapshots: {d:?}"
    );
}

fn image_ids(env: &TestEnv, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["images", "-q", "--no-trunc"];
    args.extend_from_slice(extra);
    let out = env.strata(&args);
    out.assert_ok();
    out.stdout.lines().map(str::to_string).collect()
}

fn context(env: &TestEnv, name: &str, dockerfile: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = env.scratch.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("Dockerfile"), dockerfile).expect("write");
    for (n, b) in files {
        fs::write(dir.join(n), b).expect("write");
    }
    dir
}

/// Pseudo-random bytes, distinct for every `seed` (random_bytes forces its seed odd).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    registry_common::random_bytes(len, seed * 2 + 1)
}

/// The bytes a prune's last line reports ("Total reclaimed space: 16.78MB"), as docker
/// prints them: decimal units, 4 significant digits.
fn reported_bytes(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("no reclaimed line in:\n{stdout}"));
    let split = line
        .find(|c: char| c.is_ascii_alphabetic())
        .expect("a unit");
    let (number, unit) = line.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other:?} in {line:?}"),
    };
    number.parse::<f64>().expect("a number") * scale
}

fn verify_clean(env: &TestEnv) {
    let out = env.strata(&["system", "verify"]);
    assert_eq!(out.status, Some(0), "system verify found faults:\n{out}");
}

// ---- tests ----

const APP: &str = "FROM busybox\nCOPY shared.bin /shared.bin\nCOPY app.bin /app.bin\nRUN cat /app.bin /shared.bin > /both.bin\n";

#[test]
fn rebuild_leaves_one_dangling_image_and_prune_gives_its_unique_layers_back() {
    let env = TestEnv::with_busybox();
    let ctx = context(
        &env,
        "app",
        APP,
        &[
            ("shared.bin", payload(200_000, 1)),
            ("app.bin", payload(300_000, 2)),
        ],
    );
    env.build(&ctx, &["-t", "app:1"]).assert_ok();
    let old = env.manifest_digest("app:1");
    let old_id = env.image_id("app:1");
    fs::write(ctx.join("app.bin"), payload(300_000, 3)).expect("write");
    env.build(&ctx, &["-t", "app:1"]).assert_ok();
    let new = env.manifest_digest("app:1");
    assert_ne!(old, new);
    assert_eq!(
        image_ids(&env, &["--filter", "dangling=true"]),
        vec![old_id.clone()],
        "exactly one dangling image"
    );

    let kept: BTreeSet<String> = objects(&env.root, &new)
        .union(&objects(&env.root, &env.manifest_digest("busybox")))
        .cloned()
        .collect();
    let unique: Vec<String> = objects(&env.root, &old)
        .difference(&kept)
        .cloned()
        .collect();
    assert!(
        unique.iter().any(|o| o.starts_with("snap:")) && unique.len() >= 6,
        "manifest, config, 2 layers, 2 snapshots: {unique:?}"
    );
    let want_freed: u64 = unique.iter().map(|o| object_bytes(&env.root, o)).sum();
    assert!(
        want_freed > 600_000,
        "the unique COPY and RUN layers hold ≥ 2 × 300 kB: {want_freed}"
    );
    assert_df_matches_disk(&env);
    // Right after the rebuild, no pause: what prune reports is what it frees, at once.
    let before = bytes_on_disk(&env.root);

    let out = env.strata(&["image", "prune", "-f"]);
    out.assert_ok();
    let head = format!("Deleted Images:\ndeleted: {old_id}\n\nTotal reclaimed space: ");
    assert!(out.stdout.starts_with(&head), "{out}");
    assert!(!out.stdout.contains("space: 0B"), "{out}");

    let freed = before - bytes_on_disk(&env.root);
    assert_eq!(
        freed, want_freed,
        "bytes on disk drop by the unique objects' size"
    );
    let reported = reported_bytes(&out.stdout);
    assert!(
        (reported - freed as f64).abs() <= freed as f64 * 5e-4,
        "Total reclaimed space ({reported}) is the drop in bytes on disk ({freed}), to the \
         4 significant digits docker prints:\n{out}"
    );
    for o in &unique {
        assert!(
            !exists(&env.root, o),
            "{o} of the pruned image is still there"
        );
    }
    for o in &kept {
        if o.starts_with("snap:") && !exists(&env.root, o) {
            continue; // a snapshot never unpacked (the top layer of an image)
        }
        assert!(exists(&env.root, o), "{o} of a remaining image was removed");
    }
    assert_eq!(image_ids(&env, &[]).len(), 2);
    assert!(image_ids(&env, &["--filter", "dangling=true"]).is_empty());
    assert_df_matches_disk(&env);
    verify_clean(&env);

    // The tagged image's cache survived: a rebuild runs nothing.
    let out = env.build(&ctx, &["-t", "app:1"]);
    out.assert_ok();
    assert_eq!(out.cached_steps(), 4, "FROM and every step CACHED:\n{out}");
    assert_eq!(env.manifest_digest("app:1"), new);
    assert!(image_ids(&env, &["--filter", "dangling=true"]).is_empty());
}

#[test]
fn image_prune_all_and_filters() {
    let env = TestEnv::with_busybox();
    let build_untagged = |name: &str, label: &str, seed: u64| {
        let df = format!("FROM busybox\n{label}COPY f.bin /f.bin\n");
        let ctx = context(&env, name, &df, &[("f.bin", payload(50_000, seed))]);
        env.build(&ctx, &[]).assert_ok();
    };
    build_untagged("prod", "LABEL env=prod\n", 10);
    build_untagged("dev", "LABEL env=dev\n", 11);
    build_untagged("plain", "", 12);
    assert_eq!(image_ids(&env, &["--filter", "dangling=true"]).len(), 3);
    let prune = |args: &[&str]| {
        let mut all = vec!["image", "prune", "-f"];
        all.extend_from_slice(args);
        let out = env.strata(&all);
        out.assert_ok();
        out.stdout
            .lines()
            .filter(|l| l.starts_with("deleted: "))
            .count()
    };

    assert_eq!(
        prune(&["--filter", "until=24h"]),
        0,
        "all were created within the last day"
    );
    assert_eq!(prune(&["--filter", "until=2020-01-01T00:00:00Z"]), 0);
    assert_eq!(prune(&["--filter", "label=env=dev"]), 1);
    assert_eq!(
        prune(&["--filter", "label!=env"]),
        1,
        "only the image without the label"
    );
    assert_eq!(image_ids(&env, &["--filter", "dangling=true"]).len(), 1);
    let soon = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        prune(&[
            "-a",
            "--filter",
            &format!("until={}", soon.format("%Y-%m-%dT%H:%M:%SZ")),
            "--filter",
            "label=env"
        ]),
        1
    );
    assert!(image_ids(&env, &["--filter", "dangling=true"]).is_empty());

    // Bad input: a usage error, and nothing is touched.
    let out = env.strata(&["image", "prune", "-f", "--filter", "colour=red"]);
    assert_eq!(out.status, Some(2), "{out}");
    let out = env.strata(&["image", "prune", "-f", "--filter", "until=someday"]);
    assert_eq!(out.status, Some(2), "{out}");
    // Without -f and without a terminal there is nobody to ask: refuse.
    let ctx = context(
        &env,
        "retag",
        "FROM busybox\nCOPY f.bin /f.bin\n",
        &[("f.bin", payload(1000, 20))],
    );
    env.build(&ctx, &["-t", "re:1"]).assert_ok();
    fs::write(ctx.join("f.bin"), payload(1000, 21)).expect("write");
    env.build(&ctx, &["-t", "re:1"]).assert_ok();
    let out = env.strata(&["image", "prune"]);
    assert_ne!(out.status, Some(0), "{out}");
    assert!(out.stderr.contains("-f"), "{out}");
    assert_eq!(image_ids(&env, &["--filter", "dangling=true"]).len(), 1);
    assert_df_matches_disk(&env);

    // -a as docker: every image the filters select goes, tagged or not, with its tags and
    // its build cache. busybox (created 2023) is the only image older than 2024.
    assert_eq!(prune(&["-a", "--filter", "until=2024-01-01T00:00:00Z"]), 1);
    assert_eq!(
        image_ids(&env, &[]).len(),
        2,
        "re:1 and its dangling predecessor"
    );
    assert_ne!(env.strata(&["image", "inspect", "busybox"]).status, Some(0));
    assert_eq!(prune(&["-a"]), 2);
    assert!(image_ids(&env, &[]).is_empty());
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(env.root.join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(index["manifests"], serde_json::json!([]), "no tag is left");
    assert!(
        blob_files(&env.root).is_empty() && snapshot_dirs(&env.root).is_empty(),
        "every blob and snapshot went with the images and their build cache"
    );
    assert_eq!(df(&env)["Build Cache"].0, 0);
    verify_clean(&env);
}

#[test]
fn builder_prune_keep_storage_drops_least_recently_used_first() {
    let env = TestEnv::with_busybox();
    let mut tops = Vec::new();
    for (i, len) in [(1u64, 100_000usize), (2, 200_000), (3, 300_000)] {
        let ctx = context(
            &env,
            &format!("c{i}"),
            &format!("FROM busybox\nCOPY big.bin /big{i}.bin\n"),
            &[("big.bin", payload(len, 30 + i))],
        );
        env.build(&ctx, &["-t", &format!("c:{i}")]).assert_ok();
        let m = read_blob_json(&env.root, &env.manifest_digest(&format!("c:{i}")));
        let top = m["layers"]
            .as_array()
            .expect("layers")
            .last()
            .expect("a layer")["digest"]
            .as_str()
            .expect("digest")
            .to_string();
        tops.push(top);
        std::thread::sleep(Duration::from_millis(1100)); // distinct last-used seconds
    }
    env.strata(&["rmi", "c:1", "c:2", "c:3"]).assert_ok();
    // The layers now belong to the build cache only.
    let cache = df(&env)["Build Cache"].2;
    let sizes: Vec<u64> = tops.iter().map(|t| object_bytes(&env.root, t)).collect();
    assert_eq!(
        cache,
        sizes.iter().sum::<u64>(),
        "the cache holds the three COPY layers"
    );

    let keep = cache - sizes[0];
    env.strata(&[
        "builder",
        "prune",
        "-f",
        "--keep-storage",
        &keep.to_string(),
    ])
    .assert_ok();
    assert!(
        !exists(&env.root, &tops[0]),
        "the least recently used layer goes"
    );
    assert!(
        exists(&env.root, &tops[1]) && exists(&env.root, &tops[2]),
        "the others fit in --keep-storage"
    );
    assert_eq!(df(&env)["Build Cache"].2, keep);

    let out = env.strata(&["builder", "prune", "-f"]);
    out.assert_ok();
    assert!(
        out.stdout.starts_with("Deleted build cache objects:\n"),
        "{out}"
    );
    assert!(!exists(&env.root, &tops[1]) && !exists(&env.root, &tops[2]));
    let (total, _, size) = df(&env)["Build Cache"];
    assert_eq!(size, 0);
    assert!(
        total >= 1,
        "busybox's own cache record is shared with the image, so it stays"
    );

    // rmi left the manifests and configs unreferenced; any run sweeps them, and then df
    // accounts for every byte again.
    env.strata(&["builder", "prune", "-f"]).assert_ok();
    assert_df_matches_disk(&env);
    let out = env.strata(&["builder", "prune", "-af"]);
    out.assert_ok();
    assert!(
        out.stdout.ends_with("Total reclaimed space: 0B\n"),
        "the busybox image keeps its layer:\n{out}"
    );
    assert_eq!(df(&env)["Build Cache"].0, 0);
    assert_eq!(image_ids(&env, &[]).len(), 1);
    verify_clean(&env);
    assert_df_matches_disk(&env);
}

#[test]
fn system_df_numbers_equal_bytes_on_disk() {
    let env = TestEnv::with_busybox();
    assert_df_matches_disk(&env);
    let ctx = context(
        &env,
        "app",
        APP,
        &[
            ("shared.bin", payload(100_000, 40)),
            ("app.bin", payload(100_000, 41)),
        ],
    );
    env.build(&ctx, &["-t", "app:1"]).assert_ok();
    fs::write(ctx.join("app.bin"), payload(100_000, 42)).expect("write");
    env.build(&ctx, &["-t", "app:1"]).assert_ok();
    let d = df(&env);
    assert_eq!(d["Images"].0, 3);
    assert_eq!(d["Images"].1, 2, "ACTIVE: the tagged images");
    assert_eq!(d["Containers"], (0, 0, 0));
    assert_eq!(d["Local Volumes"], (0, 0, 0));
    assert_df_matches_disk(&env);

    let out = env.strata(&["system", "df"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    );
    assert!(
        lines[1].starts_with("Images          3         2         "),
        "{out}"
    );
    assert!(lines[1].ends_with("%)"), "{out}");
    let out = env.strata(&["system", "df", "-v"]);
    out.assert_ok();
    for heading in [
        "Images space usage:",
        "SHARED SIZE",
        "Build cache usage:",
        "CACHE ID",
    ] {
        assert!(out.stdout.contains(heading), "{heading} missing:\n{out}");
    }
    // `-v` shows each image with the SIZE `images` shows (keyed by repo, tag, id).
    let sizes = |text: &str, size_from_end: usize| -> BTreeSet<(String, String, String, String)> {
        text.lines()
            .skip_while(|l| !l.starts_with("REPOSITORY"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                let size = t[t.len() - size_from_end];
                (t[0].into(), t[1].into(), t[2].into(), size.into())
            })
            .collect()
    };
    let images = env.strata(&["images"]);
    images.assert_ok();
    let listed = sizes(&images.stdout, 1);
    assert_eq!(listed.len(), 3, "{images}");
    assert_eq!(
        sizes(&out.stdout, 4),
        listed,
        "df -v vs images:\n{out}\n{images}"
    );

    // A cache mount is build cache too; `builder prune -af` empties the build cache.
    let ctx = context(
        &env,
        "mount",
        "FROM busybox\nRUN --mount=type=cache,target=/c echo hi > /c/x && echo done > /done\n",
        &[],
    );
    env.build(&ctx, &[]).assert_ok();
    assert!(df(&env)["Build Cache"].2 > 0);
    env.strata(&["builder", "prune", "-af"]).assert_ok();
    assert_eq!(df(&env)["Build Cache"], (0, 0, 0));
    let out = env.strata(&["system", "df"]);
    out.assert_ok();
    let row: Vec<&str> = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .expect("Build Cache row")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["Build", "Cache", "0", "0", "0B", "0B"], "{out}");

    let out = env.strata(&["system", "prune", "-af"]);
    out.assert_ok();
    assert!(out.stdout.contains("Deleted Images:"), "{out}");
    let d = df(&env);
    assert_eq!(
        (d["Images"].0, d["Build Cache"].0),
        (0, 0),
        "system prune -a removes every image, as docker with no containers"
    );
    assert_df_matches_disk(&env);
    verify_clean(&env);
}

/// Fills `root` with `n` dangling images of 3 small layers each, through the store API:
/// blobs committed one by one, recorded in one transaction, images added in another.
fn dangling_images(root: &Path, n: usize, seed: u64) {
    use std::io::Write;
    let s = store::Store::open(root).expect("open store");
    let lease = s.lease(Duration::from_secs(600)).expect("lease");
    let mut blobs = Vec::new();
    let mut put = |bytes: &[u8], media_type: &str| {
        let mut w = s
            .writer(&lease)
            .expect("writer")
            .with_media_type(media_type);
        w.write_all(bytes).expect("write");
        let d = w.commit_unrecorded(None, None).expect("commit");
        blobs.push(d.clone());
        d
    };
    let mut manifests = Vec::new();
    for i in 0..n {
        let layers: Vec<store::Descriptor> = (0..3)
            .map(|j| {
                let bytes = payload(2000, seed * 1_000_000 + (i * 3 + j) as u64);
                put(&bytes, store::media_types::OCI_LAYER_TAR)
            })
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
        });
        let config = put(
            &serde_json::to_vec(&config).expect("json"),
            store::media_types::OCI_CONFIG,
        );
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": store::media_types::OCI_MANIFEST, "config": config, "layers": layers});
        let m = put(
            &serde_json::to_vec(&manifest).expect("json"),
            store::media_types::OCI_MANIFEST,
        );
        manifests.push(store::image::NewImage {
            manifest: m.digest,
            tags: Vec::new(),
            uncompressed: Default::default(),
        });
    }
    s.record_blobs(&blobs).expect("record blobs");
    s.add_images(&manifests).expect("add images");
}

#[test]
fn kill_9_during_prune_leaves_a_clean_store_and_the_next_prune_finishes() {
    let env = TestEnv::new();
    let delays = [3u64, 12, 40, 90];
    for (round, delay) in delays.iter().enumerate() {
        dangling_images(&env.root, 150, round as u64 + 1);
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--root")
            .arg(&env.root)
            .args(["image", "prune", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn strata");
        std::thread::sleep(Duration::from_millis(*delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        verify_clean(&env);
    }
    // Whatever the kills left half done, one more run finishes.
    let out = env.strata(&["image", "prune", "-f"]);
    out.assert_ok();
    verify_clean(&env);
    assert!(image_ids(&env, &[]).is_empty());
    assert!(
        blob_files(&env.root).is_empty(),
        "every blob of the pruned images is gone: {:?}",
        blob_files(&env.root).len()
    );
    let leftovers: Vec<_> = fs::read_dir(env.root.join("ingest"))
        .expect("ingest")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "no trash left: {leftovers:?}");
    assert_eq!(df(&env)["Images"], (0, 0, 0));
}

/// Builds and pulls loop while `system prune -af` loops; every build and pull succeeds
/// and the store verifies clean. `system prune -a` removes every image, the builds' base
/// included, so the base comes from the registry and a build pulls it again when a prune
/// took it. The issue asks for a minute; 20 s keeps CI short (STRATA_PRUNE_STRESS_SECS
/// overrides).
#[test]
fn builds_and_pulls_survive_concurrent_system_prune() {
    stress_builds_and_pulls_against_prune(false, 20);
}

/// The same with every prune SIGKILLed at a different moment: a killed GC leaves
/// nothing a build or pull trips over, and the next run finishes its work.
#[test]
fn builds_and_pulls_survive_system_prunes_killed_mid_run() {
    stress_builds_and_pulls_against_prune(true, 10);
}

fn stress_builds_and_pulls_against_prune(kill_prunes: bool, default_secs: u64) {
    let env = TestEnv::with_busybox();
    let reg = registry_common::Registry::start(registry_common::RegistryOptions::default());
    let base = format!("{}/stress/busybox:1", reg.addr);
    env.strata(&["tag", "busybox", &base]).assert_ok();
    env.strata(&["push", &base]).assert_ok();
    let layout = tempfile::tempdir().expect("tempdir");
    registry_common::oci_layout(
        layout.path(),
        "t",
        &[payload(200_000, 50), payload(50_000, 51)],
    );
    let remote = format!("{}/stress/app:1", reg.addr);
    registry_common::skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{remote}"),
    );

    let secs: u64 = std::env::var("STRATA_PRUNE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let ctx = context(
        &env,
        "loop",
        &APP.replace("FROM busybox", &format!("FROM {base}")),
        &[
            ("shared.bin", payload(100_000, 52)),
            ("app.bin", payload(100_000, 53)),
        ],
    );
    std::thread::scope(|s| {
        let builds = s.spawn(|| {
            let mut n = 0u64;
            while Instant::now() < deadline {
                // Every other build changes a file: new layers, a new dangling image.
                fs::write(ctx.join("app.bin"), payload(100_000, 60 + n % 2)).expect("write");
                let out = env.build(&ctx, &["-t", "loop:1"]);
                assert_eq!(
                    out.status,
                    Some(0),
                    "build {n} failed during concurrent prune:\n{out}"
                );
                n += 1;
            }
            n
        });
        let pulls = s.spawn(|| {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let out = env.strata(&["pull", "-q", &remote]);
                assert_eq!(
                    out.status,
                    Some(0),
                    "pull {n} failed during concurrent prune:\n{out}"
                );
                if n.is_multiple_of(2) {
                    // `system prune -a` may have removed it already.
                    let out = env.strata(&["rmi", &remote]);
                    assert!(
                        out.status == Some(0) || out.stderr.contains("no such image"),
                        "rmi {n}:\n{out}"
                    );
                }
                n += 1;
            }
            n
        });
        let mut prunes = 0u64;
        while Instant::now() < deadline {
            if kill_prunes {
                let mut child = strata_command(&env.root)
                    .args(["system", "prune", "-af"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn strata");
                // A different moment each time, from before the lock to the sweep.
                std::thread::sleep(Duration::from_millis(5 + (prunes * 37) % 300));
                let _ = child.kill(); // SIGKILL
                let _ = child.wait();
            } else {
                env.strata(&["system", "prune", "-af"]).assert_ok();
            }
            prunes += 1;
        }
        let (b, p) = (builds.join().expect("builds"), pulls.join().expect("pulls"));
        assert!(
            b >= 2 && p >= 2 && prunes >= 2,
            "too few rounds to mean anything: {b} builds, {p} pulls, {prunes} prunes"
        );
        eprintln!("{b} builds, {p} pulls, {prunes} prunes in {secs} s (kill -9: {kill_prunes})");
    });
    verify_clean(&env);
    env.strata(&["system", "prune", "-af"]).assert_ok();
    verify_clean(&env);
    assert_df_matches_disk(&env);
    assert!(image_ids(&env, &[]).is_empty());
    env.build(&ctx, &["-t", "loop:1"]).assert_ok();
}

/// Not a test: `benches/prune.sh` runs this to fill STRATA_BENCH_ROOT with
/// STRATA_BENCH_IMAGES (default 1000) dangling images of 3 layers each.
#[test]
#[ignore = "benchmark set-up, run by benches/prune.sh"]
fn bench_fill_dangling_images() {
    let root = std::env::var("STRATA_BENCH_ROOT").expect("STRATA_BENCH_ROOT");
    let n = std::env::var("STRATA_BENCH_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    dangling_images(Path::new(&root), n, 7);
}
