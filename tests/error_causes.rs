//! Errors name their cause without `--debug` (issue 19, "no surprises"): a full disk says
//! `no space left on device`, an unreachable registry fails at once with docker's wording.

mod util;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use util::{strata_command, Output, TestEnv};

/// A tmpfs of `size` mounted on `dir` for the test's life, unmounted on drop. Mounting
/// needs root: the test fails saying so rather than passing without a full disk.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(dir).expect("mkdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs on {} failed ({status}): this test needs root to fill a disk",
            dir.display()
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn build_on_a_full_disk_says_no_space_left_on_device() {
    let env = TestEnv::new();
    let _disk = SmallDisk::mount(&env.root, "8m");
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    // 12 MB that does not compress, for an 8 MB store.
    let mut big = fs::File::create(ctx.join("big.bin")).expect("create");
    let mut block = [0u8; 4096];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..3000 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        big.write_all(&block).expect("write");
    }
    drop(big);
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY big.bin /\n").expect("write");
    let out = env.build(&ctx, &[]);
    assert_eq!(out.status, Some(1), "{out}");
    assert!(
        out.stderr.contains("copying") && out.stderr.contains("big.bin"),
        "names the step's file:\n{out}"
    );
    assert!(
        out.stderr
            .to_ascii_lowercase()
            .contains("no space left on device"),
        "names the cause:\n{out}"
    );
}

#[test]
fn push_to_a_closed_port_fails_with_dockers_wording_and_no_layer_lines() {
    let env = TestEnv::new();
    let ctx = env.scratch.join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("a.txt"), "a\n").expect("write");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY a.txt /\n").expect("write");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let registry = format!("127.0.0.1:{port}");
    let tag = format!("{registry}/app:1");
    env.build(&ctx, &["-t", &tag]).assert_ok();
    for command in ["push", "pull"] {
        let mut cmd = strata_command(&env.root);
        cmd.args([command, &tag]);
        let out = Output::from_process(format!("{cmd:?}"), cmd.output().expect("run"));
        assert_eq!(out.status, Some(1), "{out}");
        let want = format!(
            "Get \"http://{registry}/v2/\": dial tcp {registry}: connect: connection refused"
        );
        assert!(out.stderr.contains(&want), "want {want:?}:\n{out}");
        for line in ["Preparing", "Pushing", "Pulling from", "still failing"] {
            assert!(!out.stderr.contains(line), "no {line:?} line:\n{out}");
        }
    }
}
