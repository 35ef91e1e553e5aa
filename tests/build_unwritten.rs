//! Layers of stages the build does not export (docs/design.md §4.8): a RUN of such a stage
//! is recorded as its snapshot and diff_id, with no blob; a rebuild hits its record; a
//! build that exports the stage makes the blob then, the same bytes a build that wrote it
//! at once gives, and refuses a snapshot that changed since.

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use util::TestEnv;

const EPOCH: &str = "SOURCE_DATE_EPOCH=1700000000";

/// `build` is not exported by the default target: the final stage copies one file from it.
const DOCKERFILE: &str = "\
FROM busybox AS build
RUN mkdir /out && echo hello > /out/hello && echo unexported-stage-marker > /marker
COPY input.txt /
FROM busybox
COPY --from=build /out/hello /hello
";

const MARKER: &str = "marker";

fn context(env: &TestEnv) -> PathBuf {
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir context");
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
    fs::write(ctx.join("input.txt"), "one\n").expect("write input");
    ctx
}

/// The blobs that are tars holding the build stage's `/marker`.
fn marker_blobs(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(root.join("blobs/sha256")).expect("blobs dir") {
        let e = e.expect("entry");
        let Ok(file) = fs::File::open(e.path()) else {
            continue;
        };
        let mut archive = tar::Archive::new(file);
        let Ok(entries) = archive.entries() else {
            continue;
        };
        let has = entries.filter_map(|x| x.ok()).any(|x| {
            x.path()
                .map(|p| p.to_string_lossy() == MARKER)
                .unwrap_or(false)
        });
        if has {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// The snapshot directory (`snapshots/<chain>/fs`) holding the build stage's `/marker`.
fn marker_snapshot(root: &Path) -> PathBuf {
    fs::read_dir(root.join("snapshots"))
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path().join("fs"))
        .find(|fs_dir| fs_dir.join(MARKER).is_file())
        .expect("a snapshot holds the RUN's files")
}

fn verify_clean(env: &TestEnv) {
    let out = env.strata(&["system", "verify"]);
    out.assert_ok();
}

#[test]
fn an_unexported_stage_writes_no_blob_until_an_export_needs_it() {
    let env = TestEnv::with_busybox();
    let ctx = context(&env);
    env.build(&ctx, &["--build-arg", EPOCH, "-t", "app"])
        .assert_ok();
    assert_eq!(
        marker_blobs(&env.root),
        Vec::<String>::new(),
        "the build stage's RUN layer is not written"
    );
    verify_clean(&env);

    // Its record hits while its snapshot is there: FROM twice, the RUN and two COPYs.
    let again = env.build(&ctx, &["--build-arg", EPOCH, "-t", "app"]);
    again.assert_ok();
    assert_eq!(again.cached_steps(), 5, "{again}");

    // A COPY above the unwritten layer reads what is below it through snapshots, even
    // where a lower one has to be unpacked again (the base's, removed here).
    let base = fs::read_dir(env.root.join("snapshots"))
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path())
        .find(|d| d.join("fs/bin").is_dir())
        .expect("the base's snapshot");
    fs::remove_dir_all(&base).expect("remove the base's snapshot");
    fs::write(ctx.join("input.txt"), "two\n").expect("edit input");
    let edited = env.build(&ctx, &["--build-arg", EPOCH, "-t", "app"]);
    edited.assert_ok();
    assert_eq!(edited.cached_steps(), 4, "{edited}");

    // Exporting the stage makes the blob from the snapshot, the very bytes a build that
    // wrote it at once makes.
    let made = env.build(
        &ctx,
        &["--build-arg", EPOCH, "--target", "build", "-t", "b"],
    );
    made.assert_ok();
    assert_eq!(made.cached_steps(), 3, "{made}");
    let blobs = marker_blobs(&env.root);
    assert_eq!(blobs.len(), 1, "the layer is written once exported");
    let layers = util::read_blob_json(&env.root, &env.manifest_digest("b"))["layers"].clone();
    assert_eq!(layers[1]["digest"], format!("sha256:{}", blobs[0]));
    assert_eq!(layers.as_array().map(Vec::len), Some(3));
    let fresh = env.build(
        &ctx,
        &[
            "--no-cache",
            "--build-arg",
            EPOCH,
            "--target",
            "build",
            "-t",
            "b-fresh",
        ],
    );
    fresh.assert_ok();
    assert_eq!(env.manifest_digest("b"), env.manifest_digest("b-fresh"));
    verify_clean(&env);
}

#[test]
fn a_snapshot_changed_after_commit_is_refused_and_prune_removes_it() {
    let env = TestEnv::with_busybox();
    let ctx = context(&env);
    env.build(&ctx, &["--build-arg", EPOCH, "-t", "app"])
        .assert_ok();
    let snapshot = marker_snapshot(&env.root);
    fs::write(snapshot.join(MARKER), "tampered-stage-marker!!\n").expect("tamper");

    let out = env.build(
        &ctx,
        &["--build-arg", EPOCH, "--target", "build", "-t", "b"],
    );
    assert_ne!(out.status, Some(0), "{out}");
    assert!(
        out.stderr.contains("changed after it was committed"),
        "{out}"
    );
    assert_eq!(marker_blobs(&env.root), Vec::<String>::new());
    assert!(
        env.strata(&["image", "inspect", "b"]).status != Some(0),
        "no image is tagged"
    );

    // The unwritten record holds only its snapshot: a prune of the build cache frees it.
    env.strata(&["builder", "prune", "-af"]).assert_ok();
    assert!(!snapshot.exists(), "the record's snapshot is swept");
    verify_clean(&env);
}
