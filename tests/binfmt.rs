//! `strata binfmt` lists the platforms this machine runs (natively, or through the QEMU
//! handler the test set-up registers in the kernel's binfmt_misc), and `strata binfmt
//! install` registers qemu-user-static's emulators: idempotent for a registered platform,
//! and a real registration (removed again at the end) for one the machine has no handler
//! for.

mod util;

use std::fs;
use std::path::Path;

use util::foreign::{self, BINFMT_MISC};
use util::TestEnv;

/// Removes the binfmt_misc entry `name` when dropped (the test registered it).
struct Unregister(String);

impl Drop for Unregister {
    fn drop(&mut self) {
        let entry = Path::new(BINFMT_MISC).join(&self.0);
        if entry.exists() {
            if let Err(e) = fs::write(&entry, "-1") {
                eprintln!(
                    "removing the test's binfmt_misc entry {}: {e}",
                    entry.display()
                );
            }
        }
    }
}

/// The row of `platform` in `strata binfmt`'s table, split on blanks.
fn row(listing: &str, platform: &str) -> Option<Vec<String>> {
    listing
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(platform))
}

#[test]
fn lists_registered_emulators_and_installs_idempotently() {
    if !foreign::arm64_emulation() {
        return;
    }
    let env = TestEnv::new();
    let listed = env.strata(&["binfmt"]);
    listed.assert_ok();
    assert!(listed.stdout.starts_with("PLATFORM"), "{listed}");
    assert_eq!(
        row(&listed.stdout, "linux/amd64").map(|r| r[1].clone()),
        Some("(native)".to_string()),
        "{listed}"
    );
    let arm64 = row(&listed.stdout, "linux/arm64").expect("linux/arm64 is listed");
    assert!(arm64[1].contains("aarch64"), "{listed}");
    assert!(
        arm64[3].contains('F'),
        "registered with the F flag: {listed}"
    );

    let again = env.strata(&["binfmt", "install", "--platform", "linux/arm64"]);
    again.assert_ok();
    assert!(
        again.stdout.contains("linux/arm64: already registered"),
        "{again}"
    );

    // A platform with no handler yet: registered for real, listed, then removed.
    let Some(platform) = foreign::unhandled_platform() else {
        return;
    };
    let installed = env.strata(&["binfmt", "install", "--platform", platform]);
    let name = installed
        .stdout
        .split_once(": registered ")
        .map(|(_, n)| n.trim().to_string());
    let _cleanup = name.clone().map(Unregister);
    installed.assert_ok();
    let name = name.expect("names the entry it registered");
    let entry = fs::read_to_string(Path::new(BINFMT_MISC).join(&name)).expect("the new entry");
    assert!(entry.starts_with("enabled"), "{entry}");
    assert!(
        entry
            .lines()
            .any(|l| l.starts_with("flags:") && l.contains('F')),
        "{entry}"
    );
    let listed = env.strata(&["binfmt"]);
    assert_eq!(
        row(&listed.stdout, platform).map(|r| r[1].clone()),
        Some(name),
        "{listed}"
    );
    let twice = env.strata(&["binfmt", "install", "--platform", platform]);
    twice.assert_ok();
    assert!(twice.stdout.contains("already registered"), "{twice}");
}
