//! The last step of a build: the target stage becomes an image config and an OCI manifest
//! in the store, and the tags move to it.
//!
//! A fully cached rebuild must give the same image, but `created` stamps differ between
//! runs. So the exported manifest is itself cached, under a key made of the last step's key
//! and the config without its timestamps: the same inputs find the same manifest.

use std::collections::BTreeMap;

use store::platform::Platform;
use store::{media_types, CacheRecord, Descriptor, Digest, Lease, Reference, Store};

use super::history_text::rfc3339;
use super::state::{now_or_epoch, StageResult};
use super::{BuildOptions, Result};
use crate::cache::CacheKey;
use crate::image::ImageConfigFile;
use crate::progress::Reporter;
use crate::remote_cache::{self, RemoteRecord};

pub struct Exported {
    pub manifest: Digest,
    pub config: Digest,
}

/// Where an exported image goes: the platform its config names, and its tags (none for
/// one platform of several: the caller makes the index).
pub struct Target<'a> {
    pub platform: &'a Platform,
    pub tags: &'a [Reference],
}

pub fn export(
    store: &Store,
    stage: &StageResult,
    opts: &BuildOptions,
    to: &Target<'_>,
    lease: &Lease,
    inline_cache: Option<&[RemoteRecord]>,
    reporter: &mut dyn Reporter,
) -> Result<Exported> {
    let mut config = stage.config.clone();
    config.rootfs.kind = "layers".to_string();
    config.rootfs.diff_ids = stage.layers.iter().map(|l| l.diff_id.to_string()).collect();
    config.os = to.platform.os.clone();
    config.architecture = to.platform.architecture.clone();
    config.variant = to.platform.variant.clone();
    config.config.labels.extend(opts.labels.clone());
    let inline = inline_cache.map(remote_cache::inline_field);
    let mut fingerprinted = fingerprint(&config);
    if let Some(field) = &inline {
        fingerprinted.push_str(&format!("\0{}:{field}", remote_cache::INLINE_FIELD));
    }
    let annotations = opts.manifest_annotations.for_platform(Some(to.platform));
    for (k, v) in &annotations {
        fingerprinted.push_str(&format!("\0annotation:{k}={v}"));
    }
    let key = CacheKey::for_image(&stage.key, &fingerprinted);

    let exported = match cached_image(store, &key, opts.no_cache, lease)? {
        Some(found) => found,
        None => {
            config.created = Some(rfc3339(now_or_epoch(opts.source_date_epoch)));
            let written = write_image(store, lease, &config, inline, stage, &annotations)?;
            let rec = CacheRecord {
                v: 1,
                diff_id: None,
                chain_id: None,
                layer: None,
                unwritten: None,
                config_delta: serde_json::json!({
                    "manifest": written.manifest.to_string(),
                    "config": written.config.to_string(),
                }),
                created_at: now_or_epoch(None),
                last_used: now_or_epoch(None),
                size: 0,
            };
            store.cache_put(key.as_str(), &rec)?;
            written
        }
    };
    lease.add_digest(&exported.manifest)?;
    reporter.note(&format!("writing image {} done", exported.config));
    // A rebuild that changes nothing writes nothing: no record, no index.json rewrite.
    if to.tags.is_empty() && store.image(&exported.manifest).is_err() {
        store.add_image(&exported.manifest, None)?;
    }
    for tag in to.tags {
        if store.resolve(tag).ok().as_ref() != Some(&exported.manifest) {
            store.add_image(&exported.manifest, Some(tag))?;
        }
        reporter.note(&format!("naming to {tag} done"));
    }
    Ok(exported)
}

/// The config with every timestamp removed: what decides whether two builds are the same.
fn fingerprint(config: &ImageConfigFile) -> String {
    let mut c = config.clone();
    c.created = None;
    for h in &mut c.history {
        h.created = None;
    }
    serde_json::to_string(&c).expect("config serializes")
}

/// The image a previous identical build exported, if its blobs are still there. The lease
/// is taken before the check, so a prune starting in between sees it.
fn cached_image(
    store: &Store,
    key: &CacheKey,
    no_cache: bool,
    lease: &Lease,
) -> Result<Option<Exported>> {
    if no_cache {
        return Ok(None);
    }
    let Some(rec) = store.cache_get(key.as_str())? else {
        return Ok(None);
    };
    let digest = |name: &str| {
        rec.config_delta
            .get(name)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<Digest>().ok())
    };
    let (Some(manifest), Some(config)) = (digest("manifest"), digest("config")) else {
        return Ok(None);
    };
    lease.add_digest(&manifest)?;
    lease.add_digest(&config)?;
    if store.has_blob(&manifest) && store.has_blob(&config) {
        Ok(Some(Exported { manifest, config }))
    } else {
        Ok(None)
    }
}

fn write_image(
    store: &Store,
    lease: &Lease,
    config: &ImageConfigFile,
    inline_cache: Option<serde_json::Value>,
    stage: &StageResult,
    annotations: &BTreeMap<String, String>,
) -> Result<Exported> {
    let mut config = serde_json::to_value(config).expect("config serializes");
    if let Some(field) = inline_cache {
        config[remote_cache::INLINE_FIELD] = field;
    }
    let config_bytes = serde_json::to_vec(&config).expect("config serializes");
    let config_desc = store.put_blob(lease, &config_bytes, media_types::OCI_CONFIG)?;
    let layers: Vec<Descriptor> = stage.layers.iter().map(|l| l.blob.clone()).collect();
    // Every layer of an image is a blob other OCI tools can read (docs/design.md §1): the
    // exported stages write theirs (§4.8), which this holds to.
    if let Some(l) = layers.iter().find(|l| !store.has_blob(&l.digest)) {
        return Err(store::StoreError::BlobMissing {
            digest: l.digest.clone(),
            root: store.root().to_path_buf(),
        }
        .into());
    }
    let manifest_bytes =
        store::manifest::build_manifest_with_annotations(&config_desc, &layers, annotations);
    let manifest_desc = store.put_blob(lease, &manifest_bytes, media_types::OCI_MANIFEST)?;
    Ok(Exported {
        manifest: manifest_desc.digest,
        config: config_desc.digest,
    })
}
