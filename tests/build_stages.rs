//! Stages built side by side (`--jobs`, issue 18): the stages a target needs run as a
//! graph, at most `--jobs` at once; `--jobs 1` builds them one after another in Dockerfile
//! order; the first failing stage fails the build and stops the others.

mod util;

use std::fs;
use std::path::Path;

use util::TestEnv;

const EPOCH: &str = "SOURCE_DATE_EPOCH=1700000000";

/// Three stages the final one copies from; `two` also copies from `one`.
const GRAPH: &str = "\
FROM busybox AS one
RUN echo one > /one.txt
FROM busybox AS two
COPY --from=one /one.txt /from-one.txt
RUN echo two > /two.txt
FROM busybox AS three
RUN echo three > /three.txt
FROM busybox
COPY --from=two /two.txt /from-one.txt /out/
COPY --from=three /three.txt /out/
";

fn context(env: &TestEnv, name: &str, dockerfile: &str) -> std::path::PathBuf {
    let ctx = env.scratch.join(name);
    fs::create_dir_all(&ctx).expect("mkdir context");
    fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    ctx
}

/// The `#N` of the step whose start line (`#N [stage i/n] TEXT`) contains `text`.
fn step_number(stderr: &str, text: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with('#') && l.contains(" [") && l.contains(text))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step {text:?} in:\n{stderr}"))
        .to_string()
}

#[test]
fn concurrent_stages_build_the_same_image_as_jobs_1() {
    let env = TestEnv::with_busybox();
    let ctx = context(&env, "graph", GRAPH);
    let args = |jobs: &'static str, tag: &'static str| {
        [
            "--no-cache",
            "--jobs",
            jobs,
            "--build-arg",
            EPOCH,
            "-t",
            tag,
        ]
    };
    env.build(&ctx, &args("4", "graph:jobs4")).assert_ok();
    env.build(&ctx, &args("1", "graph:jobs1")).assert_ok();
    assert_eq!(
        env.manifest_digest("graph:jobs4"),
        env.manifest_digest("graph:jobs1")
    );
    let rootfs = util::image_rootfs(&env.root, "graph:jobs4");
    for (file, text) in [
        ("two.txt", "two\n"),
        ("from-one.txt", "one\n"),
        ("three.txt", "three\n"),
    ] {
        let path = rootfs.path().join("out").join(file);
        assert_eq!(
            fs::read_to_string(&path).unwrap_or_default(),
            text,
            "{}",
            path.display()
        );
    }
}

#[test]
fn jobs_1_builds_stages_one_after_another_in_dockerfile_order() {
    let env = TestEnv::with_busybox();
    let ctx = context(&env, "graph", GRAPH);
    let out = env.build(&ctx, &["--jobs", "1", "-t", "graph:seq"]);
    out.assert_ok();
    // Every step ends before the next one starts: a start line is followed by its own
    // output and end line only.
    let mut running: Option<String> = None;
    let mut started = Vec::new();
    for line in out.stderr.lines().filter(|l| l.starts_with('#')) {
        let number = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let rest = &line[number.len()..];
        if rest.starts_with(" [") {
            assert!(
                running.is_none(),
                "{number} started while {running:?} ran:\n{}",
                out.stderr
            );
            running = Some(number);
            started.push(rest.trim().to_string());
        } else if rest == " CACHED" || rest.starts_with(" DONE") || rest.starts_with(" ERROR") {
            assert_eq!(running.as_deref(), Some(number.as_str()), "{}", out.stderr);
            running = None;
        } else {
            assert_eq!(running.as_deref(), Some(number.as_str()), "{}", out.stderr);
        }
    }
    let stages: Vec<&str> = started
        .iter()
        .filter_map(|s| s.strip_prefix('[')?.split_whitespace().next())
        .collect();
    let mut order = stages.clone();
    order.dedup();
    assert_eq!(order, ["one", "two", "three", "stage-3"], "{}", out.stderr);
}

/// `failing` waits until `slow`'s RUN has started (a shared cache mount), then fails:
/// `slow` is killed mid-RUN, the build reports `failing`'s error and leaves no temp behind.
#[test]
fn a_failing_stage_stops_the_others_and_leaves_no_temp() {
    let env = TestEnv::with_busybox();
    let dockerfile = "\
FROM busybox AS slow
RUN --mount=type=cache,target=/sync,id=sync touch /sync/slow-running && sleep 120 && echo $(echo ran)-to-the-end
FROM busybox AS failing
RUN --mount=type=cache,target=/sync,id=sync i=0; until [ -e /sync/slow-running ] || [ $i -ge 1200 ]; do sleep 0.05; i=$((i+1)); done; echo failing on purpose; exit 3
FROM busybox
COPY --from=slow /etc/hostname /slow
COPY --from=failing /etc/hostname /failing
";
    let ctx = context(&env, "failing", dockerfile);
    let out = env.build(&ctx, &["--jobs", "4", "-t", "failing:1"]);
    assert_ne!(out.status, Some(0), "the build must fail:\n{out}");
    assert!(out.stderr.contains("failing on purpose"), "{out}");
    assert!(
        out.stderr.contains("exit code: 3"),
        "the failing step's error:\n{out}"
    );
    assert!(
        !out.stderr.contains("ran-to-the-end"),
        "slow ran to its end:\n{out}"
    );
    let slow = step_number(&out.stderr, "touch /sync/slow-running");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&format!("{slow} ERROR"))),
        "the slow step ({slow}) was not stopped:\n{out}"
    );
    // The final stage starts once both have started (its FROM may run), but its COPY
    // steps wait for their stages, which never finish.
    assert!(
        !out.stderr.contains("[stage-2 2/3]") && !out.stderr.contains("[stage-2 3/3]"),
        "a COPY --from of a stage that did not finish started:\n{out}"
    );
    assert_eq!(
        temps(&env.root),
        Vec::<String>::new(),
        "temp left under the root"
    );
}

/// A stage does not wait for the stage it copies from before running its own steps, as
/// BuildKit runs every step whose inputs are ready: `first` can only finish once the
/// second stage's RUN has run (a shared cache mount), and the second stage copies from
/// `first` after it. Waiting for `first` before starting the second stage fails the build.
#[test]
fn a_stage_runs_its_steps_before_the_stage_it_copies_from_is_done() {
    let env = TestEnv::with_busybox();
    let dockerfile = "\
FROM busybox AS first
RUN --mount=type=cache,target=/sync,id=overlap i=0; until [ -e /sync/second-ran ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done; test -e /sync/second-ran && echo first > /first.txt
FROM busybox
RUN --mount=type=cache,target=/sync,id=overlap touch /sync/second-ran
COPY --from=first /first.txt /
";
    let ctx = context(&env, "overlap", dockerfile);
    let out = env.build(&ctx, &["--jobs", "2", "-t", "overlap:1"]);
    out.assert_ok();
    let copy = step_number(&out.stderr, "COPY --from=first");
    let first_done = step_number(&out.stderr, "until [ -e /sync/second-ran ]");
    let line_of = |prefix: &str| {
        out.stderr
            .lines()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{out}"))
    };
    assert!(
        line_of(&format!("{first_done} DONE")) < line_of(&format!("{copy} [")),
        "the COPY --from started before its stage was done:\n{out}"
    );
}

/// Temp entries (store::layout::TEMP_PREFIXES) in `ROOT/snapshots` and any file in
/// `ROOT/ingest`.
fn temps(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(root.join("snapshots"))
        .expect("read snapshots/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["gc-", "build-", "copy-", ".tmp-", "context-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            found.push(format!("snapshots/{name}"));
        }
    }
    if let Ok(entries) = fs::read_dir(root.join("ingest")) {
        found.extend(
            entries
                .flatten()
                .map(|e| format!("ingest/{}", e.file_name().to_string_lossy())),
        );
    }
    found
}
