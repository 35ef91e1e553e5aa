//! `build --cache-from` / `--cache-to` with a registry: the flags as buildx spells them,
//! and the registry side of the builder's `remote_cache` (which knows no registries).
//!
//! `--cache-from REF` is short for `--cache-from type=registry,ref=REF`, as in buildx.
//! A cache that cannot be imported is a warning and the build goes on (BuildKit does the
//! same); a failed export fails the command unless `ignore-error=true`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use builder::build::BuildResult;
use builder::cache::CacheKey;
use builder::remote_cache::{
    self, CacheManifest, CacheSource, ExportMode, RecordIndex, RemoteRecord,
};
use registry_client::{Client, PushOptions};
use store::{media_types, Descriptor, LayerRef, Lease, Reference, Store};

use super::Ctx;
use crate::output::UsageError;

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTo {
    /// Where the cache manifest goes; `None` for `type=inline` (the records go into the
    /// image's own config, pushed with the image).
    pub reference: Option<Reference>,
    pub mode: ExportMode,
    pub ignore_error: bool,
}

/// The `key=value,…` attributes of a cache flag; a bare value is `type=registry,ref=VALUE`.
fn attributes(flag: &str, raw: &str) -> Result<Vec<(String, String)>> {
    if !raw.contains('=') {
        return Ok(vec![
            ("type".into(), "registry".into()),
            ("ref".into(), raw.to_string()),
        ]);
    }
    raw.split(',')
        .map(|field| match field.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            }
            _ => Err(UsageError(format!(
                "invalid {flag} {raw:?}: want type=registry,ref=REF[,…]"
            ))
            .into()),
        })
        .collect()
}

/// Checks `type=` and returns `ref=` as a reference.
fn registry_ref(flag: &str, raw: &str, attrs: &[(String, String)]) -> Result<Reference> {
    let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    match get("type").unwrap_or("registry") {
        "registry" => {}
        other => {
            return Err(UsageError(format!(
                "{flag} type={other} is not supported: strata shares build cache through a \
                 registry (type=registry,ref=REF, or type=inline in the pushed image)"
            ))
            .into())
        }
    }
    let r = get("ref")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| UsageError(format!("invalid {flag} {raw:?}: ref=REF is required")))?;
    Reference::parse(r)
        .map_err(|e| UsageError(format!("invalid {flag} reference {r:?}: {e}")).into())
}

pub fn parse_cache_from(raw: &str) -> Result<Reference> {
    let attrs = attributes("--cache-from", raw)?;
    registry_ref("--cache-from", raw, &attrs)
}

pub fn parse_cache_to(raw: &str) -> Result<CacheTo> {
    let attrs = attributes("--cache-to", raw)?;
    if attrs.iter().any(|(k, v)| k == "type" && v == "inline") {
        // BuildKit's inline cache: min mode only, nothing to configure.
        if let Some((k, v)) = attrs
            .iter()
            .find(|(k, v)| !(k == "type" || (k == "mode" && v == "min")))
        {
            return Err(UsageError(format!(
                "--cache-to type=inline takes no {k}={v} (it exports mode=min into the image)"
            ))
            .into());
        }
        return Ok(CacheTo {
            reference: None,
            mode: ExportMode::Min,
            ignore_error: false,
        });
    }
    let reference = Some(registry_ref("--cache-to", raw, &attrs)?);
    let mut to = CacheTo {
        reference,
        mode: ExportMode::Min,
        ignore_error: false,
    };
    for (k, v) in &attrs {
        match (k.as_str(), v.as_str()) {
            ("type" | "ref", _) => {}
            ("mode", "min") => to.mode = ExportMode::Min,
            ("mode", "max") => to.mode = ExportMode::Max,
            ("ignore-error", v) => {
                to.ignore_error = v.parse().map_err(|_| {
                    UsageError(format!(
                        "invalid --cache-to ignore-error={v:?}: want true|false"
                    ))
                })?
            }
            // What buildx accepts and strata already does: an OCI image manifest, gzip.
            ("oci-mediatypes" | "image-manifest", "true") | ("compression", "gzip") => {}
            _ => {
                return Err(UsageError(format!(
                    "--cache-to {k}={v} is not supported (supported: type=registry, ref=, \
                     mode=min|max, ignore-error=, oci-mediatypes=true, image-manifest=true, \
                     compression=gzip)"
                ))
                .into())
            }
        }
    }
    Ok(to)
}

/// The registry caches of one build: the imported records, and the client that fetches
/// their layers on a hit and pushes the export afterwards.
pub struct RegistryCache {
    client: Arc<Client>,
    runtime: tokio::runtime::Runtime,
    store: Store,
    sources: Vec<Reference>,
    index: RecordIndex,
    quiet: bool,
    /// Layer downloads started by cache hits and not yet waited for.
    pending: Mutex<Vec<(Descriptor, Download)>>,
    /// Bounds the downloads in flight.
    slots: Arc<tokio::sync::Semaphore>,
}

type Download = tokio::task::JoinHandle<std::result::Result<(), String>>;

/// Layer downloads in flight at once (DESIGN §4: 4–8 bounded transfers).
const PARALLEL_FETCHES: usize = 4;

impl RegistryCache {
    pub fn new(ctx: &Ctx, store: &Store, quiet: bool) -> Result<RegistryCache> {
        Ok(RegistryCache {
            client: Arc::new(super::pull::client(ctx, quiet)?),
            runtime: registry_client::runtime().context("starting the registry client")?,
            store: store.clone(),
            sources: Vec::new(),
            index: RecordIndex::default(),
            quiet,
            pending: Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(PARALLEL_FETCHES)),
        })
    }

    fn say(&self, line: &str) {
        if !self.quiet {
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
                "WARNING: importing cache manifest from {reference}: {e:#}"
            )),
        }
    }

    fn read_config(&self, reference: &Reference) -> Result<remote_cache::CacheConfig> {
        let manifest = self
            .runtime
            .block_on(self.client.fetch_manifest(reference))?
            .context("not found")?;
        let kind =
            remote_cache::cache_manifest_kind(&manifest.bytes).map_err(anyhow::Error::msg)?;
        let (CacheManifest::Registry(config) | CacheManifest::Image(config)) = &kind;
        // The config is small; it goes through the store like every blob (verified), and
        // a later GC sweeps it unless a local image refers to it.
        let lease = self.store.lease(Duration::from_secs(600))?;
        lease.add_digest(&config.digest)?;
        self.runtime.block_on(
            self.client
                .fetch_blob(&self.store, &lease, reference, config),
        )?;
        let bytes = self.store.read_blob(&config.digest)?;
        match kind {
            CacheManifest::Registry(_) => remote_cache::parse_config(&bytes),
            CacheManifest::Image(_) => remote_cache::inline_records(&manifest.bytes, &bytes),
        }
        .map_err(anyhow::Error::msg)
    }

    /// Pushes the records `to.mode` selects from `result` as a cache manifest (an inline
    /// cache is already in the image: nothing to do here).
    pub fn export(&self, result: &BuildResult, to: &CacheTo) -> Result<()> {
        let Some(reference) = &to.reference else {
            return Ok(());
        };
        let mut records = remote_cache::select(&result.steps, &result.layers, to.mode);
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
                .with_context(|| format!("compressing layer {}", r.layer.digest))?;
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
        self.runtime
            .block_on(registry_client::push_manifest(
                &self.client,
                &self.store,
                reference,
                &blobs,
                manifest.into(),
                media_types::OCI_MANIFEST,
                &PushOptions::default(),
            ))
            .with_context(|| format!("exporting cache to {}", reference))?;
        Ok(())
    }
}

impl CacheSource for RegistryCache {
    fn lookup(&self, key: &CacheKey) -> Option<RemoteRecord> {
        self.index.get(key.as_str()).map(|(_, r)| r.clone())
    }

    fn fetch(&self, lease: &Lease, record: &RemoteRecord) -> std::result::Result<(), String> {
        let Some((source, _)) = self.index.get(&record.key) else {
            return Err(format!("no imported cache holds {}", record.layer.digest));
        };
        let (client, store, slots) = (self.client.clone(), self.store.clone(), self.slots.clone());
        let lease = lease.clone();
        let (reference, layer) = (self.sources[*source].clone(), record.layer.clone());
        let task = self.runtime.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            client
                .fetch_blob(&store, &lease, &reference, &layer)
                .await
                .map_err(|e| format!("{reference}: {e}"))
        });
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((record.layer.clone(), task));
        Ok(())
    }

    fn wait(&self) -> std::result::Result<(), String> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut first_error = None;
        for (layer, task) in pending {
            let outcome = match self.runtime.block_on(task) {
                Ok(result) => result,
                Err(e) => Err(format!("the download task failed: {e}")),
            };
            if let (Err(e), None) = (outcome, &first_error) {
                first_error = Some(format!("layer {}: {e}", layer.digest));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_flags_parse_like_buildx() {
        let bare = parse_cache_from("localhost:5000/app:cache").unwrap();
        assert_eq!(bare.to_string(), "localhost:5000/app:cache");
        let full = parse_cache_from("type=registry,ref=localhost:5000/app:cache").unwrap();
        assert_eq!(full, bare);
        let to = parse_cache_to("type=registry,ref=localhost:5000/app:cache,mode=max").unwrap();
        assert_eq!(to.mode, ExportMode::Max);
        assert!(!to.ignore_error);
        let to = parse_cache_to("type=registry,ref=r/a:c,ignore-error=true").unwrap();
        assert_eq!((to.mode, to.ignore_error), (ExportMode::Min, true));
        let inline = parse_cache_to("type=inline").unwrap();
        assert_eq!((inline.reference, inline.mode), (None, ExportMode::Min));
        for bad in [
            "type=local,dest=/tmp/x",
            "type=inline,mode=max",
            "type=registry",
            "type=registry,ref=repo/UPPER",
            "type=registry,ref=a,mode=all",
            "type=registry,ref=a,,",
        ] {
            let err = parse_cache_to(bad).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some(), "{bad}: {err}");
        }
    }
}
