//! The BuildKit differential corpus (testdata/buildkit/README.md): every case is built by
//! strata, saved as a docker-archive, normalised (tests/buildkit_corpus/normalise.rs) and
//! compared field by field with the answer docker 20.10's BuildKit gave for the same case
//! (testdata/buildkit/answers/, written by testdata/buildkit/record.sh through the ignored
//! `record_buildkit_answers` below, which uses the very same normaliser).
//!
//! `CORPUS_CASES=a,b` limits either test to the named cases.

mod util;

#[path = "buildkit_corpus/case.rs"]
mod case;
#[path = "buildkit_corpus/normalise.rs"]
mod normalise;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use case::Case;
use normalise::Base;
use util::{busybox_rootfs, run, TestEnv};

/// The base every case builds on: the busybox rootfs made on the machine (with
/// [`base_tar`]'s additions), imported under this name.
const BASE: &str = "busybox:bench";

/// The corpus base's tar: testdata/rootfs's busybox rootfs plus what a distribution image
/// has and a runtime mounts over: `/dev`, `/proc`, `/sys`, an empty `/etc/hosts` and
/// `/etc/resolv.conf`. Without them docker's runc leaves those mount points in every RUN
/// layer, an artefact of the base, not of the Dockerfile.
fn base_tar(dir: &Path) -> PathBuf {
    let out = dir.join("corpus-base.tar");
    let file = fs::File::create(&out).expect("create base tar");
    let mut builder = tar::Builder::new(file);
    let mut rootfs = tar::Archive::new(fs::File::open(busybox_rootfs()).expect("rootfs tar"));
    for entry in rootfs.entries().expect("rootfs entries") {
        let mut entry = entry.expect("rootfs entry");
        let path = entry.path().expect("path").into_owned();
        let mut header = entry.header().clone();
        if let Some(target) = entry.link_name().expect("link").map(|t| t.into_owned()) {
            builder
                .append_link(&mut header, &path, target)
                .expect("append link");
        } else {
            builder
                .append_data(&mut header, &path, &mut entry)
                .expect("append entry");
        }
    }
    for dir in ["dev", "proc", "sys"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, format!("./{dir}/"), std::io::empty())
            .expect("append dir");
    }
    for file in ["etc/hosts", "etc/resolv.conf"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        builder
            .append_data(&mut header, format!("./{file}"), std::io::empty())
            .expect("append file");
    }
    builder.finish().expect("finish base tar");
    out
}

fn selected() -> Vec<Case> {
    let only: Option<Vec<String>> = std::env::var("CORPUS_CASES")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let cases: Vec<Case> = case::all()
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    assert!(
        !cases.is_empty(),
        "no corpus case selected (CORPUS_CASES={only:?})"
    );
    cases
}

#[test]
fn corpus_matches_buildkit() {
    let env = TestEnv::new();
    let base_tar = base_tar(&env.scratch);
    env.strata(&["import", &base_tar.to_string_lossy(), BASE])
        .assert_ok();
    let saved_base = env.scratch.join("base.tar");
    env.strata(&["save", "-o", &saved_base.to_string_lossy(), BASE])
        .assert_ok();
    let base = Base::of_archive(&saved_base);

    let mut failures = Vec::new();
    let cases = selected();
    for case in &cases {
        let answer_path = case.answer_path();
        let expected: serde_json::Value = match fs::read(&answer_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", answer_path.display())),
            Err(e) => {
                failures.push(format!(
                    "{}: no answer at {} ({e}); run testdata/buildkit/record.sh",
                    case.name,
                    answer_path.display()
                ));
                continue;
            }
        };
        let ctx = env.scratch.join(format!("ctx-{}", case.name));
        case.materialise(&ctx);
        let tag = format!("corpus-{}:latest", case.name);
        let mut args = vec!["-t", tag.as_str()];
        args.extend(case.args.iter().map(String::as_str));
        let out = env.build(&ctx, &args);
        let actual = if out.status == Some(0) {
            let tar = env.scratch.join(format!("{}.tar", case.name));
            env.strata(&["save", "-o", &tar.to_string_lossy(), &tag])
                .assert_ok();
            let n = normalise::normalise(&tar, base);
            let _ = fs::remove_file(&tar);
            n
        } else {
            normalise::failed()
        };
        // A pinned answer holds only what the reference decides (files, layer count):
        // compare just the fields it has.
        let actual = match (&case.oracle, actual) {
            (Some(_), serde_json::Value::Object(mut all)) => {
                all.retain(|k, _| expected.get(k).is_some());
                serde_json::Value::Object(all)
            }
            (_, a) => a,
        };
        let differences = normalise::diff(&expected, &actual);
        match (&case.differs, differences.is_empty()) {
            (None, true) | (Some(_), false) => {}
            (None, false) => {
                let mut msg = format!("{}: strata's image differs from BuildKit's:", case.name);
                for d in differences.iter().take(6) {
                    msg.push_str("\n    ");
                    msg.push_str(d);
                }
                if differences.len() > 6 {
                    msg.push_str(&format!("\n    ... {} more", differences.len() - 6));
                }
                if actual["build"] == "failed" {
                    let tail: Vec<&str> = out.stderr.lines().rev().take(4).collect();
                    msg.push_str(&format!("\n    strata's build failed: {tail:?}"));
                }
                failures.push(msg);
            }
            (Some(why), true) => failures.push(format!(
                "{}: marked `differs: {why}` but strata now matches BuildKit; drop the line from its CASE",
                case.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Records BuildKit's answers; testdata/buildkit/record.sh runs it with a private dockerd.
#[test]
#[ignore = "needs a dockerd; run testdata/buildkit/record.sh"]
fn record_buildkit_answers() {
    assert!(
        std::env::var_os("DOCKER_HOST").is_some(),
        "run testdata/buildkit/record.sh: it starts the dockerd this recorder talks to"
    );
    let docker = std::env::var("DOCKER").unwrap_or_else(|_| "/usr/bin/docker".into());
    let work = tempfile::tempdir().expect("tempdir");
    run(Command::new(&docker)
        .arg("import")
        .arg(base_tar(work.path()))
        .arg(BASE));
    let saved_base = work.path().join("base.tar");
    run(Command::new(&docker)
        .args(["save", "-o"])
        .arg(&saved_base)
        .arg(BASE));
    let base = Base::of_archive(&saved_base);

    for case in selected() {
        if let Some(why) = &case.oracle {
            eprintln!("{}: answer pinned by hand ({why})", case.name);
            continue;
        }
        let ctx = work.path().join(format!("ctx-{}", case.name));
        case.materialise(&ctx);
        let tag = format!("corpus-{}:latest", case.name);
        // Docker's RUN needs a network mode; the private daemon has no bridge.
        let out = Command::new(&docker)
            .env("DOCKER_BUILDKIT", "1")
            .args([
                "build",
                "--network",
                "host",
                "--progress",
                "plain",
                "-t",
                &tag,
            ])
            .args(&case.args)
            .arg(&ctx)
            .output()
            .expect("running docker build");
        let answer = if out.status.success() {
            let tar = work.path().join(format!("{}.tar", case.name));
            run(Command::new(&docker)
                .args(["save", "-o"])
                .arg(&tar)
                .arg(&tag));
            normalise::normalise(&tar, base)
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!(
                "{}: docker build failed (recorded as such): {}",
                case.name,
                stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            );
            normalise::failed()
        };
        write_answer(&case.answer_path(), &answer);
        eprintln!("{}: recorded", case.name);
    }
}

fn write_answer(path: &Path, answer: &serde_json::Value) {
    fs::create_dir_all(path.parent().expect("answers dir")).expect("mkdir answers");
    let mut text = serde_json::to_string_pretty(answer).expect("json");
    text.push('\n');
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
