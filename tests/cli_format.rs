//! `--format` as docker has it (Go templates, `table` header rows, `json`, errors for
//! unknown fields and bad syntax) on `images`, `inspect`, `history` and `system df`.

mod util;

use std::fs;

use util::TestEnv;

/// A root with `app:v1`: `FROM scratch`, one small `COPY`.
fn env_with_app() -> TestEnv {
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("hello.txt"), "hello\n").expect("write");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n").expect("write");
    env.build(&ctx, &["-t", "app:v1"]).assert_ok();
    env
}

#[test]
fn images_format_templates_like_docker() {
    let env = env_with_app();
    let id = env.image_id("app:v1");
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let out = env.strata(&["images", "--format", "table {{.Repository}}\\t{{.ID}}"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["REPOSITORY   IMAGE ID", &format!("app          {short}")]
    );

    let out = env.strata(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{lower .Size}}",
    ]);
    out.assert_ok();
    assert!(out.stdout.starts_with("app:v1 "), "{out}");

    let out = env.strata(&["images", "--format", "json"]);
    out.assert_ok();
    let row: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("one JSON line");
    assert_eq!(row["Repository"], "app");
    assert_eq!(row["ID"], short);

    // An unknown field is an error naming it (docker: exit 1, "template parsing error").
    let out = env.strata(&["images", "--format", "{{.Foo}}"]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("template parsing error"), "{out}");
    assert!(out.stderr.contains("can't evaluate field Foo"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");

    let out = env.strata(&["images", "--format", "{{.Repository"]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("template parsing error"), "{out}");
}

#[test]
fn inspect_history_and_df_take_templates() {
    let env = env_with_app();
    let id = env.image_id("app:v1");

    for flag in ["-f", "--format"] {
        let out = env.strata(&["inspect", flag, "{{.Id}} {{json .RepoTags}}", "app:v1"]);
        out.assert_ok();
        assert_eq!(out.stdout, format!("{id} [\"app:v1\"]\n"));
    }
    // docker's typed Config: an unset CMD reads as empty, not as a missing field.
    let out = env.strata(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.Cmd}}|{{.Os}}",
        "app:v1",
    ]);
    out.assert_ok();
    assert_eq!(out.stdout, "[]|linux\n");
    let out = env.strata(&["inspect", "-f", "{{.Nope}}", "app:v1"]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("can't evaluate field Nope"), "{out}");
    // A template that does not parse: docker's status 64.
    let out = env.strata(&["inspect", "-f", "{{.Id", "app:v1"]);
    assert_eq!(out.status, Some(64), "{out}");
    assert!(out.stderr.contains("template parsing error"), "{out}");

    let out = env.strata(&[
        "history",
        "--format",
        "table {{.CreatedBy}}\\t{{.Size}}",
        "app:v1",
    ]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("CREATED BY") && lines[0].ends_with("SIZE"),
        "{out}"
    );
    assert!(lines[1].starts_with("COPY hello.txt /"), "{out}");
    let out = env.strata(&["history", "--format", "{{.Bad}}", "app:v1"]);
    assert_eq!(out.status, Some(1), "{out}");

    let out = env.strata(&[
        "system",
        "df",
        "--format",
        "table {{.Type}}\\t{{.TotalCount}}",
    ]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "TYPE            TOTAL", "{out}");
    assert_eq!(lines[1], "Images          1", "{out}");
    let out = env.strata(&["system", "df", "--format", "{{.Size"]);
    assert_eq!(out.status, Some(1), "{out}");
}

#[test]
fn images_filter_before_since_and_label() {
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    for (name, epoch, label) in [("a", "1000", "x"), ("b", "2000", "y"), ("c", "3000", "x")] {
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM scratch\nLABEL team={label}\nCOPY {name} /\n"),
        )
        .expect("write");
        fs::write(ctx.join(name), name).expect("write");
        let tag = format!("{name}:1");
        let epoch_arg = format!("SOURCE_DATE_EPOCH={epoch}");
        env.build(&ctx, &["-t", &tag, "--build-arg", &epoch_arg])
            .assert_ok();
    }
    let names = |filters: &[&str]| -> Vec<String> {
        let mut args = vec!["images", "--format", "{{.Repository}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let out = env.strata(&args);
        out.assert_ok();
        let mut names: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        names.sort();
        names
    };
    assert_eq!(names(&["before=b:1"]), ["a"]);
    assert_eq!(names(&["since=b:1"]), ["c"]);
    assert_eq!(names(&["label=team=x"]), ["a", "c"]);
    assert_eq!(names(&["label=team"]), ["a", "b", "c"]);
    assert_eq!(names(&["label=team=x", "since=a:1"]), ["c"]);

    let out = env.strata(&["images", "--filter", "before=nope:1"]);
    assert_eq!(out.status, Some(1), "{out}");
    let out = env.strata(&["images", "--filter", "colour=red"]);
    assert_eq!(out.status, Some(2), "{out}");
    assert!(out.stderr.contains("invalid filter 'colour'"), "{out}");
}

#[test]
fn completion_scripts_and_man_pages_list_the_commands() {
    let env = TestEnv::new();
    for (shell, marker) in [
        ("bash", "_strata()"),
        ("zsh", "#compdef strata"),
        ("fish", "complete -c strata"),
    ] {
        let out = env.strata(&["completion", shell]);
        out.assert_ok();
        assert!(out.stdout.contains(marker), "{shell}: {out}");
        assert!(out.stdout.contains("all-tags"), "{shell}: {out}");
    }
    let out = env.strata(&["completion", "tcsh"]);
    assert_eq!(out.status, Some(2), "{out}");

    let dir = env.scratch.join("man");
    env.strata(&["man", &dir.to_string_lossy()]).assert_ok();
    let page = fs::read_to_string(dir.join("strata-image-push.1")).expect("image push page");
    assert!(page.contains(".TH strata-image-push 1"), "{page}");
    assert!(page.contains("all\\-tags"), "{page}");
    assert!(dir.join("strata.1").is_file());

    let file = env.scratch.join("a-file");
    fs::write(&file, "").expect("write");
    let out = env.strata(&["man", &file.join("pages").to_string_lossy()]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("Not a directory"), "{out}");
}
