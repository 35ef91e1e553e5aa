//! Real services for the registry tests: Debian's `docker-registry` on 127.0.0.x with a
//! free port (plain http, htpasswd basic auth, TLS from a CA made here, or token auth
//! against [`TokenServer`]), a [`FaultProxy`] that breaks a share of the requests, OCI
//! layouts to seed registries with skopeo, and a runner for the `strata` binary.
//! Everything started here stops on Drop. A missing tool fails the test with the
//! package to install. Builds on tests/util: every test crate that uses this module
//! declares `mod util;` next to `mod registry_common;`.
#![allow(dead_code, unused_imports)]

pub mod proxy;
pub mod token;

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub use proxy::{FaultProxy, Hostile};
pub use token::TokenServer;

// The one Output of the e2e tests (command, status, stdout, stderr; printed whole on
// failure), with the registry tests' own assertions added below; and the harness's
// checks for installed tools and for external commands that must succeed.
pub use super::util::{require_tool as require, run, Output};

/// A port nobody listens on right now.
pub fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A self-signed CA and a server certificate for `ip` (and `localhost`), made with openssl.
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    pub fn create(dir: &Path, ip: &str) -> Tls {
        let p = |n: &str| dir.join(n);
        self_signed(
            &p("ca.key"),
            &p("ca.pem"),
            "/CN=strata test CA",
            &[
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=registry",
            ])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        std::fs::write(
            p("ext.cnf"),
            format!("subjectAltName=IP:{ip},DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("writing ext.cnf");
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("server.pem"))
            .arg("-extfile")
            .arg(p("ext.cnf")));
        Tls {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        }
    }
}

/// `openssl req -x509`: a new RSA key at `key` and a certificate for it at `cert`,
/// self-signed for `subject`, valid two days; `extra` adds arguments (extensions).
pub fn self_signed(key: &Path, cert: &Path, subject: &str, extra: &[&str]) {
    require("openssl", "openssl");
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
        ])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .args(extra));
}

/// How a [`Registry`] authenticates.
pub enum Auth<'a> {
    None,
    /// htpasswd with bcrypt, one user.
    Basic {
        user: &'a str,
        password: &'a str,
    },
    Token(&'a TokenServer),
}

/// Options for [`Registry::start`].
pub struct RegistryOptions<'a> {
    pub host: &'a str,
    pub auth: Auth<'a>,
    pub tls: bool,
}

impl Default for RegistryOptions<'_> {
    fn default() -> Self {
        RegistryOptions {
            host: "127.0.0.1",
            auth: Auth::None,
            tls: false,
        }
    }
}

/// A running `docker-registry`; killed on Drop.
pub struct Registry {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `host:port`, as written in references.
    pub addr: String,
    pub tls: Option<Tls>,
}

impl Registry {
    pub fn start(opts: RegistryOptions) -> Registry {
        require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port(opts.host);
        let addr = format!("{}:{port}", opts.host);
        let tls = opts.tls.then(|| Tls::create(dir.path(), opts.host));
        let mut yml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n  secret: strata-test-secret\n",
            dir.path().join("data").display()
        );
        if let Some(t) = &tls {
            yml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            );
        }
        match &opts.auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                require("htpasswd", "apache2-utils");
                let line = run(Command::new("htpasswd").args(["-Bbn", user, password]));
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, line.trim()).expect("writing htpasswd");
                yml += &format!(
                    "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                    path.display()
                );
            }
            Auth::Token(ts) => {
                yml += &format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    ts.realm(), token::SERVICE, token::ISSUER, ts.cert_path().display()
                );
            }
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yml).expect("writing config.yml");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log);
        // Dies with the test's thread even when the test process is killed (no Drop).
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("starting docker-registry");
        let mut reg = Registry {
            child,
            dir,
            addr,
            tls,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", self.log());
            }
            if TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not listen on {} within 20 s:\n{}",
            self.addr,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry tests' own assertions on the shared [`Output`].
impl Output {
    #[track_caller]
    pub fn ok(self) -> Output {
        assert_eq!(self.status, Some(0), "strata failed:\n{self}");
        self
    }
    #[track_caller]
    pub fn fails(self) -> Output {
        assert_ne!(self.status, Some(0), "strata should have failed:\n{self}");
        self
    }
    /// The digest in docker's `TAG: digest: sha256:… size: N` line.
    pub fn pushed_digest(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.split(": digest: ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no `digest:` line in push output:\n{self}"))
            .to_string()
    }
}

/// A store root and a docker config dir for one test, and a way to run strata in them.
pub struct Strata {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub docker_config: PathBuf,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Strata {
    pub fn new() -> Strata {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let docker_config = dir.path().join("docker");
        Strata {
            dir,
            root,
            docker_config,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = super::util::strata_command(&self.root);
        cmd.args(&self.extra_args);
        cmd.args(args);
        cmd.env("DOCKER_CONFIG", &self.docker_config);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let text = format!("{cmd:?}");
        let mut child = cmd.spawn().expect("starting strata");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("writing stdin");
        }
        let out = child.wait_with_output().expect("waiting for strata");
        Output::from_process(text, out)
    }

    pub fn store(&self) -> store::Store {
        store::Store::open(&self.root).expect("opening the test store")
    }

    /// Re-hashes every blob in the store: none may differ from its name, and no ingest
    /// file may be left behind.
    #[track_caller]
    pub fn assert_store_clean(&self) {
        let blobs = self.root.join("blobs/sha256");
        let mut n = 0;
        for entry in std::fs::read_dir(&blobs).expect("reading blobs dir") {
            let entry = entry.expect("dir entry");
            let bytes = std::fs::read(entry.path()).expect("reading blob");
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_eq!(
                sha256_hex(&bytes),
                name,
                "blob {name} does not match its digest"
            );
            n += 1;
        }
        assert!(n > 0, "no blobs in {}", blobs.display());
        let ingest: Vec<_> = std::fs::read_dir(self.root.join("ingest"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(ingest.is_empty(), "ingest files left behind: {ingest:?}");
    }
}

/// Layer contents for [`oci_layout`]: one file per layer, `size` bytes, random or
/// compressible.
pub fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, name, content).expect("tar append");
    b.into_inner().expect("tar finish")
}

/// Pseudo-random bytes (xorshift; deterministic per seed).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// One platform image written into an OCI layout.
pub struct Image {
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let hex = sha256_hex(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("blobs dir");
    std::fs::write(dir.join(&hex), bytes).expect("writing blob");
    (format!("sha256:{hex}"), bytes.len() as u64)
}

/// Writes a gzip-layered image (OCI media types) for `arch` into the layout's blobs.
pub fn oci_image(layout: &Path, layers: &[Vec<u8>], arch: &str, variant: Option<&str>) -> Image {
    use flate2::{write::GzEncoder, Compression};
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, content) in layers.iter().enumerate() {
        let tar = layer_tar(&format!("file{i}"), content);
        diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip finish");
        let (digest, size) = put_blob(layout, &gz);
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}));
    }
    let mut config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(v) = variant {
        config["variant"] = serde_json::json!(v);
    }
    let (cdigest, csize) = put_blob(layout, &serde_json::to_vec(&config).expect("json"));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": descs,
    }))
    .expect("json");
    let (manifest_digest, _) = put_blob(layout, &manifest);
    Image {
        manifest_digest,
        manifest,
    }
}

/// An OCI layout at `layout` whose index.json names `entries` (manifest or index
/// descriptors, each with a ref name annotation `tag`).
pub fn write_index(layout: &Path, entries: &[serde_json::Value]) {
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index.json");
}

/// A single-platform OCI layout tagged `tag`, with the given layer contents.
pub fn oci_layout(layout: &Path, tag: &str, layers: &[Vec<u8>]) -> Image {
    let img = oci_image(layout, layers, "amd64", None);
    write_index(
        layout,
        &[serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest, "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        })],
    );
    img
}

/// `skopeo copy` with TLS verification off for the registries of these tests.
#[track_caller]
pub fn skopeo_copy(extra: &[&str], src: &str, dst: &str) -> String {
    require("skopeo", "skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.arg("copy")
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .args(extra)
        .arg(src)
        .arg(dst);
    cmd.env("REGISTRY_AUTH_FILE", "/nonexistent-strata-test-auth.json");
    run(&mut cmd)
}

/// The manifest digest skopeo reports for `docker://ref`.
pub fn skopeo_digest(reference: &str) -> String {
    require("skopeo", "skopeo");
    let out = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}")));
    format!("sha256:{}", sha256_hex(out.as_bytes()))
}

/// HTTP GET over a plain TcpStream; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => buf[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}
