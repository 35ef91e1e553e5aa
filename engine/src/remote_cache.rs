//! [`RegistryCache`]: the registry side of the builder's `remote_cache` (which knows the
//! records and the manifest format, and no registry). Importing reads a manifest and its
//! config; a step whose key hits a record starts the download of that record's layer in
//! the background; exporting pushes a build's records as a cache manifest.
//!
//! A cache that cannot be imported is a warning and the build goes on (BuildKit does the
//! same); a failed export fails the command unless `ignore-error=true`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use builder::cache::CacheKey;
use builder::remote::{error_chain, RemoteError};
use builder::remote_cache::{
    self, CacheManifest, CacheSource, ExportMode, RecordIndex, RemoteRecord,
};
use builder::solve::BuildResult;
use registry_client::PushOptions;
use store::{media_types, Descriptor, LayerRef, Lease, Reference, Store};

use crate::error::{EngineError, Result};
use crate::registry::Registry;

/// Layer downloads in flight at once (docs/design.md §4.6: 4–8 bounded transfers).
const PARALLEL_FETCHES: usize = 4;

/// The registry caches of one build: the imported records, and the downloads their hits
/// started.
pub struct RegistryCache<'r> {
    registry: &'r Registry,
    store: Store,
    sources: Vec<Reference>,
    index: RecordIndex,
    /// Layer downloads started by cache hits and not yet waited for.
    pending: Mutex<Vec<(Descriptor, Download)>>,
    /// Bounds the downloads in flight.
    slots: Arc<tokio::sync::Semaphore>,
}

type Download = tokio::task::JoinHandle<Result<()>>;

impl<'r> RegistryCache<'r> {
    pub fn new(registry: &'r Registry, store: &Store) -> RegistryCache<'r> {
        RegistryCache {
            registry,
            store: store.clone(),
            sources: Vec::new(),
            index: RecordIndex::default(),
            pending: Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(PARALLEL_FETCHES)),
        }
    }

    fn say(&self, line: &str) {
        if !self.registry.is_quiet() {
            eprintln!("{line}");
        }
    }

    /// Reads the cache manifest and config at `reference`. Any failure (no such tag, not
    /// a cache, a registry error) is a warning: the build runs without that cache.
    pub fn import(&mut self, reference: &Reference) {
        self.say(&format!("importing cache manifest from {reference}"));
        match self.read_config(reference) {
            Ok(config) => {
                self.index.add(self.sources.len(), config);
                self.sources.push(reference.clone());
            }
            Err(e) => self.say(&format!(
                "WARNING: importing cache manifest from {reference}: {}",
                error_chain(&e)
            )),
        }
    }

    fn read_config(&self, reference: &Reference) -> Result<remote_cache::CacheConfig> {
        let (client, runtime) = (self.registry.client()?, self.registry.runtime()?);
        let manifest = runtime
            .block_on(client.fetch_manifest(reference))?
            .ok_or(EngineError::CacheNotFound)?;
        let kind = remote_cache::cache_manifest_kind(&manifest.bytes)?;
        let (CacheManifest::Registry(config) | CacheManifest::Image(config)) = &kind;
        // The config is small; it goes through the store like every blob (verified), and
        // a later GC sweeps it unless a local image refers to it.
        let lease = self.store.lease(Duration::from_secs(600))?;
        lease.add_digest(&config.digest)?;
        runtime.block_on(client.fetch_blob(&self.store, &lease, reference, config))?;
        let bytes = self.store.read_blob(&config.digest)?;
        Ok(match kind {
            CacheManifest::Registry(_) => remote_cache::parse_config(&bytes)?,
            CacheManifest::Image(_) => remote_cache::inline_records(&manifest.bytes, &bytes)?,
        })
    }

    /// Pushes the records `mode` selects from `result` as a cache manifest at `reference`.
    pub fn export(
        &self,
        result: &BuildResult,
        reference: &Reference,
        mode: ExportMode,
    ) -> Result<()> {
        self.export_records(result, reference, mode)
            .map_err(|e| EngineError::CacheExport {
                reference: reference.to_string(),
                source: Box::new(e),
            })
    }

    fn export_records(
        &self,
        result: &BuildResult,
        reference: &Reference,
        mode: ExportMode,
    ) -> Result<()> {
        let mut records = remote_cache::select(&result.steps, &result.layers, mode);
        self.say(&format!(
            "exporting cache to {} ({} records)",
            reference,
            records.len()
        ));
        let lease = self.store.lease(Duration::from_secs(6 * 3600))?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        for r in &mut records {
            lease.add_digest(&r.layer.digest)?;
            // Layers travel gzip'd, as docker pushes them (made once, then reused).
            let compressed = self
                .store
                .compressed_layer(
                    &lease,
                    &LayerRef {
                        blob: r.layer.clone(),
                        diff_id: r.diff_id.clone(),
                    },
                )
                .map_err(|source| EngineError::Compress {
                    digest: r.layer.digest.clone(),
                    source: Box::new(source),
                })?;
            r.layer = compressed.blob;
            if !blobs.contains(&r.layer) {
                blobs.push(r.layer.clone());
            }
        }
        let config_bytes = remote_cache::config_bytes(&records);
        let config = self
            .store
            .put_blob(&lease, &config_bytes, remote_cache::CONFIG_MEDIA_TYPE)?;
        blobs.push(config.clone());
        let manifest = remote_cache::cache_manifest(&records, &config);
        let client = self.registry.client()?;
        self.registry
            .runtime()?
            .block_on(registry_client::push_manifest(
                client,
                &self.store,
                reference,
                &blobs,
                manifest.into(),
                media_types::OCI_MANIFEST,
                &PushOptions::default(),
            ))?;
        Ok(())
    }

    fn start_fetch(&self, lease: &Lease, record: &RemoteRecord) -> Result<()> {
        let Some((source, _)) = self.index.get(&record.key) else {
            return Err(EngineError::CacheNotFound);
        };
        let client = self.registry.client()?.clone();
        let (store, slots, lease) = (self.store.clone(), self.slots.clone(), lease.clone());
        let (reference, layer) = (self.sources[*source].clone(), record.layer.clone());
        let task = self.registry.runtime()?.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            client
                .fetch_blob(&store, &lease, &reference, &layer)
                .await
                .map_err(|source| EngineError::CacheLayer {
                    digest: layer.digest.clone(),
                    reference: reference.to_string(),
                    source: Box::new(source),
                })
        });
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((record.layer.clone(), task));
        Ok(())
    }

    fn wait_all(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return Ok(());
        }
        let runtime = self.registry.runtime()?;
        let mut first_error = None;
        for (layer, task) in pending {
            let outcome = match runtime.block_on(task) {
                Ok(result) => result,
                Err(source) => Err(EngineError::CacheTask {
                    digest: layer.digest.clone(),
                    source,
                }),
            };
            if let (Err(e), None) = (outcome, &first_error) {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl CacheSource for RegistryCache<'_> {
    fn lookup(&self, key: &CacheKey) -> Option<RemoteRecord> {
        self.index.get(key.as_str()).map(|(_, r)| r.clone())
    }

    fn fetch(&self, lease: &Lease, record: &RemoteRecord) -> std::result::Result<(), RemoteError> {
        Ok(self.start_fetch(lease, record)?)
    }

    fn wait(&self) -> std::result::Result<(), RemoteError> {
        Ok(self.wait_all()?)
    }
}
