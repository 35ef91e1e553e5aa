//! `strata build --check` accepts every official-image Dockerfile in testdata/official, as
//! BuildKit does: each parses and is checked without an error. Like `docker build --check`,
//! a Dockerfile on which a rule fires exits 1 with the warning summary and nothing else.

mod util;

use std::path::Path;

use util::TestEnv;

#[test]
fn official_dockerfiles_pass_check() {
    let env = TestEnv::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/official");
    let mut count = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("testdata/official exists") {
        let path = entry.expect("dir entry").path().join("Dockerfile");
        if !path.exists() {
            continue;
        }
        count += 1;
        let out = env.strata(&["build", "--check", "-f", &path.to_string_lossy()]);
        if !checked_cleanly(&out) {
            failures.push(format!("{}:\n{out}", path.display()));
        }
    }
    assert!(count >= 30, "only {count} official Dockerfiles");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Exit 0 with no warnings, or exit 1 whose whole output is the warning summary: the
/// Dockerfile parsed and only build-check rules fired.
fn checked_cleanly(out: &util::Output) -> bool {
    let mut lines = out.stdout.lines().filter(|l| !l.trim().is_empty());
    match out.status {
        Some(0) => true,
        Some(1) => {
            out.stderr.trim().is_empty()
                && lines
                    .next()
                    .is_some_and(|l| l.starts_with("Check complete, ") && l.contains(" found!"))
                && lines.all(|l| l.starts_with("WARNING: "))
        }
        _ => false,
    }
}
