//! push, pull and image copy on a terminal leave docker's final screen: every layer keeps one line with
//! its final status, the bars are replaced by those lines, and the `digest:` / `Status:`
//! lines come after them; nothing is drawn over. The command runs under
//! `script` (bsdutils; a real pty) and its output is replayed into a terminal emulator (vt100).

mod registry_common;
mod util;

use registry_common::{oci_layout, random_bytes, skopeo_copy, Registry, RegistryOptions, Strata};

const COLS: u16 = 160;

/// Runs strata with `args` on a pty of COLS columns and returns the screen it leaves.
fn screen_after(s: &Strata, args: &[&str]) -> (Vec<String>, String) {
    let script = util::require_tool("script", "bsdutils");
    let mut line = format!(
        "stty cols {COLS} rows 60; exec {} --root {}",
        env!("CARGO_BIN_EXE_strata"),
        s.root.display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let out = util::run(
        std::process::Command::new(script)
            .args(["-qec", &line, "/dev/null"])
            .env("DOCKER_CONFIG", &s.docker_config)
            .env_remove("BUILDKIT_PROGRESS"),
    );
    let mut term = vt100::Parser::new(60, COLS, 0);
    term.process(out.as_bytes());
    let screen = term
        .screen()
        .rows(0, COLS)
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    (screen, out)
}

/// The line that starts with `prefix`, after every line in `above`; written as plain text
/// (ended by its newline, not padded with spaces to the terminal's width).
fn final_line(screen: &[String], raw: &str, prefix: &str, above: &[usize]) {
    let at = screen
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line on:\n{}", screen.join("\n")));
    assert!(
        above.iter().all(|&i| i < at),
        "{prefix:?} drawn above a layer line:\n{}",
        screen.join("\n")
    );
    assert!(
        raw.contains(&format!("{}\r\n", screen[at])),
        "{prefix:?} padded or not ended by a newline:\n{raw:?}"
    );
}

/// The index of the one line equal to `want`; fails when there are none or several, or
/// when it was written padded with spaces to the terminal's width (as indicatif pads the
/// lines it draws) rather than as plain text ended by its newline.
fn one_line(screen: &[String], raw: &str, want: &str) -> usize {
    assert!(
        raw.contains(&format!("{want}\r\n")),
        "{want:?} padded or not ended by a newline:\n{raw:?}"
    );
    let at: Vec<usize> = (0..screen.len()).filter(|&i| screen[i] == want).collect();
    assert_eq!(
        at.len(),
        1,
        "want exactly one line {want:?} on:\n{}",
        screen.join("\n")
    );
    at[0]
}

#[test]
fn push_and_pull_leave_every_layer_line_on_a_terminal() {
    let reg = Registry::start(RegistryOptions::default());
    let layout = tempfile::tempdir().expect("tempdir");
    let layers = vec![random_bytes(400_000, 7), random_bytes(2_000, 8)];
    let image = oci_layout(layout.path(), "t", &layers);
    skopeo_copy(
        &[],
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{}/src/app:1", reg.addr),
    );
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest).expect("manifest");
    let ids: Vec<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest")[7..19].to_string())
        .collect();

    let s = Strata::new();
    let (pulled, raw) = screen_after(&s, &["pull", &format!("{}/src/app:1", reg.addr)]);
    let layers: Vec<usize> = ids
        .iter()
        .map(|id| one_line(&pulled, &raw, &format!("{id}: Pull complete")))
        .collect();
    final_line(&pulled, &raw, "Digest: sha256:", &layers);

    // Another registry, so the layers are uploaded rather than mounted.
    let other = Registry::start(RegistryOptions::default());
    let dst = format!("{}/dst/app:2", other.addr);
    s.run(&["tag", &format!("{}/src/app:1", reg.addr), &dst])
        .ok();
    let (pushed, raw) = screen_after(&s, &["push", &dst]);
    let layers: Vec<usize> = ids
        .iter()
        .map(|id| one_line(&pushed, &raw, &format!("{id}: Pushed")))
        .collect();
    final_line(&pushed, &raw, "2: digest: sha256:", &layers);

    // `image copy` shows push's screen: a line per layer, then the digest line.
    let copied = format!("{}/copied/app:3", other.addr);
    let (screen, raw) = screen_after(
        &s,
        &["image", "copy", &format!("{}/src/app:1", reg.addr), &copied],
    );
    let layers: Vec<usize> = ids
        .iter()
        .map(|id| one_line(&screen, &raw, &format!("{id}: Pushed")))
        .collect();
    final_line(&screen, &raw, "3: digest: sha256:", &layers);
}
