//! One registry host as seen by one command: its base URL (https, or http for an
//! insecure registry), its credential, the last auth challenge and the tokens fetched,
//! and [`Session::send`], which every request goes through.
//!
//! `send` owns the cross-cutting rules: it attaches Basic or Bearer auth, answers a 401
//! by reading the challenge and fetching a fresh token (an expired token is re-fetched
//! the same way), and retries 5xx/429 answers (honouring `Retry-After`) and connection
//! failures with backoff. Requests whose body the registry may have half-consumed (blob
//! uploads) ask for `retry_transport: false`; their caller restarts or resumes the upload.
//!
//! Why reqwest here rather than `oci_client::Client`: oci-client retries nothing, its token
//! cache cannot be invalidated on a mid-transfer 401, it has no way to hand us a 202 upload
//! session from a mount, and its blob pulls write into an `AsyncWrite` we would have to
//! adapt around our synchronous, hashing `BlobWriter` while also resuming by Range. We keep
//! oci-client's manifest types and error codes, and speak the few distribution endpoints
//! ourselves over the same reqwest it uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use oci_client::errors::OciEnvelope;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use crate::auth::{self, Challenge, Credential, Token};
use crate::error::{RegistryError, Result};
use crate::limits;
use crate::retry::{self, RetryPolicy};

/// Called with the number of bytes just sent or received.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A request body that can be produced again for a retry.
#[derive(Clone)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of `path` from `offset`, streamed (never read whole into memory).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        progress: Option<ProgressFn>,
    },
    /// A body made while it is sent (a layer compressed on the way), without a length
    /// (chunked transfer). It can be sent once: a request that would send it again (a
    /// 401 answered with a new token, a retry) fails with `RegistryError::BodyResent`.
    Stream(Arc<Mutex<Option<reqwest::Body>>>),
}

/// One request to send through [`Session::send`].
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Body,
    /// Token scopes the request needs, e.g. `repository:a/b:pull`.
    pub scopes: Vec<String>,
    /// Retry when the connection fails mid-request. False for uploads whose partial body
    /// may have reached the registry: their caller restarts the upload instead.
    pub retry_transport: bool,
}

impl Request {
    pub fn new(method: Method, url: impl Into<String>, scopes: &[String]) -> Request {
        Request {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes: scopes.to_vec(),
            retry_transport: true,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, Token>,
}

pub struct Session {
    /// The registry as written in references (`docker.io`, `localhost:5000`).
    pub registry: String,
    api_host: String,
    insecure: bool,
    http: reqwest::Client,
    credential: Option<Credential>,
    base: tokio::sync::OnceCell<String>,
    auth: Mutex<AuthState>,
    pub retry: RetryPolicy,
}

impl Session {
    pub fn new(
        registry: &str,
        http: reqwest::Client,
        insecure: bool,
        credential: Option<Credential>,
        retry: RetryPolicy,
    ) -> Session {
        let api_host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
            other => other.to_string(),
        };
        Session {
            registry: registry.to_string(),
            api_host,
            insecure,
            http,
            credential,
            base: tokio::sync::OnceCell::new(),
            auth: Mutex::new(AuthState::default()),
            retry,
        }
    }

    /// `https://host` (or `http://host` for an insecure registry that speaks no TLS),
    /// found by pinging `/v2/` once; the ping also learns the auth challenge.
    pub async fn base(&self) -> Result<&str> {
        self.base
            .get_or_try_init(|| self.ping())
            .await
            .map(String::as_str)
    }

    async fn ping(&self) -> Result<String> {
        let schemes: &[&str] = if self.insecure {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut last = String::new();
            let mut wait = None;
            // Set when every scheme failed to connect at all: the last URL and why.
            let mut unreachable = None;
            let mut is_reachable = false;
            let mut asked = self.ask_both(schemes).await;
            for scheme in schemes {
                if asked.is_http_only && *scheme == "https" {
                    continue;
                }
                let url = format!("{scheme}://{}/v2/", self.api_host);
                let early = match *scheme {
                    "https" => match asked.https.take() {
                        Some(answer) => Some(answer.await),
                        None => None,
                    },
                    _ => asked.http.take(),
                };
                let answer = match early {
                    Some(answer) => answer,
                    None => self.http.get(&url).send().await,
                };
                match answer {
                    Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                        self.learn_challenge(resp.headers());
                        return Ok(format!("{scheme}://{}", self.api_host));
                    }
                    Ok(resp) if retry::is_retryable_status(resp.status()) => {
                        wait = retry::retry_after(resp.headers());
                        last = format!("GET {url}: status {}", resp.status());
                    }
                    Ok(resp) if resp.status() == StatusCode::BAD_REQUEST && *scheme == "http" => {
                        // Plain http to a TLS port: Go answers 400 "HTTPS server".
                        last = format!("GET {url}: status 400 (the registry speaks https)");
                    }
                    Ok(_) => return Ok(format!("{scheme}://{}", self.api_host)),
                    Err(e) if retry::is_tls_error(&e) && !self.insecure => {
                        return Err(RegistryError::Tls {
                            method: "GET".into(),
                            url,
                            host: self.registry.clone(),
                            detail: retry::chain_text(&e),
                        })
                    }
                    Err(e) => {
                        match retry::unreachable_cause(&e) {
                            Some(cause) => unreachable = Some((cause, url.clone())),
                            None => is_reachable = true,
                        }
                        last = format!("GET {url}: {}", retry::chain_text(&e));
                        continue;
                    }
                }
                is_reachable = true;
            }
            if let (false, Some((cause, url))) = (is_reachable, unreachable) {
                if attempt >= self.retry.max_attempts.min(retry::UNREACHABLE_ATTEMPTS) {
                    return Err(RegistryError::Unreachable {
                        method: "GET".into(),
                        host: dial_host(&url),
                        url,
                        cause,
                        attempts: attempt,
                    });
                }
            }
            if attempt >= self.retry.max_attempts {
                return Err(RegistryError::RetriesExhausted {
                    method: "GET".into(),
                    url: format!("{}/v2/", self.api_host),
                    attempts: attempt,
                    last,
                });
            }
            tokio::time::sleep(self.retry.delay(attempt, wait)).await;
        }
    }

    /// For an insecure registry, asks `https` and `http` at once: a port whose plain
    /// `http` answer is a registry's (anything but Go's 400 to plain http on a TLS port,
    /// or a status worth a retry) speaks no TLS, so its `https` attempt would fail
    /// anyway, and `ping` need not wait for it (nor for seeding the TLS random generator
    /// it starts with, ≈ 30 ms of CPU) before the first request. Every other case keeps
    /// docker's order: the `https` answer first, then the `http` one.
    async fn ask_both(&self, schemes: &[&str]) -> Asked {
        if schemes != ["https", "http"] {
            return Asked::default();
        }
        let mut https = tokio::spawn(
            self.http
                .get(format!("https://{}/v2/", self.api_host))
                .send(),
        );
        let http = self
            .http
            .get(format!("http://{}/v2/", self.api_host))
            .send();
        tokio::pin!(http);
        let http = tokio::select! {
            biased;
            answer = &mut https => {
                // `https` answered first: docker's order, `http` is asked again if needed.
                let answer = joined(answer);
                return Asked {
                    https: Some(Box::pin(std::future::ready(answer))),
                    ..Asked::default()
                };
            }
            answer = &mut http => answer,
        };
        let speaks_http = matches!(&http, Ok(resp)
            if resp.status() != StatusCode::BAD_REQUEST
                && !retry::is_retryable_status(resp.status()));
        if speaks_http {
            https.abort();
            return Asked {
                https: None,
                http: Some(http),
                is_http_only: true,
            };
        }
        Asked {
            https: Some(Box::pin(async move { joined(https.await) })),
            http: Some(http),
            is_http_only: false,
        }
    }

    fn learn_challenge(&self, headers: &HeaderMap) {
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(auth::parse_challenge)
            .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
        if let Some(c) = challenge {
            let mut state = self.auth.lock().expect("auth state lock poisoned");
            state.challenge = Some(c);
        }
    }

    fn scope_key(scopes: &[String]) -> String {
        let mut s = scopes.to_vec();
        s.sort();
        s.join(" ")
    }

    async fn authorization(&self, scopes: &[String]) -> Result<Option<HeaderValue>> {
        let (challenge, cached) = {
            let state = self.auth.lock().expect("auth state lock poisoned");
            let cached = state
                .tokens
                .get(&Self::scope_key(scopes))
                .filter(|t| t.expires > Instant::now())
                .map(|t| t.value.clone());
            (state.challenge.clone(), cached)
        };
        let value = match challenge {
            None => return Ok(None),
            Some(Challenge::Basic) => match &self.credential {
                Some(Credential::UsernamePassword { username, password }) => {
                    use base64::Engine;
                    let raw = format!("{username}:{password}");
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    )
                }
                _ => return Ok(None),
            },
            Some(Challenge::Bearer { realm, service }) => match cached {
                Some(t) => format!("Bearer {t}"),
                None => {
                    let token = auth::fetch_token(
                        &self.http,
                        &realm,
                        service.as_deref(),
                        scopes,
                        self.credential.as_ref(),
                        &self.retry,
                    )
                    .await?;
                    let v = format!("Bearer {}", token.value);
                    let mut state = self.auth.lock().expect("auth state lock poisoned");
                    state.tokens.insert(Self::scope_key(scopes), token);
                    v
                }
            },
        };
        let mut hv = HeaderValue::from_str(&value).map_err(|_| RegistryError::Credentials {
            server: self.registry.clone(),
            reason: "credential contains characters not allowed in an HTTP header".into(),
        })?;
        hv.set_sensitive(true);
        Ok(Some(hv))
    }

    fn forget_token(&self, scopes: &[String]) {
        let mut state = self.auth.lock().expect("auth state lock poisoned");
        state.tokens.remove(&Self::scope_key(scopes));
    }

    /// Resolves a URL the registry returned (Location headers may be relative).
    pub async fn absolute(&self, location: &str) -> Result<String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Ok(location.to_string());
        }
        let base = self.base().await?;
        Ok(format!("{base}{location}"))
    }

    /// Sends `req`, with auth and retries (see the module doc). Returns the final answer,
    /// whatever its status; [`Session::check`] turns an unexpected one into an error.
    pub async fn send(&self, req: &Request) -> Result<Response> {
        self.base().await?;
        let mut attempt = 0;
        let mut auth_tries = 0;
        loop {
            attempt += 1;
            let auth = self.authorization(&req.scopes).await?;
            let mut rb = self
                .http
                .request(req.method.clone(), &req.url)
                .headers(req.headers.clone());
            if let Some(a) = auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            rb = match &req.body {
                Body::Empty => rb,
                Body::Bytes(b) => rb.body(b.clone()),
                Body::File {
                    path,
                    offset,
                    len,
                    progress,
                } => rb
                    .header(CONTENT_LENGTH, *len)
                    .body(file_body(path.clone(), *offset, *len, progress.clone()).await?),
                Body::Stream(body) => {
                    let once = body.lock().unwrap_or_else(|p| p.into_inner()).take();
                    match once {
                        Some(b) => rb.body(b),
                        None => {
                            return Err(RegistryError::BodyResent {
                                method: req.method.to_string(),
                                url: req.url.clone(),
                            })
                        }
                    }
                }
            };
            let result = rb.send().await;
            let unreachable = result
                .as_ref()
                .err()
                .and_then(|e| retry::unreachable_cause(e));
            let (wait, last) = match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    auth_tries += 1;
                    self.learn_challenge(resp.headers());
                    self.forget_token(&req.scopes);
                    if auth_tries > 2 || self.challenge_is_basic_without_credential() {
                        let detail = error_message(resp).await;
                        return Err(RegistryError::Unauthorized {
                            registry: self.registry.clone(),
                            detail,
                        });
                    }
                    attempt -= 1;
                    continue;
                }
                Ok(resp)
                    if retry::is_retryable_status(resp.status())
                        && attempt < self.retry.max_attempts =>
                {
                    (retry::retry_after(resp.headers()), String::new())
                }
                Ok(resp) => return Ok(resp),
                Err(e) if retry::is_tls_error(&e) => {
                    return Err(RegistryError::Tls {
                        method: req.method.to_string(),
                        url: req.url.clone(),
                        host: self.registry.clone(),
                        detail: retry::chain_text(&e),
                    })
                }
                Err(e)
                    if req.retry_transport
                        && retry::is_retryable_error(&e)
                        && attempt < self.retry.max_attempts
                        && !(unreachable.is_some() && attempt >= retry::UNREACHABLE_ATTEMPTS) =>
                {
                    (None, retry::chain_text(&e))
                }
                Err(_) if unreachable.is_some() && req.retry_transport => {
                    return Err(RegistryError::Unreachable {
                        method: req.method.to_string(),
                        url: req.url.clone(),
                        host: dial_host(&req.url),
                        cause: unreachable.expect("checked by the guard"),
                        attempts: attempt,
                    })
                }
                Err(e) if attempt >= self.retry.max_attempts => {
                    return Err(RegistryError::RetriesExhausted {
                        method: req.method.to_string(),
                        url: req.url.clone(),
                        attempts: attempt,
                        last: retry::chain_text(&e),
                    })
                }
                Err(source) => {
                    return Err(RegistryError::Transport {
                        method: req.method.to_string(),
                        url: req.url.clone(),
                        source,
                    })
                }
            };
            let _ = last;
            tokio::time::sleep(self.retry.delay(attempt, wait)).await;
        }
    }

    fn challenge_is_basic_without_credential(&self) -> bool {
        let state = self.auth.lock().expect("auth state lock poisoned");
        matches!(state.challenge, Some(Challenge::Basic)) && self.credential.is_none()
    }

    /// Turns an answer whose status is not one of `ok` into a typed error.
    pub async fn check(
        &self,
        req: &Request,
        resp: Response,
        ok: &[StatusCode],
        repository: &str,
    ) -> Result<Response> {
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status();
        let envelope = read_envelope(resp).await;
        let first = envelope.and_then(|e| e.errors.into_iter().next());
        if status == StatusCode::FORBIDDEN
            || matches!(
                first.as_ref().map(|e| &e.code),
                Some(oci_client::errors::OciErrorCode::Denied)
            )
        {
            return Err(RegistryError::Denied {
                registry: self.registry.clone(),
                repository: repository.to_string(),
            });
        }
        Err(RegistryError::Status {
            method: req.method.to_string(),
            url: req.url.clone(),
            status: status.as_u16(),
            message: first
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            code: first.map(|e| e.code),
        })
    }
}

async fn read_envelope(resp: Response) -> Option<OciEnvelope> {
    let bytes = limits::read_bounded(resp, limits::MAX_SMALL_BODY)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn error_message(resp: Response) -> String {
    let status = resp.status();
    match read_envelope(resp).await {
        Some(env) if !env.errors.is_empty() => env
            .errors
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
        _ => format!("registry answered {status}"),
    }
}

/// Streams `len` bytes of a file from `offset` as a request body, in 256 KiB reads.
async fn file_body(
    path: PathBuf,
    offset: u64,
    len: u64,
    progress: Option<ProgressFn>,
) -> Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let io_err = |source| RegistryError::Config {
        action: "reading",
        path: path.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(io_err)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io_err)?;
    let stream = futures_util::stream::unfold(
        (file, len, progress),
        |(mut file, left, progress)| async move {
            if left == 0 {
                return None;
            }
            let want = left.min(256 * 1024) as usize;
            let mut buf = vec![0u8; want];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob file shorter than its recorded size",
                    )),
                    (file, 0, progress),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    if let Some(p) = &progress {
                        p(n as u64);
                    }
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64, progress)))
                }
                Err(e) => Some((Err(e), (file, 0, progress))),
            }
        },
    );
    Ok(reqwest::Body::wrap_stream(stream))
}

/// What `Session::ask_both` asked already: the `https` answer (or the attempt still
/// under way) and the `http` answer; `is_http_only` when the registry speaks plain
/// `http`, so `https` is not to be asked at all.
#[derive(Default)]
struct Asked {
    https: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>>,
    http: Option<Answer>,
    is_http_only: bool,
}

type Answer = reqwest::Result<Response>;

/// The answer of a spawned request; a panic in it is resumed here.
fn joined(task: std::result::Result<Answer, tokio::task::JoinError>) -> Answer {
    task.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// `host:port` of `url` as a dialer sees it (the scheme's port when the URL has none).
fn dial_host(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or_default(),
            u.port_or_known_default().unwrap_or(443)
        ),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::retry::UNREACHABLE_ATTEMPTS;
    use crate::{Client, ClientOptions, ProgressMode, RegistryError};

    /// A closed port is not retried like a registry that answers: a few quick attempts,
    /// then docker's wording.
    #[test]
    fn closed_port_fails_after_a_short_retry_with_dockers_wording() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let client = Client::new(ClientOptions {
            progress: ProgressMode::Quiet,
            ..ClientOptions::default()
        })
        .expect("client");
        let registry = format!("127.0.0.1:{port}");
        let err = crate::runtime()
            .expect("runtime")
            .block_on(async {
                let session = client.session(&registry)?;
                session.base().await.map(str::to_string)
            })
            .expect_err("nothing listens there");
        match &err {
            RegistryError::Unreachable { attempts, .. } => {
                assert_eq!(*attempts, UNREACHABLE_ATTEMPTS, "{err}")
            }
            other => panic!("want Unreachable, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "Get \"http://{registry}/v2/\": dial tcp {registry}: connect: connection refused"
            )
        );
    }

    /// An insecure registry that answers plain `http` is used at once, without waiting
    /// for its `https` attempt: here a TLS ClientHello gets no answer at all (the
    /// connection is held open until the test ends), and `base` still returns `http`.
    #[test]
    fn an_http_registry_is_used_without_waiting_for_https() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let registry = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut first = [0u8; 1];
                if conn.read_exact(&mut first).is_err() {
                    continue;
                }
                if first[0] == 0x16 {
                    held.push(conn); // a TLS handshake: never answered
                    continue;
                }
                let mut rest = [0u8; 4096];
                let _ = conn.read(&mut rest);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
            }
        });
        let client = Client::new(ClientOptions {
            progress: ProgressMode::Quiet,
            ..ClientOptions::default()
        })
        .expect("client");
        let base = crate::runtime()
            .expect("runtime")
            .block_on(async {
                let session = client.session(&registry).expect("session");
                let base = session.base();
                tokio::time::timeout(std::time::Duration::from_secs(20), base)
                    .await
                    .map(|b| b.map(str::to_string))
            })
            .expect("no wait for the https answer")
            .expect("the http answer");
        assert_eq!(base, format!("http://{registry}"));
    }
}
