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
    self, CacheFormatError, CacheManifest, CacheSource, ExportMode, RecordIndex, RemoteRecord,
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
    /// Downloads not finished yet, whoever waits for them: platforms built side by side
    /// share the cache, and one's `wait` may take the other's downloads from `pending`.
    in_flight: Arc<InFlight>,
}

/// A count of unfinished downloads, and the signal that it changed.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    changed: std::sync::Condvar,
}

/// Counts one download in flight until dropped (when the download's task ends, however).
struct InFlightGuard(Arc<InFlight>);

impl InFlightGuard {
    fn new(in_flight: &Arc<InFlight>) -> InFlightGuard {
        *in_flight.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        InFlightGuard(in_flight.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(|p| p.into_inner());
        *count -= 1;
        self.0.changed.notify_all();
    }
}

impl InFlight {
    /// Returns once no download is in flight.
    fn wait_idle(&self) {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
            count = self.changed.wait(count).unwrap_or_else(|p| p.into_inner());
        }
    }
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
            in_flight: Arc::default(),
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
        let manifest = self.fetch_manifest(reference)?;
        if !media_types::is_index(&manifest.media_type) {
            return self.read_manifest_config(reference, &manifest.bytes);
        }
        // An image index (a multi-platform image with inline caches): the records of
        // every platform's image, as BuildKit imports them; entries without a platform of
        // their own (attestations are `unknown/unknown`) carry no cache.
        let images = remote_cache::index_images(&manifest.bytes)?;
        let mut merged = Vec::new();
        let mut without_cache = None;
        for digest in images {
            let mut by_digest = reference.clone();
            by_digest.tag = None;
            by_digest.digest = Some(digest);
            let image = self.fetch_manifest(&by_digest)?;
            match self.read_manifest_config(reference, &image.bytes) {
                Ok(config) => merged.push(config.records),
                Err(e @ EngineError::CacheFormat(CacheFormatError::NoInlineCache)) => {
                    without_cache = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        if let (true, Some(e)) = (merged.is_empty(), without_cache) {
            return Err(e);
        }
        Ok(remote_cache::CacheConfig {
            records: remote_cache::merge(merged),
        })
    }

    fn fetch_manifest(&self, reference: &Reference) -> Result<registry_client::RemoteManifest> {
        let (client, runtime) = (self.registry.client()?, self.registry.runtime()?);
        runtime
            .block_on(client.fetch_manifest(reference))?
            .ok_or(EngineError::CacheNotFound)
    }

    /// The records of the cache manifest or image manifest `bytes` (from `reference`'s
    /// repository).
    fn read_manifest_config(
        &self,
        reference: &Reference,
        bytes: &[u8],
    ) -> Result<remote_cache::CacheConfig> {
        let (client, runtime) = (self.registry.client()?, self.registry.runtime()?);
        let kind = remote_cache::cache_manifest_kind(bytes)?;
        let (CacheManifest::Registry(config) | CacheManifest::Image(config)) = &kind;
        // The config is small; it goes through the store like every blob (verified), and
        // a later GC sweeps it unless a local image refers to it.
        let lease = self.store.lease(Duration::from_secs(600))?;
        lease.add_digest(&config.digest)?;
        runtime.block_on(client.fetch_blob(&self.store, &lease, reference, config))?;
        let config_bytes = self.store.read_blob(&config.digest)?;
        Ok(match kind {
            CacheManifest::Registry(_) => remote_cache::parse_config(&config_bytes)?,
            CacheManifest::Image(_) => remote_cache::inline_records(bytes, &config_bytes)?,
        })
    }

    /// Pushes the records `mode` selects from each of `results` (one per platform) as one
    /// cache manifest at `reference`, as BuildKit exports a multi-platform build.
    pub fn export(
        &self,
        results: &[BuildResult],
        reference: &Reference,
        mode: ExportMode,
    ) -> Result<()> {
        self.export_records(results, reference, mode)
            .map_err(|e| EngineError::CacheExport {
                reference: reference.to_string(),
                source: Box::new(e),
            })
    }

    fn export_records(
        &self,
        results: &[BuildResult],
        reference: &Reference,
        mode: ExportMode,
    ) -> Result<()> {
        let selected: Vec<Vec<RemoteRecord>> = results
            .iter()
            .map(|r| remote_cache::select(&r.steps, &r.layers, mode))
            .collect();
        let mut records = remote_cache::merge(selected);
        self.say(&format!(
            "exporting cache to {} ({} records)",
            reference,
            records.len()
        ));
        let lease = self.store.lease(Duration::from_secs(6 * 3600))?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        for r in &mut records {
            lease.add_digest(&r.layer.digest)?;
            // A layer of a stage the image does not hold was recorded unwritten: its blob
            // is made now (docs/design.md §4.8).
            if !self.store.has_blob(&r.layer.digest) {
                r.layer = builder::unwritten::materialise(&self.store, &lease, &r.key)
                    .map_err(|e| EngineError::from(builder::solve::BuildError::from(e)))?;
            }
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
        let in_flight = InFlightGuard::new(&self.in_flight);
        let task = self.registry.runtime()?.spawn(async move {
            let _in_flight = in_flight;
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
            // Another platform's wait may have taken downloads this one's steps use.
            self.in_flight.wait_idle();
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
        self.in_flight.wait_idle();
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
