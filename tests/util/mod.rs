//! Harness for the end-to-end tests, in ripgrep's style: a fresh temp root per test, the
//! built `strata` binary run with the user's environment cleared of strata settings, and
//! failures that print the command, its exit status, stdout and stderr.
//!
//! Every tests/*.rs crate declares `mod util;`. [`TestEnv`] serves the build and registry
//! tests; [`test_dir::TestDir`] the store command tests, with chained assertions and a
//! listing of the root in its failure report. The registry harness (`registry_common`)
//! builds on [`strata_command`], [`Output`], [`require_tool`] and [`run`] from here.
#![allow(dead_code)]

pub mod foreign;
pub mod git;
pub mod http;
pub mod test_dir;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::OnceLock;

/// A temp store root (and scratch space) for one test.
pub struct TestEnv {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub scratch: PathBuf,
}

/// What one `strata` run did.
pub struct Output {
    pub cmd: String,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }
}

impl Output {
    /// What `cmd` (as the report shows it) printed and how it exited.
    pub fn from_process(cmd: String, out: process::Output) -> Output {
        Output {
            cmd,
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Output {
        assert_eq!(self.status, Some(0), "strata failed:\n{self}");
        self
    }

    /// Steps a plain-progress build reported as CACHED.
    pub fn cached_steps(&self) -> usize {
        self.stderr
            .lines()
            .filter(|l| l.starts_with('#') && l.ends_with(" CACHED"))
            .count()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let scratch = dir.path().join("scratch");
        fs::create_dir_all(&scratch).expect("mkdir scratch");
        TestEnv {
            _dir: dir,
            root,
            scratch,
        }
    }

    /// A root holding `busybox:latest`, built `FROM scratch` + `ADD rootfs.tar /` from the
    /// rootfs testdata/rootfs/make-busybox-rootfs.sh makes.
    pub fn with_busybox() -> TestEnv {
        let env = TestEnv::new();
        let ctx = env.scratch.join("busybox-ctx");
        fs::create_dir_all(&ctx).expect("mkdir");
        fs::copy(busybox_rootfs(), ctx.join("rootfs.tar")).expect("copy rootfs");
        fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nADD rootfs.tar /\nCMD [\"sh\"]\n",
        )
        .expect("write");
        // A fixed SOURCE_DATE_EPOCH: every test root gets the very same base image.
        let args = [
            "-t",
            "busybox:latest",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ];
        env.build(&ctx, &args).assert_ok();
        env
    }

    pub fn strata(&self, args: &[&str]) -> Output {
        strata_at(&self.root, args)
    }

    /// `strata build --progress plain ARGS CONTEXT`.
    pub fn build(&self, context: &Path, args: &[&str]) -> Output {
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        let ctx = context.to_string_lossy().into_owned();
        all.push(&ctx);
        self.strata(&all)
    }

    pub fn manifest_digest(&self, tag: &str) -> String {
        manifest_digest(&self.root, tag)
    }

    pub fn image_id(&self, tag: &str) -> String {
        let manifest = read_blob_json(&self.root, &self.manifest_digest(tag));
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string()
    }
}

/// The built `strata` on `root`, without the developer's settings for strata and the
/// tools it reads (root, build epoch, CA bundle): a test sees only what it sets.
pub fn strata_command(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--root").arg(root);
    for var in [
        "STRATA_ROOT",
        "XDG_DATA_HOME",
        "SOURCE_DATE_EPOCH",
        "SSL_CERT_FILE",
        "BUILDKIT_PROGRESS",
        "BUILDX_METADATA_PROVENANCE",
        "BUILDX_METADATA_WARNINGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// strata on the store at `root` with `args`, run to its end (success is the caller's to
/// assert).
pub fn strata_at(root: &Path, args: &[&str]) -> Output {
    let mut cmd = strata_command(root);
    cmd.args(args);
    capture(cmd)
}

fn capture(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {shown}: {e}"));
    Output::from_process(shown, out)
}

/// A tool the test needs, found on PATH: fail loudly, naming the Debian package, never skip.
#[track_caller]
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("this test needs `{tool}`: install it with `apt-get install -y {package}` (the README's test command does)")
    })
}

/// A file a Debian package installs (e.g. /bin/busybox): like [`require_tool`].
#[track_caller]
pub fn require_file(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "this test needs {path}: install it with `apt-get install -y {package}` (the README's test command does)"
    );
    p
}

/// Runs a command to completion, panicking with its status and output when it fails;
/// returns its stdout.
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs an external tool the README's test command installs (Debian package of the
/// same name); fails saying how to get it.
#[track_caller]
pub fn run_tool(tool: &str, args: &[&str]) -> String {
    require_tool(tool, tool);
    run(Command::new(tool).args(args))
}

/// The repository's testdata/build/NAME fixture.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/build")
        .join(name)
}

/// A busybox rootfs tar, made once per test binary.
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("strata-test-rootfs-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let out = dir.join("busybox-rootfs.tar");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rootfs/make-busybox-rootfs.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .status()
            .expect("running make-busybox-rootfs.sh");
        assert!(
            status.success(),
            "{} failed: is busybox-static installed? (apt-get install -y busybox-static)",
            script.display()
        );
        out
    })
}

fn manifest_digest(root: &Path, tag: &str) -> String {
    let full = normalize(tag);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).expect("index.json"))
            .expect("json");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["io.containerd.image.name"] == full.as_str())
        .unwrap_or_else(|| panic!("{full} not in index.json: {index}"))["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

/// `name:tag` → `docker.io/library/name:tag` (enough for the tests' own names).
fn normalize(tag: &str) -> String {
    let with_tag = if tag.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    };
    if with_tag.contains('/') {
        with_tag
    } else {
        format!("docker.io/library/{with_tag}")
    }
}

pub fn read_blob(root: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    fs::read(root.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("blob {digest}: {e}"))
}

pub fn read_blob_json(root: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&read_blob(root, digest)).expect("blob is JSON")
}

pub fn image_config(root: &Path, tag: &str) -> serde_json::Value {
    let manifest = read_blob_json(root, &manifest_digest(root, tag));
    read_blob_json(
        root,
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    )
}

fn layer_reader(root: &Path, layer: &serde_json::Value) -> Box<dyn Read> {
    let bytes = read_blob(root, layer["digest"].as_str().expect("digest"));
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::Cursor::new(
            bytes,
        )))
    } else {
        Box::new(std::io::Cursor::new(bytes))
    }
}

/// The entry names of each layer of the image, bottom first.
pub fn image_layers(root: &Path, tag: &str) -> Vec<Vec<String>> {
    let manifest = read_blob_json(root, &manifest_digest(root, tag));
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let mut names = tar_entry_names(layer_reader(root, l));
            names.sort();
            names
        })
        .collect()
}

/// The names of a tar's entries, in archive order.
pub fn tar_entry_names(reader: impl std::io::Read) -> Vec<String> {
    tar::Archive::new(reader)
        .entries()
        .expect("tar entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Build context copies (`snapshots/context-…`) left under the root.
pub fn context_temps(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("snapshots"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("context-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The image's filesystem, flattened into a temp dir the way a runtime would: layers in
/// order, `.wh.` whiteouts delete, `.wh..wh..opq` empties the directory.
pub fn image_rootfs(root: &Path, tag: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    let manifest = read_blob_json(root, &manifest_digest(root, tag));
    for layer in manifest["layers"].as_array().expect("layers") {
        let mut archive = tar::Archive::new(layer_reader(root, layer));
        let mut opaque_done: BTreeMap<PathBuf, ()> = BTreeMap::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").into_owned();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = out.path().join(path.parent().unwrap_or(Path::new("")));
            if name == ".wh..wh..opq" {
                if opaque_done.insert(parent.clone(), ()).is_none() && parent.is_dir() {
                    for child in fs::read_dir(&parent).expect("read_dir") {
                        let child = child.expect("entry").path();
                        remove_any(&child);
                    }
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                remove_any(&parent.join(hidden));
                continue;
            }
            let target = out.path().join(&path);
            if let Ok(meta) = fs::symlink_metadata(&target) {
                if !(meta.is_dir() && entry.header().entry_type().is_dir()) {
                    remove_any(&target);
                }
            }
            entry.set_preserve_permissions(true);
            entry
                .unpack_in(out.path())
                .unwrap_or_else(|e| panic!("unpacking {}: {e}", path.display()));
        }
    }
    out
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).expect("rm -r"),
        Ok(m) if m.file_type().is_char_device() || m.is_file() || m.file_type().is_symlink() => {
            fs::remove_file(p).expect("rm")
        }
        Ok(_) => fs::remove_file(p).expect("rm"),
        Err(_) => {}
    }
}

/// One layer tar with `entries` (name, type, link target, data), written verbatim.
pub fn raw_layer(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_size(data.len() as u64);
        h.set_mode(if *kind == b'5' { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}
