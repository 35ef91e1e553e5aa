//! A git build context over https (`strata build https://HOST/repo.git#REF:DIR`): a real
//! repository served by `git http-backend` (smart HTTP) behind TLS on 127.0.0.1, with a
//! certificate from a CA made here with openssl. strata fetches git contexts with the `git`
//! binary, so it trusts what git trusts: `GIT_SSL_CAINFO`, or `http.sslCAInfo` in the
//! user's git config (`SSL_CERT_FILE`, strata's extra root for registries, is not read by
//! git). An untrusted certificate fails the build naming the URL, and stores nothing.

mod registry_common;
mod util;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use registry_common::Tls;
use util::git::git;
use util::{context_temps, image_rootfs, require_tool, strata_command, Output, TestEnv};

/// `git http-backend` run as a CGI program for each request, behind TLS on 127.0.0.1 (a
/// free port), serving every repository under its base directory; stopped when dropped.
struct GitHttps {
    port: u16,
    is_stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl GitHttps {
    fn start(base: &Path, tls: &Tls) -> GitHttps {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        require_tool("git", "git");
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path (Debian package git)");
        let exec_path = String::from_utf8(exec_path.stdout).expect("UTF-8 exec path");
        let backend = Path::new(exec_path.trim()).join("git-http-backend");
        assert!(
            backend.is_file(),
            "this test needs {}: install it with `apt-get install -y git`",
            backend.display()
        );
        let certs = CertificateDer::pem_file_iter(&tls.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .expect("the server certificate");
        let key = PrivateKeyDer::from_pem_file(&tls.key).expect("the server key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("the server certificate and key"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = listener.local_addr().expect("local address").port();
        let is_stopping = Arc::new(AtomicBool::new(false));
        let stopping = is_stopping.clone();
        let base = base.to_path_buf();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (config, backend, base) = (config.clone(), backend.clone(), base.clone());
                // A failed handshake (the untrusted case) just ends that connection.
                std::thread::spawn(move || {
                    let _ = serve(stream, config, &backend, &base);
                });
            }
        });
        GitHttps {
            port,
            is_stopping,
            accept: Some(accept),
        }
    }

    fn url(&self, repo: &str) -> String {
        format!("https://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitHttps {
    fn drop(&mut self) {
        self.is_stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One HTTP/1.1 request over TLS, answered by `git http-backend` (CGI), then closed.
fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    backend: &Path,
    base: &Path,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let mut request_line = String::new();
    tls.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("GET").to_string(),
        parts.next().unwrap_or("/").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if tls.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        tls.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        tls.get_mut().flush()?;
    }
    let body = read_body(&mut tls, &header)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new(backend);
    cgi.env("GIT_PROJECT_ROOT", base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(protocol) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", protocol);
    }
    if let Some(encoding) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", encoding);
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written beside the read of stdout, so neither side waits on a full pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((out.stdout.len(), out.stdout.len()));
    let cgi_head = String::from_utf8_lossy(&out.stdout[..split.0]).into_owned();
    let cgi_body = &out.stdout[split.1..];
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    for line in cgi_head.lines().map(str::trim_end) {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_string();
            }
            Some(_) => {
                response.extend_from_slice(line.as_bytes());
                response.extend_from_slice(b"\r\n");
            }
            None => {}
        }
    }
    let mut tls = tls.into_inner();
    write!(
        tls,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        cgi_body.len()
    )?;
    tls.write_all(&response)?;
    tls.write_all(b"\r\n")?;
    tls.write_all(cgi_body)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// The request body: `Content-Length` bytes, or a chunked body decoded.
fn read_body(
    tls: &mut impl BufRead,
    header: &dyn Fn(&str) -> Option<String>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if let Some(length) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(length, 0);
        tls.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            tls.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 {
                // Trailers, up to the empty line.
                let mut line = String::new();
                while tls.read_line(&mut line)? > 0 && !line.trim_end().is_empty() {
                    line.clear();
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            tls.read_exact(&mut body[start..])?;
            let mut crlf = String::new();
            tls.read_line(&mut crlf)?;
        }
    }
    Ok(body)
}

/// A repository `repo.git` under `base`: tag `v1` has `app/main.txt` = "version one" and
/// `app/Dockerfile`; the branch moved on to "version two".
fn repository(base: &Path) -> PathBuf {
    let repo = base.join("repo.git");
    fs::create_dir_all(repo.join("app")).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(
        repo.join("app/Dockerfile"),
        "FROM scratch\nCOPY main.txt /app/main.txt\n",
    )
    .expect("write");
    fs::write(repo.join("app/main.txt"), "version one\n").expect("write");
    fs::write(repo.join("Dockerfile"), "FROM scratch\nCOPY top /top\n").expect("write");
    fs::write(repo.join("top"), "top one\n").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    fs::write(repo.join("app/main.txt"), "version two\n").expect("write");
    git(&repo, &["commit", "-q", "-am", "two"]);
    repo
}

/// `strata build ARGS` with git's trust settings cleared, then `trust` (env) added: the
/// caller's environment or `~/.gitconfig` must not decide the outcome.
fn build(env: &TestEnv, trust: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = strata_command(&env.root);
    for var in [
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
        "GIT_SSL_NO_VERIFY",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null");
    for (var, value) in trust {
        cmd.env(var, value);
    }
    cmd.args(["build", "--progress", "plain"]).args(args);
    let shown = format!("{cmd:?}");
    Output::from_process(shown, cmd.output().expect("run strata"))
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Tags in the store (`strata images`), one `REPO:TAG` a line.
fn tags(env: &TestEnv) -> Vec<String> {
    let out = env.strata(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    out.assert_ok();
    out.stdout.lines().map(str::to_string).collect()
}

/// `repository` served over https by a server whose certificate a fresh CA signed.
fn served_repository(env: &TestEnv) -> (GitHttps, Tls) {
    let base = env.scratch.join("served");
    repository(&base);
    let tls_dir = env.scratch.join("tls");
    fs::create_dir_all(&tls_dir).expect("mkdir");
    let tls = Tls::create(&tls_dir, "127.0.0.1");
    let server = GitHttps::start(&base, &tls);
    (server, tls)
}

#[test]
fn git_context_over_https_with_a_trusted_ca_builds_the_ref_and_subdir() {
    let env = TestEnv::new();
    let (server, tls) = served_repository(&env);
    let url = server.url("repo.git");

    // GIT_SSL_CAINFO: the ref's subdirectory is the context.
    build(
        &env,
        &[("GIT_SSL_CAINFO", &tls.ca)],
        &["-t", "git:sub", &format!("{url}#v1:app")],
    )
    .assert_ok();
    let rootfs = image_rootfs(&env.root, "git:sub");
    assert_eq!(read(rootfs.path(), "app/main.txt"), "version one\n");
    assert!(!rootfs.path().join("top").exists());

    // `http.sslCAInfo` in the user's git config; a branch: its head.
    let gitconfig = env.scratch.join("gitconfig");
    fs::write(
        &gitconfig,
        format!("[http]\n\tsslCAInfo = {}\n", tls.ca.display()),
    )
    .expect("write");
    build(
        &env,
        &[("GIT_CONFIG_GLOBAL", &gitconfig)],
        &["-t", "git:head", &format!("{url}#main:app")],
    )
    .assert_ok();
    assert_eq!(
        read(image_rootfs(&env.root, "git:head").path(), "app/main.txt"),
        "version two\n"
    );
    assert_eq!(context_temps(&env.root), Vec::<String>::new());
    drop(server);
}

#[test]
fn git_context_over_https_with_an_untrusted_certificate_fails_and_stores_nothing() {
    let env = TestEnv::new();
    let (server, _tls) = served_repository(&env);
    let url = server.url("repo.git");

    // A CA that did not sign the server's certificate is no better than none.
    let other_dir = env.scratch.join("other");
    fs::create_dir_all(&other_dir).expect("mkdir");
    let other = Tls::create(&other_dir, "127.0.0.1");
    for trust in [vec![], vec![("GIT_SSL_CAINFO", other.ca.as_path())]] {
        let out = build(
            &env,
            &trust,
            &["-t", "git:untrusted", &format!("{url}#v1:app")],
        );
        assert_ne!(out.status, Some(0), "should fail:\n{out}");
        assert!(out.stderr.contains(&url), "names the URL:\n{out}");
        assert!(
            out.stderr.to_ascii_lowercase().contains("certificate"),
            "says why:\n{out}"
        );
        assert!(
            out.stderr.contains("GIT_SSL_CAINFO"),
            "says how to trust the CA:\n{out}"
        );
    }
    assert_eq!(tags(&env), Vec::<String>::new());
    assert_eq!(context_temps(&env.root), Vec::<String>::new());
    drop(server);
}
