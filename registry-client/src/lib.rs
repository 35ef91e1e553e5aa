//! strata's registry client: the distribution API (pull, push, login) over reqwest, with
//! oci-client's manifest types and error codes.
//!
//! ```text
//! lib.rs       Client (one per command): options, TLS clients, one Session per registry
//! session.rs   base URL (https / insecure http), auth header, 401 → token, retries
//! auth.rs      config.json, credential helpers, challenges, token fetch, login/logout
//! retry.rs     which failures are retried and how long to wait
//! limits.rs    bounds on what a registry may send (manifest size, blob size)
//! transfer.rs  one blob: download into ingest with Range resume; upload (HEAD, mount,
//!              monolithic or chunked, restart/resume)
//! pull.rs      manifest / index → platform → blobs in parallel → tag
//! push.rs      blobs in parallel → manifest; `push_manifest` for builder/cache pushes
//! copy.rs      registry → registry without the store: HEAD, mount, or GET streamed into
//!              PUT; child manifests, then the top one, byte for byte
//! platform.rs  os/arch/variant parsing and index entry choice
//! progress.rs  indicatif bars on a TTY, docker's plain lines otherwise
//! ```
//!
//! Sync callers (the binary, the builder's `FROM` of an image not in the store) use the
//! `*_blocking` functions, which run one tokio runtime for the call.

pub mod artifact;
pub mod auth;
pub mod copy;
pub mod error;
pub mod limits;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod retry;
pub mod session;
pub mod tags;
pub mod transfer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use artifact::RemoteManifest;
pub use auth::{Credential, DockerConfig};
pub use copy::{CopyOptions, CopyReport};
pub use error::{ErrorKind, RegistryError, Result};
pub use platform::Platform;
pub use progress::{Progress, ProgressMode};
pub use pull::{PullOptions, PullReport};
pub use push::{push_manifest, PushOptions, PushReport};
pub use retry::RetryPolicy;
pub use transfer::{BlobOutcome, UploadMode};

use session::Session;
use store::{Reference, Store};

/// Everything a [`Client`] needs to know before its first request.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` entries reachable over plain http or with an unverified certificate
    /// (docker's `--insecure-registry`). `localhost`, `127.0.0.1` and `::1` always are.
    pub insecure_registries: Vec<String>,
    /// Extra PEM CA files to trust (`--cacert`), on top of the system roots and
    /// `$SSL_CERT_FILE`.
    pub ca_certs: Vec<PathBuf>,
    /// Where config.json lives; None means `$DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// Blob transfers in flight at once (docs/design.md §4.6: 4–8).
    pub max_concurrent_transfers: usize,
    pub retry: RetryPolicy,
    pub progress: ProgressMode,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            ca_certs: Vec::new(),
            docker_config_dir: None,
            max_concurrent_transfers: 6,
            retry: RetryPolicy::default(),
            progress: ProgressMode::Auto,
        }
    }
}

/// A registry client for one command. Cheap to share by reference; holds one
/// [`Session`] (auth state, tokens) per registry host it has talked to.
pub struct Client {
    opts: ClientOptions,
    /// Extra roots for `secure` (`extra_roots`).
    roots: Vec<reqwest::Certificate>,
    /// Made when a session first needs it: loading the system's roots costs ≈ 6 ms of
    /// CPU (rustls-native-certs parses every file in /etc/ssl/certs), which a command
    /// that talks only to insecure registries (loopback, say) need not pay.
    secure: OnceLock<reqwest::Client>,
    /// Verifies nothing and loads no roots: cheap to make up front.
    insecure: reqwest::Client,
    config: Option<DockerConfig>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    progress: Progress,
}

/// The extra roots to trust: `--cacert` files, then `SSL_CERT_FILE`. Read when the
/// client is made, so a bad file fails the command before any request.
fn extra_roots(opts: &ClientOptions) -> Result<Vec<reqwest::Certificate>> {
    let mut files = opts.ca_certs.clone();
    if let Some(f) = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(f));
    }
    let mut roots = Vec::new();
    for path in files {
        let pem = std::fs::read(&path).map_err(|e| RegistryError::CaCert {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::CaCert {
                path: path.clone(),
                reason: format!("not a PEM certificate bundle: {e}"),
            })?;
        if certs.is_empty() {
            return Err(RegistryError::CaCert {
                path,
                reason: "no PEM certificate in the file".into(),
            });
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// An HTTP client that verifies certificates against the system's roots plus `roots`,
/// or (`accept_invalid`) verifies none and loads no roots.
fn http_client(roots: &[reqwest::Certificate], accept_invalid: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .danger_accept_invalid_certs(accept_invalid);
    if !accept_invalid {
        for c in roots {
            b = b.add_root_certificate(c.clone());
        }
    }
    b.build().map_err(|e| RegistryError::CaCert {
        path: PathBuf::from("(TLS setup)"),
        reason: retry::chain_text(&e),
    })
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client> {
        let roots = extra_roots(&opts)?;
        let insecure = http_client(&roots, true)?;
        let config = opts
            .docker_config_dir
            .clone()
            .or_else(auth::default_config_dir)
            .map(DockerConfig::new);
        let progress = Progress::new(opts.progress);
        Ok(Client {
            opts,
            roots,
            secure: OnceLock::new(),
            insecure,
            config,
            sessions: Mutex::new(HashMap::new()),
            progress,
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// docker's rule: listed registries, plus loopback by name or address.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = registry
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(registry)
            .trim_start_matches('[')
            .trim_end_matches(']');
        matches!(host, "localhost" | "127.0.0.1" | "::1")
            || self
                .opts
                .insecure_registries
                .iter()
                .any(|r| auth::normalize_server(r) == registry || auth::normalize_server(r) == host)
    }

    /// The docker config this client reads credentials from (and login writes).
    pub fn docker_config(&self) -> Result<&DockerConfig> {
        self.config
            .as_ref()
            .ok_or_else(|| RegistryError::Credentials {
                server: "(any)".into(),
                reason: "cannot find docker's config directory: set $DOCKER_CONFIG or $HOME".into(),
            })
    }

    pub(crate) fn session(&self, registry: &str) -> Result<Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("session map lock poisoned");
        if let Some(s) = sessions.get(registry) {
            return Ok(s.clone());
        }
        let credential = match &self.config {
            Some(c) => c.credential(registry)?,
            None => None,
        };
        let s = Arc::new(self.new_session(registry, credential)?);
        sessions.insert(registry.to_string(), s.clone());
        Ok(s)
    }

    fn new_session(&self, registry: &str, credential: Option<Credential>) -> Result<Session> {
        let insecure = self.is_insecure(registry);
        let http = if insecure {
            self.insecure.clone()
        } else {
            self.secure_client()?
        };
        Ok(Session::new(
            registry,
            http,
            insecure,
            credential,
            self.opts.retry.clone(),
        ))
    }

    /// The verifying client, made on first use.
    fn secure_client(&self) -> Result<reqwest::Client> {
        if let Some(c) = self.secure.get() {
            return Ok(c.clone());
        }
        let c = http_client(&self.roots, false)?;
        Ok(self.secure.get_or_init(|| c).clone())
    }

    /// Pulls `reference` into `store` and tags it (see pull.rs).
    pub async fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        opts: &PullOptions,
    ) -> Result<PullReport> {
        pull::pull(self, store, reference, opts).await
    }

    /// Pushes the local image `reference` (see push.rs).
    pub async fn push(
        &self,
        store: &Store,
        reference: &Reference,
        opts: &PushOptions,
    ) -> Result<PushReport> {
        push::push(self, store, reference, opts).await
    }

    /// Checks `username`/`password` against `registry` (a host, or docker.io) the way
    /// `docker login` does, and stores them in config.json (or its credential helper).
    pub async fn login(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let registry = canonical_registry(registry);
        let credential = Credential::UsernamePassword {
            username: username.to_string(),
            password: password.to_string(),
        };
        let session = self.new_session(&registry, Some(credential))?;
        let base = session.base().await?.to_string();
        let req = session::Request::new(reqwest::Method::GET, format!("{base}/v2/"), &[]);
        let resp = session.send(&req).await?;
        session
            .check(&req, resp, &[reqwest::StatusCode::OK], "")
            .await
            .map_err(|e| match e {
                RegistryError::Status { status: 401, .. } | RegistryError::Denied { .. } => {
                    RegistryError::Unauthorized {
                        registry: registry.clone(),
                        detail: "incorrect username or password".into(),
                    }
                }
                other => other,
            })?;
        self.docker_config()?.store(&registry, username, password)?;
        self.sessions
            .lock()
            .expect("session map lock poisoned")
            .remove(&registry);
        Ok(())
    }

    /// Removes stored credentials for `registry`; false when there were none.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        self.docker_config()?.erase(&canonical_registry(registry))
    }
}

/// `https://index.docker.io/v1/`, `index.docker.io`, `docker.io` → `docker.io`;
/// `http://host:5000/` → `host:5000`.
pub fn canonical_registry(s: &str) -> String {
    let host = auth::normalize_server(s);
    match host.as_str() {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// A runtime for synchronous callers that make several calls on one client.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}

/// [`Client::pull`] for synchronous callers.
pub fn pull_blocking(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<PullReport> {
    runtime()?.block_on(client.pull(store, reference, opts))
}

/// [`Client::push`] for synchronous callers.
pub fn push_blocking(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PushOptions,
) -> Result<PushReport> {
    runtime()?.block_on(client.push(store, reference, opts))
}

/// [`Client::login`] for synchronous callers.
pub fn login_blocking(
    client: &Client,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<()> {
    runtime()?.block_on(client.login(registry, username, password))
}
