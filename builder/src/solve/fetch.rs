//! ADD of remote sources: HTTP(S) files and git repositories.
//!
//! ```text
//! ROOT/downloads/<sha256(url)>/data        the last body fetched from the URL
//! ROOT/downloads/<sha256(url)>/meta.json   {url, digest, etag, last_modified}
//! ROOT/downloads/<sha256(url)>/lock        shared-locked while a build uses the download
//! ```
//!
//! Downloads are build cache: `builder prune` removes those no build holds
//! ([`remove_unused`]) and `system df` counts them ([`usage`]).
//!
//! A URL with `--checksum` whose digest is already downloaded is used without asking the
//! server; otherwise the request carries If-None-Match / If-Modified-Since and a 304 reuses
//! the download. The body is streamed to a temp file while it is hashed, and `--checksum` is
//! checked before the file is renamed into place: a mismatch leaves nothing behind. The
//! step's cache key is the URL plus the content digest, as in BuildKit.
//!
//! Git: the system `git` binary, not a Rust library. It is on every CI image that builds
//! from git, handles every transport and credential helper users already configured
//! (https, ssh, file), works offline for local repositories, and a shallow fetch of one
//! commit is as fast as it gets; `git2` would add a C build of libgit2 (and OpenSSL for
//! https) and `gix` a large compile, for no gain here. The ref is resolved first with
//! `git ls-remote` (cheap): the commit id is the cache key, so an unchanged ref costs one
//! round trip and nothing is fetched.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use store::dir_lock::{
    allocated_bytes, allocated_bytes_inside, lock_dir, try_lock_dir, FlockOperation,
};

/// Where downloads are kept.
pub fn downloads_dir(root: &Path) -> PathBuf {
    store::Layout::new(root).downloads_dir()
}

/// A downloaded file ready to be copied. It stays on disk (a prune skips it) for as long
/// as this value lives.
pub struct Download {
    pub path: PathBuf,
    _lock: fs::File,
    /// The file name the URL gives (last path segment), for a destination ending in `/`.
    pub file_name: String,
    /// From Last-Modified, seconds since the epoch.
    pub mtime: Option<i64>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Meta {
    url: String,
    digest: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Whether an ADD source is a git repository rather than a plain URL (BuildKit's rules:
/// `git@…`, `git://…`, or a URL path ending in `.git`, with an optional `#ref[:dir]`).
pub fn is_git_url(src: &str) -> bool {
    let base = src.split('#').next().unwrap_or(src);
    src.starts_with("git@")
        || src.starts_with("git://")
        || src.starts_with("ssh://")
        || (base.contains("://") && base.trim_end_matches('/').ends_with(".git"))
}

pub fn is_url(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://")
}

/// An `ADD <url>` or git source that could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A file or directory of the download cache or the checkout could not be made.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("keeping the download of {url}: {source}")]
    Keep {
        url: String,
        #[source]
        source: io::Error,
    },
    /// The download's record (`meta.json`) could not be written.
    #[error("{0}")]
    MetaJson(#[source] serde_json::Error),
    #[error("{0}")]
    MetaWrite(#[source] store::StoreError),
    /// The request failed or broke off; `reason` is kept out of the error chain so the
    /// message stays one line.
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("downloading {url}: the server answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("checksum of {url} does not match: expected {expected}, got {got}")]
    Checksum {
        url: String,
        expected: String,
        got: String,
    },
    #[error("unsupported --checksum {0:?}: want sha256:<64 hex digits>")]
    ChecksumAlgorithm(String),
    #[error("invalid --checksum {0:?}: want sha256:<64 hex digits>")]
    ChecksumSyntax(String),
    #[error("invalid proxy build arg: {0}")]
    Proxy(String),
    #[error("setting up HTTP: {0}")]
    Http(String),
    #[error(
        "git source {0}: file:// and other local transports are not allowed \
         (a build may not read repositories on the host); serve the repository over \
         git://, ssh:// or http(s)://"
    )]
    GitTransport(String),
    #[error("git ref {want:?} not found in {url}")]
    GitRef { want: String, url: String },
    #[error("a git source (ADD or build context) needs `git` on PATH")]
    NoGit,
    #[error("running git: {0}")]
    RunGit(#[source] io::Error),
    /// A git command exited non-zero; `stderr` is what it printed.
    #[error("git {args}: {stderr}")]
    Git { args: String, stderr: String },
    /// git could not verify an https server's certificate. git (libcurl) trusts its own CA
    /// settings, not strata's `SSL_CERT_FILE` or `--cacert`, so the hint names git's.
    #[error(
        "git {args}: {stderr} (git verifies https servers with its own CAs: point \
         GIT_SSL_CAINFO, or http.sslCAInfo in your git config, at the CA's PEM file)"
    )]
    GitCertificate { args: String, stderr: String },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io {
        action,
        path,
        source,
    }
}

/// Download `url` (or reuse the download), checking `checksum` (`sha256:HEX`) before the
/// file is kept. `args` are the build args: HTTP_PROXY, HTTPS_PROXY, NO_PROXY (either case)
/// are used as docker does.
pub fn download(
    root: &Path,
    url: &str,
    checksum: Option<&str>,
    args: &BTreeMap<String, String>,
) -> Result<Download, FetchError> {
    let want = match checksum {
        None => None,
        Some(c) => Some(parse_checksum(c)?),
    };
    let dir = downloads_dir(root).join(hex::encode(Sha256::digest(url.as_bytes())));
    let lock = lock_dir(&dir, FlockOperation::LockShared).map_err(io_error("locking", &dir))?;
    let data = dir.join("data");
    let meta_path = dir.join("meta.json");
    let old: Option<Meta> = fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|_| data.exists());
    let file_name = url_file_name(url);
    if let (Some(want), Some(old)) = (&want, &old) {
        if &old.digest == want {
            return Ok(Download {
                path: data,
                _lock: lock,
                file_name,
                mtime: old.last_modified.as_deref().and_then(parse_http_date),
            });
        }
    }
    let client = client(args)?;
    let mut req = client.get(url);
    if let Some(old) = &old {
        if let Some(e) = &old.etag {
            req = req.header("If-None-Match", e);
        }
        if let Some(l) = &old.last_modified {
            req = req.header("If-Modified-Since", l);
        }
    }
    let mut resp = req.send().map_err(|e| FetchError::Download {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let status = resp.status();
    if status.as_u16() == 304 {
        if let Some(old) = old {
            check(&old.digest, want.as_deref(), url)?;
            return Ok(Download {
                path: data,
                _lock: lock,
                file_name,
                mtime: old.last_modified.as_deref().and_then(parse_http_date),
            });
        }
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status,
        });
    }
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header("etag");
    let last_modified = header("last-modified");
    fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
    let tmp = dir.join(store::layout::unique_name("data.tmp-"));
    let result = (|| -> Result<String, FetchError> {
        let mut out = fs::File::create(&tmp).map_err(io_error("creating", &tmp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = resp.read(&mut buf).map_err(|e| FetchError::Download {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(io_error("writing", &tmp))?;
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        check(&digest, want.as_deref(), url)?;
        Ok(digest)
    })();
    let digest = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, &data).map_err(|source| FetchError::Keep {
        url: url.to_string(),
        source,
    })?;
    let meta = Meta {
        url: url.to_string(),
        digest: digest.clone(),
        etag,
        last_modified: last_modified.clone(),
    };
    let bytes = serde_json::to_vec(&meta).map_err(FetchError::MetaJson)?;
    store::layout::write_atomic(&meta_path, &bytes).map_err(FetchError::MetaWrite)?;
    Ok(Download {
        path: data,
        _lock: lock,
        file_name,
        mtime: last_modified.as_deref().and_then(parse_http_date),
    })
}

/// Bytes the downloads take (allocated blocks), for `system df`'s Build Cache.
pub fn usage(root: &Path) -> io::Result<u64> {
    allocated_bytes_inside(&downloads_dir(root))
}

/// Removes every download no running build holds (`builder prune`); returns the bytes
/// freed. The next `ADD` of such a URL downloads it again.
pub fn remove_unused(root: &Path) -> io::Result<u64> {
    let Ok(entries) = fs::read_dir(downloads_dir(root)) else {
        return Ok(0);
    };
    let mut freed = 0;
    for entry in entries {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        let Some(_lock) = try_lock_dir(&dir, FlockOperation::NonBlockingLockExclusive)? else {
            continue; // a build is using it
        };
        let size = allocated_bytes(&dir)?;
        fs::remove_dir_all(&dir)?;
        freed += size;
    }
    Ok(freed)
}

fn check(got: &str, want: Option<&str>, url: &str) -> Result<(), FetchError> {
    match want {
        Some(w) if w != got => Err(FetchError::Checksum {
            url: url.to_string(),
            expected: w.to_string(),
            got: got.to_string(),
        }),
        _ => Ok(()),
    }
}

fn parse_checksum(c: &str) -> Result<String, FetchError> {
    let hexpart = c
        .strip_prefix("sha256:")
        .ok_or_else(|| FetchError::ChecksumAlgorithm(c.to_string()))?;
    if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::ChecksumSyntax(c.to_string()));
    }
    Ok(format!("sha256:{}", hexpart.to_ascii_lowercase()))
}

fn client(args: &BTreeMap<String, String>) -> Result<reqwest::blocking::Client, FetchError> {
    let arg = |k: &str| {
        args.get(k)
            .or_else(|| args.get(&k.to_ascii_lowercase()))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let mut b = reqwest::blocking::Client::builder().user_agent("strata");
    let (http, https, all, no) = (
        arg("HTTP_PROXY"),
        arg("HTTPS_PROXY"),
        arg("ALL_PROXY"),
        arg("NO_PROXY"),
    );
    if http.is_some() || https.is_some() || all.is_some() {
        b = b.no_proxy();
        let no = no.as_deref().and_then(reqwest::NoProxy::from_string);
        let mut add = |p: reqwest::Result<reqwest::Proxy>| -> Result<(), FetchError> {
            let p = p.map_err(|e| FetchError::Proxy(e.to_string()))?;
            b = std::mem::take(&mut b).proxy(p.no_proxy(no.clone()));
            Ok(())
        };
        if let Some(p) = http {
            add(reqwest::Proxy::http(p))?;
        }
        if let Some(p) = https {
            add(reqwest::Proxy::https(p))?;
        }
        if let Some(p) = all {
            add(reqwest::Proxy::all(p))?;
        }
    }
    b.build().map_err(|e| FetchError::Http(e.to_string()))
}

fn url_file_name(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = no_query.split_once("://").map_or(no_query, |(_, rest)| {
        rest.split_once('/').map_or("", |x| x.1)
    });
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "index.html".to_string(),
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.timestamp())
}

/// A checked-out git tree ready to be copied; removed on drop.
pub struct Checkout {
    pub dir: PathBuf,
    /// The directory inside `dir` to copy (`#ref:subdir`), `""` for the whole tree.
    pub subdir: String,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Split `URL#REF[:SUBDIR]`.
fn split_git(src: &str) -> (String, Option<String>, String) {
    match src.split_once('#') {
        None => (src.to_string(), None, String::new()),
        Some((url, frag)) => {
            let (r, sub) = frag.split_once(':').unwrap_or((frag, ""));
            let r = (!r.is_empty()).then(|| r.to_string());
            (url.to_string(), r, sub.trim_matches('/').to_string())
        }
    }
}

/// The transports a git source may use (`GIT_ALLOW_PROTOCOL`, which covers redirects and
/// submodules too): never `file` or `ext`, which would read the host's repositories or run
/// commands on it.
const GIT_PROTOCOLS: &str = "git:http:https:ssh";

/// Refuse a git source that names a repository on the host (`file://…`), as BuildKit's git
/// source does: a Dockerfile may not read what is outside its context.
fn check_git_transport(url: &str) -> Result<(), FetchError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("git" | "http" | "https" | "ssh") => Ok(()),
        None if url.starts_with("git@") => Ok(()),
        _ => Err(FetchError::GitTransport(url.to_string())),
    }
}

/// The commit `src`'s ref names, without fetching (the cache key of the ADD).
pub fn git_resolve(src: &str) -> Result<String, FetchError> {
    let (url, r, _) = split_git(src);
    check_git_transport(&url)?;
    let want = r.unwrap_or_else(|| "HEAD".to_string());
    if want.len() == 40 && want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(want.to_ascii_lowercase());
    }
    let out = git(None, &["ls-remote", "--", &url, &want])?;
    // Prefer a tag's peeled commit (`refs/tags/v1^{}`), then an exact ref, then any match.
    let lines: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('\t')).collect();
    let pick = lines
        .iter()
        .find(|(_, n)| n.ends_with("^{}"))
        .or_else(|| {
            lines.iter().find(|(_, n)| {
                *n == want
                    || *n == format!("refs/heads/{want}")
                    || *n == format!("refs/tags/{want}")
            })
        })
        .or(lines.first());
    match pick {
        Some((sha, _)) => Ok(sha.to_string()),
        None => Err(FetchError::GitRef { want, url }),
    }
}

/// Fetch `commit` of `src` into a fresh directory under `scratch_parent`.
pub fn git_checkout(
    src: &str,
    commit: &str,
    keep_git_dir: bool,
    scratch_parent: &Path,
) -> Result<Checkout, FetchError> {
    let (url, _, subdir) = split_git(src);
    check_git_transport(&url)?;
    let dir = scratch_parent.join(store::layout::unique_name("git-"));
    fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
    let checkout = Checkout {
        dir: dir.clone(),
        subdir,
    };
    git(Some(&dir), &["init", "-q"])?;
    git(Some(&dir), &["remote", "add", "origin", &url])?;
    // A shallow fetch of the one commit; dumb HTTP servers cannot, so fall back to a full one.
    if git(Some(&dir), &["fetch", "-q", "--depth=1", "origin", commit]).is_err() {
        git(Some(&dir), &["fetch", "-q", "--tags", "origin"])?;
    }
    git(Some(&dir), &["checkout", "-q", "--detach", commit])?;
    if !keep_git_dir {
        fs::remove_dir_all(dir.join(".git")).map_err(io_error("removing", Path::new(".git")))?;
    }
    Ok(checkout)
}

fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, FetchError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    // Never prompt for credentials in a build; fail instead.
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_ALLOW_PROTOCOL", GIT_PROTOCOLS)
        .args(["-c", "advice.detachedHead=false"])
        .args(args);
    let out = cmd.output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FetchError::NoGit,
        _ => FetchError::RunGit(e),
    })?;
    if !out.status.success() {
        let (args, stderr) = (
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        );
        // libcurl's words for a failed verification, with OpenSSL ("SSL certificate
        // problem: …") or GnuTLS ("server certificate verification failed").
        if stderr.contains("SSL certificate problem")
            || stderr.contains("certificate verification failed")
        {
            return Err(FetchError::GitCertificate { args, stderr });
        }
        return Err(FetchError::Git { args, stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_removes_downloads_no_build_holds_and_counts_what_it_frees() {
        let root = tempfile::tempdir().unwrap();
        let dir = downloads_dir(root.path());
        for name in ["held", "free"] {
            fs::create_dir_all(dir.join(name)).unwrap();
            fs::write(dir.join(name).join("data"), vec![7u8; 64 * 1024]).unwrap();
        }
        let before = usage(root.path()).unwrap();
        assert!(before >= 2 * 64 * 1024, "{before}");
        let held = lock_dir(&dir.join("held"), FlockOperation::LockShared).unwrap();
        let freed = remove_unused(root.path()).unwrap();
        assert!(
            dir.join("held").join("data").exists(),
            "a held download stays"
        );
        assert!(!dir.join("free").exists(), "an unused download goes");
        assert_eq!(usage(root.path()).unwrap(), before - freed);
        drop(held);
        remove_unused(root.path()).unwrap();
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "once released it goes too"
        );
    }

    #[test]
    fn url_kinds() {
        assert!(is_git_url("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git_url("git@github.com:moby/buildkit.git"));
        assert!(!is_git_url("https://example.com/file.tar.gz"));
        assert_eq!(url_file_name("https://h/a/b.txt?x=1"), "b.txt");
        assert_eq!(url_file_name("https://h/"), "index.html");
        assert_eq!(
            split_git("https://h/r.git#v1:sub/dir"),
            (
                "https://h/r.git".into(),
                Some("v1".into()),
                "sub/dir".into()
            )
        );
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum("md5:abc").is_err());
    }
}
