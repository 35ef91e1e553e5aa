//! Credentials and authentication, the way the docker CLI does them.
//!
//! * Where credentials come from: `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`):
//!   `credHelpers[server]`, then `auths[server]` (`auth` = base64 `user:password`, or
//!   `identitytoken`), then `credsStore`; helpers are the `docker-credential-NAME`
//!   programs, run through the `docker_credential` crate. Docker Hub's key is
//!   `https://index.docker.io/v1/`; every other registry's is its `host[:port]`.
//! * How they are used: the registry's `WWW-Authenticate` challenge picks the scheme.
//!   `Basic` sends the user and password on every request. `Bearer realm=…,service=…`
//!   (Docker Hub's flow) trades them, or nothing for anonymous pulls, for a token with
//!   the scopes the request needs (`repository:NAME:pull[,push]`).
//! * `login` / `logout` write the same file (mode 0600) or the configured helper.
//!
//! Secrets never reach `Debug`, `Display` or an error message.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use crate::error::{RegistryError, Result};
use crate::limits::{self, BodyError};
use crate::retry::{self, RetryPolicy};

/// Docker Hub's key in config.json and for credential helpers.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// A user's credential for one registry. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    UsernamePassword {
        username: String,
        password: String,
    },
    /// An OAuth refresh token (docker's `identitytoken`).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::UsernamePassword { username, .. } => {
                write!(f, "UsernamePassword({username:?}, <redacted>)")
            }
            Credential::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

/// The config.json key for a registry host as written in a reference (`docker.io`,
/// `localhost:5000`). Docker Hub's aliases all map to [`DOCKER_HUB_SERVER`].
pub fn server_key(registry: &str) -> String {
    let host = normalize_server(registry);
    if matches!(
        host.as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        DOCKER_HUB_SERVER.to_string()
    } else {
        host
    }
}

/// `https://host:port/v1/` → `host:port`, as docker's `ConvertToHostname`.
pub fn normalize_server(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.split('/').next().unwrap_or(s).to_string()
}

/// Where docker keeps config.json: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker"))
}

/// Reads and writes docker's config.json in one directory.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    dir: PathBuf,
}

impl DockerConfig {
    pub fn new(dir: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn read_json(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(|b| b.is_ascii_whitespace()) => Ok(Default::default()),
            Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(serde_json::Value::Object(m)) => Ok(m),
                _ => Err(RegistryError::Credentials {
                    server: path.display().to_string(),
                    reason: "config.json is not a JSON object; fix or remove it".into(),
                }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(source) => Err(RegistryError::Config {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// The helper configured for `key` (`credHelpers[key]`, else `credsStore`).
    fn helper_for(map: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
        let specific = map
            .get("credHelpers")
            .and_then(|h| h.get(key))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty());
        let store = map
            .get("credsStore")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty());
        specific.or(store).map(str::to_string)
    }

    /// The credential stored for `registry` (a reference's registry host), if any.
    pub fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        let key = server_key(registry);
        let map = self.read_json()?;
        // `auths` keys may carry a scheme or path (`https://host/v1/`): match normalised.
        let auth_key = map
            .get("auths")
            .and_then(|a| a.as_object())
            .and_then(|auths| {
                auths
                    .keys()
                    .find(|k| *k == &key || server_key(k) == key)
                    .cloned()
            });
        let has_helper = Self::helper_for(&map, &key).is_some();
        if auth_key.is_none() && !has_helper {
            return Ok(None);
        }
        let lookup_key = match (&auth_key, map.get("credHelpers").and_then(|h| h.get(&key))) {
            (_, Some(_)) => key.clone(),
            (Some(k), None) => k.clone(),
            (None, None) => key.clone(),
        };
        let text = serde_json::to_vec(&map).expect("a JSON map serializes");
        match docker_credential::get_credential_from_reader(&text[..], &lookup_key) {
            Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
                Ok(Some(Credential::UsernamePassword { username, password }))
            }
            Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
                Ok(Some(Credential::IdentityToken(t)))
            }
            Err(docker_credential::CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
            Err(docker_credential::CredentialRetrievalError::HelperFailure {
                helper,
                stderr,
                ..
            }) => {
                // A helper that has nothing for this server exits non-zero with
                // "credentials not found in native keychain": that is "no credential".
                if stderr.contains("not found") || stderr.is_empty() {
                    Ok(None)
                } else {
                    Err(RegistryError::Credentials {
                        server: key,
                        reason: format!("{helper} failed: {}", stderr.trim()),
                    })
                }
            }
            Err(e) => Err(RegistryError::Credentials {
                server: key,
                reason: e.to_string(),
            }),
        }
    }

    /// Stores a credential the way `docker login` does: through the configured helper,
    /// else base64 in `auths`. The file is written whole (temp + rename) with mode 0600.
    pub fn store(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let key = server_key(registry);
        let mut map = self.read_json()?;
        if let Some(helper) = Self::helper_for(&map, &key) {
            let payload =
                serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
            run_helper(&helper, "store", &payload.to_string(), &key)?;
            // Leave an empty entry so `docker`-style tools list the login.
            let auths = map.entry("auths").or_insert_with(|| serde_json::json!({}));
            if let Some(a) = auths.as_object_mut() {
                a.insert(key.clone(), serde_json::json!({}));
            }
        } else {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            let auths = map.entry("auths").or_insert_with(|| serde_json::json!({}));
            match auths.as_object_mut() {
                Some(a) => {
                    a.insert(key.clone(), serde_json::json!({ "auth": encoded }));
                }
                None => {
                    return Err(RegistryError::Credentials {
                        server: key,
                        reason: format!("\"auths\" in {} is not an object", self.path().display()),
                    })
                }
            }
        }
        self.write_json(&map)
    }

    /// Removes the credential for `registry`. Returns false when there was none.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let key = server_key(registry);
        let mut map = self.read_json()?;
        let mut found = false;
        if let Some(helper) = Self::helper_for(&map, &key) {
            found |= run_helper(&helper, "erase", &key, &key).is_ok();
        }
        if let Some(auths) = map.get_mut("auths").and_then(|a| a.as_object_mut()) {
            let keys: Vec<String> = auths
                .keys()
                .filter(|k| *k == &key || server_key(k) == key)
                .cloned()
                .collect();
            for k in keys {
                auths.remove(&k);
                found = true;
            }
        }
        if found {
            self.write_json(&map)?;
        }
        Ok(found)
    }

    fn write_json(&self, map: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Config {
                action,
                path,
                source,
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io("creating", &self.dir))?;
        let path = self.path();
        let tmp = self
            .dir
            .join(format!(".config.json.{}", std::process::id()));
        let mut text = serde_json::to_vec_pretty(map).expect("a JSON map serializes");
        text.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("writing", &tmp))?;
        f.write_all(&text).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("replacing", &path))?;
        Ok(())
    }
}

fn run_helper(helper: &str, verb: &str, input: &str, server: &str) -> Result<()> {
    let program = format!("docker-credential-{helper}");
    let err = |reason: String| RegistryError::Credentials {
        server: server.to_string(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            err(format!(
                "running {program}: {e}; install it or remove the helper from config.json"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| err(format!("writing to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("waiting for {program}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        // The helper's stdout may echo input; only stderr and stdout's first line are shown.
        let msg = String::from_utf8_lossy(&out.stdout);
        Err(err(format!(
            "{program} {verb} failed: {}",
            msg.lines().next().unwrap_or("").trim()
        )))
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_auth_params(rest);
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
        })
    } else {
        None
    }
}

fn parse_auth_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Fetches a bearer token for `scopes` from the challenge's realm (retrying like any
/// request). Anonymous when `credential` is None — that is how Docker Hub serves
/// public pulls.
pub async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    credential: Option<&Credential>,
    policy: &RetryPolicy,
) -> Result<Token> {
    let terr = |reason: String| RegistryError::Token {
        realm: realm.to_string(),
        reason,
    };
    let mut url = reqwest::Url::parse(realm).map_err(|e| terr(format!("bad realm URL: {e}")))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "strata".to_string()),
                    ("scope", scopes.join(" ")),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_string()));
                }
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                http.post(url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            other => {
                url.set_query(None);
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                    if other.is_some() {
                        q.append_pair(
                            "account",
                            match other {
                                Some(Credential::UsernamePassword { username, .. }) => username,
                                _ => "",
                            },
                        );
                    }
                }
                let mut r = http.get(url.clone());
                if let Some(Credential::UsernamePassword { username, password }) = other {
                    r = r.basic_auth(username, Some(password));
                }
                r
            }
        };
        let started = Instant::now();
        let outcome = req.send().await;
        let (wait_hint, last) = match outcome {
            Ok(resp) if resp.status().is_success() => {
                let body = limits::read_bounded(resp, limits::MAX_SMALL_BODY).await;
                match body {
                    Ok(b) => {
                        let t: TokenResponse = serde_json::from_slice(&b)
                            .map_err(|e| terr(format!("token response is not JSON: {e}")))?;
                        let value = if t.token.is_empty() {
                            t.access_token
                        } else {
                            t.token
                        };
                        if value.is_empty() {
                            return Err(terr("token response has no token".into()));
                        }
                        // Docker's default lifetime is 60 s; renew a little early.
                        let life = Duration::from_secs(t.expires_in.unwrap_or(60).max(10));
                        return Ok(Token {
                            value,
                            expires: started + life - Duration::from_secs(5),
                        });
                    }
                    Err(BodyError::TooLarge { limit }) => {
                        return Err(terr(format!(
                            "token response is larger than {}",
                            limits::show_size(limit)
                        )))
                    }
                    Err(BodyError::Transport(e)) => (None, retry::chain_text(&e)),
                }
            }
            Ok(resp) if resp.status() == 401 || resp.status() == 403 => {
                return Err(RegistryError::Unauthorized {
                    registry: service.unwrap_or(realm).to_string(),
                    detail: format!("token server {realm} answered {}", resp.status()),
                });
            }
            Ok(resp) if retry::is_retryable_status(resp.status()) => (
                retry::retry_after(resp.headers()),
                format!("status {}", resp.status()),
            ),
            Ok(resp) => return Err(terr(format!("answered {}", resp.status()))),
            Err(e) if retry::is_retryable_error(&e) => (None, retry::chain_text(&e)),
            Err(e) => return Err(terr(retry::chain_text(&e))),
        };
        if attempt >= policy.max_attempts {
            return Err(terr(format!(
                "still failing after {attempt} attempts: {last}"
            )));
        }
        tokio::time::sleep(policy.delay(attempt, wait_hint)).await;
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                }),
            ),
            (r#"Basic realm="basic-realm""#, Some(Challenge::Basic)),
            (
                r#"bearer realm="http://127.0.0.1:1/t""#,
                Some(Challenge::Bearer {
                    realm: "http://127.0.0.1:1/t".into(),
                    service: None,
                }),
            ),
            ("Negotiate abc", None),
            ("Bearer service=\"x\"", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_challenge(input), want, "input {input:?}");
        }
    }

    #[test]
    fn server_keys_like_docker() {
        let cases = [
            ("docker.io", DOCKER_HUB_SERVER),
            ("index.docker.io", DOCKER_HUB_SERVER),
            ("https://index.docker.io/v1/", DOCKER_HUB_SERVER),
            ("localhost:5000", "localhost:5000"),
            ("https://ghcr.io", "ghcr.io"),
            ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ];
        for (input, want) in cases {
            assert_eq!(server_key(input), want, "input {input:?}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credential::UsernamePassword {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(
            !format!("{:?}", Credential::IdentityToken("tok-secret".into())).contains("tok-secret")
        );
    }

    #[test]
    fn login_then_read_then_logout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = DockerConfig::new(dir.path().join("docker"));
        assert_eq!(cfg.credential("localhost:5000").expect("read"), None);
        cfg.store("localhost:5000", "alice", "s3cret:with:colons")
            .expect("store");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cfg.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            cfg.credential("localhost:5000").expect("read"),
            Some(Credential::UsernamePassword {
                username: "alice".into(),
                password: "s3cret:with:colons".into()
            })
        );
        assert!(cfg.erase("localhost:5000").expect("erase"));
        assert!(!cfg.erase("localhost:5000").expect("erase twice"));
        assert_eq!(cfg.credential("localhost:5000").expect("read"), None);
    }

    #[test]
    fn reads_auths_with_scheme_in_key_and_keeps_other_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}},"psFormat":"x"}}"#),
        )
        .expect("write");
        let cfg = DockerConfig::new(dir.path());
        assert_eq!(
            cfg.credential("docker.io").expect("read"),
            Some(Credential::UsernamePassword {
                username: "bob".into(),
                password: "pw".into()
            })
        );
        cfg.store("ghcr.io", "c", "d").expect("store");
        let text = std::fs::read_to_string(cfg.path()).expect("read back");
        assert!(text.contains("psFormat"), "{text}");
    }
}
