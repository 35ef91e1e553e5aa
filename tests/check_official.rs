//! `strata build --check` accepts every official-image Dockerfile in testdata/official
//! (exit 0; warnings allowed), as BuildKit does.

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
        if out.status != Some(0) {
            failures.push(format!("{}:\n{out}", path.display()));
        }
    }
    assert!(count >= 30, "only {count} official Dockerfiles");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
