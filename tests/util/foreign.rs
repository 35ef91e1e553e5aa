//! Another architecture on this machine, for the multi-platform tests: an arm64 busybox
//! rootfs made from Debian's `busybox-static:arm64`, and QEMU user emulation registered in
//! the kernel's `binfmt_misc`.
//!
//! The set-up does as root what a CI machine's administrator does once (strata itself only
//! reads what is registered): mount `binfmt_misc` if it is not mounted and register
//! `qemu-aarch64` from qemu-user-static's `/usr/lib/binfmt.d/qemu-aarch64.conf`. Where the
//! kernel has no binfmt_misc at all, [`arm64_emulation`] says so loudly and returns false.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{require_tool, run};

pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// An arm64 busybox rootfs tar (same layout as [`super::busybox_rootfs`]), made once in
/// cargo's target tmpdir from the `busybox-static:arm64` package, downloaded there once (`apt-get download` needs `dpkg --add-architecture arm64` and an
/// `apt-get update` after it; the README's test command does both).
pub fn arm64_busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-static-arm64");
        let busybox = cache.join("root/bin/busybox");
        if !busybox.is_file() {
            require_tool("apt-get", "apt");
            let download = cache.join("deb");
            fs::create_dir_all(&download).expect("mkdir deb");
            let out = Command::new("apt-get")
                .args(["download", "busybox-static:arm64"])
                .current_dir(&download)
                .output()
                .expect("running apt-get download");
            assert!(
                out.status.success(),
                "apt-get download busybox-static:arm64 failed: run `dpkg --add-architecture arm64 && apt-get update` (the README's test command does):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let deb = fs::read_dir(&download)
                .expect("read deb dir")
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .expect("apt-get download left a .deb");
            run(Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(cache.join("root")));
        }
        // Made next to the package, once: written under this process's name, then renamed
        // into place (another test binary may be making it at the same moment).
        let out = cache.join("rootfs.tar");
        if !out.is_file() {
            let part = cache.join(format!("rootfs.tar.{}", std::process::id()));
            let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/rootfs/make-busybox-rootfs.sh");
            run(Command::new("bash")
                .arg(&script)
                .arg(&part)
                .env("BUSYBOX", &busybox)
                .env("APPLETS_FROM", "/bin/busybox"));
            fs::rename(&part, &out).expect("renaming the arm64 rootfs into place");
        }
        out
    })
}

/// Whether arm64 binaries run here through QEMU: mounts binfmt_misc and registers
/// `qemu-aarch64` when needed (root). False, with a loud message on stderr, only where
/// the kernel has no binfmt_misc; a missing qemu-user-static fails the test instead.
pub fn arm64_emulation() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !filesystems.lines().any(|l| l.ends_with("binfmt_misc")) {
            eprintln!(
                "\n*** SKIPPING the emulated part of this test: this kernel has no binfmt_misc \
                 (CONFIG_BINFMT_MISC), so arm64 binaries cannot run here. ***\n"
            );
            return false;
        }
        let dir = Path::new(BINFMT_MISC);
        if !dir.join("register").exists() {
            run(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", BINFMT_MISC]));
        }
        if !dir.join("qemu-aarch64").exists() {
            let conf =
                super::require_file("/usr/lib/binfmt.d/qemu-aarch64.conf", "qemu-user-static");
            let line = fs::read_to_string(&conf).expect("reading qemu-aarch64.conf");
            let line = line
                .lines()
                .find(|l| l.starts_with(':'))
                .expect("a registration line in qemu-aarch64.conf");
            // Another test binary may register it at the same moment: EEXIST is fine.
            if let Err(e) = fs::write(dir.join("register"), line) {
                assert!(
                    dir.join("qemu-aarch64").exists(),
                    "registering qemu-aarch64 in {BINFMT_MISC}: {e}"
                );
            }
        }
        true
    })
}

/// A platform this kernel has no binfmt_misc handler for (and that is not the host's),
/// for the test of the missing-handler error; `None`, said loudly, if every candidate
/// has one.
pub fn unhandled_platform() -> Option<&'static str> {
    let registered: Vec<String> = fs::read_dir(BINFMT_MISC)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let candidates = [
        ("linux/s390x", "s390x"),
        ("linux/riscv64", "riscv64"),
        ("linux/ppc64le", "ppc64le"),
        ("linux/mips64le", "mips64el"),
    ];
    let found = candidates
        .iter()
        .find(|(_, qemu)| !registered.iter().any(|r| r.contains(qemu)))
        .map(|(p, _)| *p);
    if found.is_none() {
        eprintln!("\n*** SKIPPING the missing-handler check: every candidate platform has a binfmt_misc handler here. ***\n");
    }
    found
}
