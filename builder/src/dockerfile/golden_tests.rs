//! Golden fixtures: `testdata/dockerfiles/<name>/Dockerfile` → `expected.txt`, a dump of
//! the line-level parse (BuildKit's s-expression form), the typed stages and the check
//! verdict. `STRATA_BLESS=1 cargo test -p builder golden` rewrites the expected files.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::lint::format_text;
use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dockerfiles")
}

fn dump(text: &str) -> String {
    let mut out = String::from("== parse\n");
    match parse::parse_lines(text) {
        Ok(lines) => out.push_str(&dump::dump_nodes(&lines.nodes)),
        Err(e) => {
            let _ = writeln!(out, "error: {}", e.in_file("Dockerfile"));
        }
    }
    out.push_str("== typed\n");
    match super::parse(text, "Dockerfile") {
        Ok(df) => {
            for inst in &df.meta_args {
                let _ = writeln!(
                    out,
                    "meta {}-{} {}",
                    inst.span.start,
                    inst.span.end,
                    json(&inst.command)
                );
            }
            for (i, s) in df.stages.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "stage {i} {}-{} base={:?} name={:?} platform={:?}",
                    s.span.start, s.span.end, s.base, s.name, s.platform
                );
                for inst in &s.instructions {
                    let _ = writeln!(
                        out,
                        "  {}-{} {}",
                        inst.span.start,
                        inst.span.end,
                        json(&inst.command)
                    );
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
        }
    }
    out.push_str("== check\n");
    out.push_str(&format_text(&check(
        text,
        "Dockerfile",
        &CheckOptions::default(),
    )));
    out
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[test]
fn golden_fixtures() {
    let bless = std::env::var_os("STRATA_BLESS").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("testdata/dockerfiles exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "fixtures missing in {}",
        fixtures().display()
    );
    let mut failures = Vec::new();
    for dir in dirs {
        let text =
            std::fs::read_to_string(dir.join("Dockerfile")).expect("fixture has a Dockerfile");
        let got = dump(&text);
        let expected_path = dir.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &got).expect("write expected.txt");
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n--- want\n{want}--- got\n{got}",
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (STRATA_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
