//! End-to-end tests of `strata build --check`: the real binary on real files, checking exit
//! codes, docker-style output and the JSON form. A local context is never read; `-` and URL
//! contexts are, for their Dockerfile.

mod util;

use std::fs;

use util::TestEnv;

fn write(env: &TestEnv, name: &str, text: &str) -> String {
    let path = env.scratch.join(name);
    fs::write(&path, text).expect("write Dockerfile");
    path.to_string_lossy().into_owned()
}

#[test]
fn check_with_warnings_exits_one_like_docker() {
    let env = TestEnv::new();
    let file = write(
        &env,
        "Dockerfile",
        "FROM alpine\nRUN echo hi\n\nCMD echo hi\n",
    );
    let out = env.strata(&["build", "--check", "-f", &file, "/nonexistent-context"]);
    // buildx: the frontend's status code is 1 when any rule fires.
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stdout.contains(
            "WARNING: JSONArgsRecommended - JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 4)"
        ),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("Check complete, 1 warning has been found!"),
        "{out}"
    );
}

#[test]
fn clean_dockerfile_says_no_warnings() {
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("Dockerfile"), "FROM alpine\nCMD [\"sh\"]\n").expect("write");
    let out = env.strata(&["build", "--check", &ctx.to_string_lossy()]);
    out.assert_ok();
    assert!(
        out.stdout.contains("Check complete, no warnings found."),
        "{out}"
    );
}

#[test]
fn unknown_instruction_fails_with_file_and_line() {
    let env = TestEnv::new();
    let file = write(
        &env,
        "Dockerfile",
        "FROM alpine\n\n\n\n\n\nRUNN echo typo\n",
    );
    let out = env.strata(&["build", "--check", "-f", &file]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("Dockerfile:7: unknown instruction \"RUNN\" (did you mean RUN?)"),
        "{out}"
    );
}

#[test]
fn error_directive_turns_warnings_into_failure() {
    let env = TestEnv::new();
    let file = write(
        &env,
        "Dockerfile",
        "# check=error=true\nFROM alpine\nMAINTAINER me\n",
    );
    let out = env.strata(&["build", "--check", "-f", &file]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stdout.contains("WARNING: MaintainerDeprecated"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("lint violation found for rules: MaintainerDeprecated"),
        "{out}"
    );
}

#[test]
fn target_and_build_args_are_evaluated() {
    let env = TestEnv::new();
    let text = "ARG BASE=alpine\nFROM $BASE AS one\nFROM busybox AS two\n";
    let file = write(&env, "Dockerfile", text);
    env.strata(&["build", "--check", "-f", &file, "--target", "one"])
        .assert_ok();
    let out = env.strata(&["build", "--check", "-f", &file, "--target", "three"]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("target stage \"three\" could not be found"),
        "{out}"
    );
    let out = env.strata(&["build", "--check", "-f", &file, "--build-arg", "BASE="]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("Dockerfile:2: base name ($BASE) should not be blank"),
        "{out}"
    );
}

#[test]
fn json_format_for_machines() {
    let env = TestEnv::new();
    let file = write(&env, "Dockerfile", "FROM alpine AS Build\nENV A b\n");
    let out = env.strata(&["build", "--check", "--format", "json", "-f", &file]);
    // BuildKit's lint result carries status code 1 when a rule fires, in JSON too.
    assert_eq!(out.status, Some(1), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    let rules: Vec<&str> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["ruleName"].as_str())
        .collect();
    assert_eq!(
        rules,
        vec!["StageNameCasing", "LegacyKeyValueFormat"],
        "{out}"
    );
    assert_eq!(
        v["warnings"][1]["location"]["ranges"][0]["start"]["line"],
        2
    );

    let bad = write(&env, "Bad.Dockerfile", "FROM alpine\nCOPY --chwon=1 a b\n");
    let out = env.strata(&["build", "--check", "--format", "json", "-f", &bad]);
    assert_eq!(out.status, Some(1), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(
        v["error"]["message"],
        "unknown flag: --chwon (did you mean chown?)"
    );
    assert_eq!(v["error"]["location"]["file"], "Bad.Dockerfile");
}

#[test]
fn missing_dockerfile_is_an_error() {
    let env = TestEnv::new();
    let out = env.strata(&["build", "--check", "-f", "/nonexistent/Dockerfile"]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("/nonexistent/Dockerfile"), "{out}");
}

#[test]
fn build_runs_checks_and_prints_the_warnings_at_the_end() {
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS Base\nCMD echo hi\n",
    )
    .expect("write");
    let out = env.build(&ctx, &["-t", "checked:1"]);
    out.assert_ok();
    let tail = out
        .stderr
        .rsplit("2 warnings found")
        .next()
        .unwrap_or_default();
    assert!(
        out.stderr
            .contains(" 2 warnings found (use docker --debug to expand):\n"),
        "{out}"
    );
    assert!(
        tail.contains(" - StageNameCasing: Stage name 'Base' should be lowercase (line 1)\n")
            && tail.contains(" - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)\n"),
        "{out}"
    );
}

#[test]
fn build_fails_when_the_dockerfile_says_check_error_true() {
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "# check=error=true\nFROM scratch\nCMD echo hi\n",
    )
    .expect("write");
    let out = env.build(&ctx, &["-t", "strict:1"]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("lint violation found for rules: JSONArgsRecommended"),
        "{out}"
    );
    assert!(
        !env.root.join("index.json").exists()
            || !fs::read_to_string(env.root.join("index.json"))
                .unwrap_or_default()
                .contains("strict:1"),
        "the image was tagged though the check failed:\n{out}"
    );
}

/// `${a:-${b:-…}}` nested 10,000 deep: a `file:line` error naming the limit, not a stack
/// overflow that aborts the process (issue 12).
#[test]
fn issue_12_deep_substitution_nesting_is_refused() {
    let env = TestEnv::new();
    let mut word = String::from("x");
    for i in 0..10_000 {
        word = format!("${{a{i}:-{word}}}");
    }
    let file = write(
        &env,
        "Dockerfile",
        &format!("FROM alpine\n\nENV X={word}\n"),
    );
    let out = env.strata(&["build", "--check", "-f", &file]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("Dockerfile:3: "), "{out}");
    assert!(
        out.stderr
            .contains("variable substitution nested deeper than 64 levels"),
        "{out}"
    );
}

/// `--check -` reads the Dockerfile piped in; `--check URL` reads the one the URL serves,
/// as a build would.
#[test]
fn check_reads_the_dockerfile_of_stdin_and_url_contexts() {
    use std::io::Write;
    use std::process::Stdio;
    let env = TestEnv::new();
    let text = "FROM alpine\nCMD echo hi\n";
    let mut cmd = util::strata_command(&env.root);
    cmd.args(["build", "--check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("starting strata");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing stdin");
    let out = util::Output::from_process(
        format!("{cmd:?}"),
        child.wait_with_output().expect("waiting for strata"),
    );
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stdout
            .contains("WARNING: JSONArgsRecommended - JSON arguments recommended for CMD")
            && out.stdout.contains("(line 2)"),
        "{out}"
    );

    let (port, _) = util::http::serve(vec![("/Dockerfile".into(), text.as_bytes().to_vec())]);
    let url = format!("http://127.0.0.1:{port}/Dockerfile");
    let out = env.strata(&["build", "--check", &url]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stdout.contains("JSONArgsRecommended"), "{out}");
    let out = env.strata(&[
        "build",
        "--check",
        &format!("http://127.0.0.1:{port}/missing"),
    ]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(!out.stdout.contains("Check complete"), "{out}");
}

/// `--progress rawjson` carries the build checks' warnings as BuildKit's `SolveStatus`
/// `warnings`: on a vertex, level 1, the short line and description base64-encoded, the
/// rule's URL and the finding's line range.
#[test]
fn rawjson_progress_carries_the_check_warnings() {
    use base64::Engine;
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("a"), "a\n").expect("write");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY a /\nCMD echo hi\n",
    )
    .expect("write");
    let out = env.strata(&["build", "--progress", "rawjson", &ctx.to_string_lossy()]);
    out.assert_ok();
    let statuses: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{out}")))
        .collect();
    let warnings: Vec<&serde_json::Value> = statuses
        .iter()
        .filter_map(|s| s["warnings"].as_array())
        .flatten()
        .collect();
    assert_eq!(warnings.len(), 1, "{out}");
    let w = warnings[0];
    let decode = |v: &serde_json::Value| {
        let b = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64");
        String::from_utf8(b).expect("utf-8")
    };
    assert_eq!(
        decode(&w["short"]),
        "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)"
    );
    assert_eq!(w["level"], 1);
    assert_eq!(w["range"][0]["start"]["line"], 3);
    assert!(
        w["url"]
            .as_str()
            .is_some_and(|u| u.contains("json-args-recommended")),
        "{w}"
    );
    assert_eq!(
        decode(&w["sourceInfo"]["data"]),
        "FROM scratch\nCOPY a /\nCMD echo hi\n"
    );
    let vertex = w["vertex"].as_str().expect("vertex digest");
    assert!(
        statuses
            .iter()
            .filter_map(|s| s["vertexes"].as_array())
            .flatten()
            .any(|v| v["digest"] == vertex),
        "the warning's vertex is never announced:\n{out}"
    );
    // No plain-text summary mixed into the JSON lines.
    assert!(!out.stderr.contains("warning found"), "{out}");
}
