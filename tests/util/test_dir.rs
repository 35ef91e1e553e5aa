//! [`TestDir`]: the harness of the store command tests, in ripgrep's style: a fresh
//! temp directory and a fresh `--root` per test, the built `strata` binary with the
//! user's environment removed, and on failure a report of the command, exit status,
//! stdout, stderr and a listing of the root.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{require_file, strata_command};

pub struct TestDir {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

/// What a finished command printed.
pub struct Run {
    pub desc: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    listing: String,
}

impl Run {
    fn report(&self) -> String {
        format!(
            "\n---- command ----\n{}\n---- status ----\n{:?}\n---- stdout ----\n{}\n---- stderr ----\n{}\n---- root ----\n{}",
            self.desc, self.code, self.stdout, self.stderr, self.listing
        )
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "command failed:{}", self.report());
        self
    }

    #[track_caller]
    pub fn code(self, want: i32) -> Run {
        assert_eq!(
            self.code,
            Some(want),
            "unexpected exit status:{}",
            self.report()
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:{}",
            self.report()
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:{}",
            self.report()
        );
        self
    }
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("strata-store-test-")
            .tempdir()
            .expect("creating a temp dir");
        let root = dir.path().join("root");
        TestDir { dir, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `strata` command on this test's root, environment cleaned.
    pub fn command(&self, root: &Path, args: &[&str]) -> Command {
        let mut cmd = strata_command(root);
        cmd.args(args);
        cmd.current_dir(self.dir.path());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs strata on the default root.
    pub fn strata(&self, args: &[&str]) -> Run {
        self.strata_on(&self.root.clone(), args)
    }

    /// Runs strata on another root.
    pub fn strata_on(&self, root: &Path, args: &[&str]) -> Run {
        let cmd = self.command(root, args);
        let desc = format!("strata --root {} {}", root.display(), args.join(" "));
        self.finish(desc, cmd, root)
    }

    pub fn finish(&self, desc: String, mut cmd: Command, root: &Path) -> Run {
        let out: Output = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {desc}: {e}"));
        Run {
            desc,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            listing: listing(root),
        }
    }

    /// A busybox root filesystem tar (from Debian's busybox-static).
    pub fn busybox_rootfs(&self, name: &str, extra_file: Option<(&str, &[u8])>) -> PathBuf {
        let busybox = require_file("/bin/busybox", "busybox-static");
        let path = self.path(name);
        let f = fs::File::create(&path).expect("creating rootfs tar");
        let mut b = tar::Builder::new(f);
        for dir in ["bin", "etc", "tmp"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, dir, &[][..]).unwrap();
        }
        let bytes = fs::read(&busybox).expect("reading busybox");
        file(&mut b, "bin/busybox", &bytes, 0o755);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "bin/sh", "busybox").unwrap();
        if let Some((p, content)) = extra_file {
            file(&mut b, p, content, 0o644);
        }
        b.into_inner().unwrap().flush().unwrap();
        path
    }
}

fn file<W: Write>(b: &mut tar::Builder<W>, path: &str, bytes: &[u8], mode: u32) {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, bytes).unwrap();
}

/// `find ROOT -maxdepth 3` as text, for failure reports.
pub fn listing(root: &Path) -> String {
    let mut out = String::new();
    for e in walkdir_lite(root, 3) {
        out.push_str(&e);
        out.push('\n');
    }
    out
}

fn walkdir_lite(root: &Path, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(root) else {
        return out;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        out.push(format!("{} ({len} bytes)", p.display()));
        if depth > 1 && p.is_dir() && !p.is_symlink() {
            out.extend(walkdir_lite(&p, depth - 1));
        }
    }
    out
}

/// The IMAGE ID column of `images -q` as a sorted list.
pub fn ids(run: &Run) -> Vec<String> {
    let mut v: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    v.sort();
    v
}
