//! [`Registry`]: the registry client of one command. A build makes one, and every `FROM`
//! pull, cache import, cache layer download, cache export and `--push` of that build goes
//! through it, so they share auth tokens, connections and the `-q` setting.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use registry_client::{
    Client, ClientOptions, CopyOptions, CopyReport, Platform, ProgressMode, PullOptions,
    PushOptions,
};
use store::{Digest, Reference, Store};

use crate::error::{EngineError, Result};

/// The global flags a registry client is made from.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `--insecure-registry` entries (`host:port`).
    pub insecure_registries: Vec<String>,
    /// `--cacert`: extra PEM CA files.
    pub ca_certs: Vec<PathBuf>,
    /// `-q`: no progress bars or lines.
    pub quiet: bool,
}

/// One registry client and the tokio runtime it runs on, both made on first use: a build
/// whose images are all local never sets up TLS or starts threads, and a bad `--cacert`
/// only fails the commands that reach a registry.
pub struct Registry {
    opts: RegistryOptions,
    client: OnceLock<Arc<Client>>,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl Registry {
    pub fn new(opts: RegistryOptions) -> Registry {
        Registry {
            opts,
            client: OnceLock::new(),
            runtime: OnceLock::new(),
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.opts.quiet
    }

    /// The client, made on the first call.
    pub fn client(&self) -> Result<&Arc<Client>> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let opts = ClientOptions {
            insecure_registries: self.opts.insecure_registries.clone(),
            ca_certs: self.opts.ca_certs.clone(),
            progress: if self.opts.quiet {
                ProgressMode::Quiet
            } else {
                ProgressMode::Auto
            },
            ..ClientOptions::default()
        };
        let client = Client::new(opts).map_err(|e| EngineError::Client(Box::new(e)))?;
        Ok(self.client.get_or_init(|| Arc::new(client)))
    }

    /// The runtime every registry call of this command runs on, started on the first call.
    pub fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = registry_client::runtime().map_err(|e| EngineError::Runtime(Box::new(e)))?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    /// Pulls `reference` (the host's platform unless `platform` says otherwise) into
    /// `store`, tags it, and returns its manifest digest.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platform: Option<Platform>,
    ) -> Result<Digest> {
        let client = self.client()?;
        let report = self
            .runtime()?
            .block_on(client.pull(store, reference, &PullOptions { platform }))
            .map_err(|source| EngineError::Pull {
                reference: reference.familiar(),
                source: Box::new(source),
            })?;
        Ok(report.manifest)
    }

    /// The manifest (or index) `reference` names, as the registry holds it; `None` when
    /// the registry has no such manifest. Nothing is stored.
    pub fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<registry_client::RemoteManifest>> {
        let client = self.client()?;
        self.runtime()?
            .block_on(client.fetch_manifest(reference))
            .map_err(|source| EngineError::Pull {
                reference: reference.familiar(),
                source: Box::new(source),
            })
    }

    /// Every tag of `reference`'s repository in the registry (`pull --all-tags`).
    pub fn list_tags(&self, reference: &Reference) -> Result<Vec<String>> {
        let client = self.client()?;
        self.runtime()?
            .block_on(client.list_tags(reference))
            .map_err(|source| EngineError::Pull {
                reference: reference.familiar(),
                source: Box::new(source),
            })
    }

    /// Pushes the local image `reference` and returns the pushed manifest's digest. A
    /// multi-platform image goes as buildx pushes one: every platform's manifest by digest,
    /// then the index under the tag (`image_index::push_stored`).
    pub fn push(&self, store: &Store, reference: &Reference) -> Result<Digest> {
        if reference.digest.is_none() {
            match store.resolve(reference).and_then(|d| store.image(&d)) {
                Ok(image) if image.is_index() => {
                    return crate::image_index::push_stored(store, self, reference, &image)
                        .map(|d| d.digest);
                }
                _ => {}
            }
        }
        let client = self.client()?;
        let report = self
            .runtime()?
            .block_on(client.push(store, reference, &PushOptions::default()))
            .map_err(|source| EngineError::Push {
                reference: reference.familiar(),
                source: Box::new(source),
            })?;
        Ok(report.digest)
    }

    /// Copies the image `src` names to `dst`, registry to registry, storing nothing
    /// locally (`image copy`); `platform` picks one manifest out of an index.
    pub fn copy(
        &self,
        src: &Reference,
        dst: &Reference,
        platform: Option<Platform>,
    ) -> Result<CopyReport> {
        let client = self.client()?;
        self.runtime()?
            .block_on(client.copy(src, dst, &CopyOptions { platform }))
            .map_err(|source| EngineError::Copy {
                from: src.familiar(),
                to: dst.familiar(),
                source: Box::new(source),
            })
    }
}
