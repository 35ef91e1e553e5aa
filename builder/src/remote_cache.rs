//! Build cache shared between machines through a registry (`--cache-to type=registry`,
//! `--cache-from`), so CI runners that start empty reuse each other's layers.
//!
//! What goes over the wire is an OCI image manifest of our own kind:
//!
//! ```text
//! manifest (application/vnd.oci.image.manifest.v1+json, tagged REF)
//!   config: application/vnd.strata.cache.config.v1+json  → CacheConfig { records }
//!   layers: every layer blob a record names (so the registry keeps them)
//! ```
//!
//! A record maps a step's cache key (`CacheKey`: content only, the same on every machine)
//! to the layer that step produced. Importing reads only the manifest and the config; a
//! layer is downloaded when, and only when, a step's key hits its record.
//!
//! The builder does not talk to registries (it depends on `store` alone): the `engine`
//! crate implements [`CacheSource`] over its registry client and composes the manifest
//! with [`cache_manifest`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use store::{Descriptor, Digest, LayerRef};

use crate::cache::CacheKey;

/// An error from the other side of [`crate::remote::Remote`] or [`CacheSource`], kept whole
/// (with its causes) so the build error that wraps it prints the chain.
pub type RemoteError = Box<dyn std::error::Error + Send + Sync>;

/// The media type of a cache manifest's config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.strata.cache.config.v1+json";

/// The image config field of an inline cache (`--cache-to type=inline`): the records of
/// the image's own layers, each naming its layer by diff_id (the pushed manifest may hold
/// another form of it, e.g. gzip, so no blob digest is written).
pub const INLINE_FIELD: &str = "strata.cache.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InlineRecord {
    key: String,
    diff_id: Digest,
    created_at: i64,
}

/// The inline field's value for `records`.
pub fn inline_field(records: &[RemoteRecord]) -> serde_json::Value {
    let inline: Vec<InlineRecord> = records
        .iter()
        .map(|r| InlineRecord {
            key: r.key.clone(),
            diff_id: r.diff_id.clone(),
            created_at: r.created_at,
        })
        .collect();
    serde_json::to_value(inline).expect("records serialize")
}

/// What is wrong with a manifest or config named by `--cache-from`.
#[derive(Debug, thiserror::Error)]
pub enum CacheFormatError {
    /// A JSON document of the cache (`what`: "the manifest", "the cache config", ...) does
    /// not parse as one.
    #[error("reading {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("neither a build cache nor an image manifest")]
    NotAManifest(#[source] serde_json::Error),
    #[error(
        "not a strata build cache (its config is {media_type:?}, want {CONFIG_MEDIA_TYPE:?} or an image)"
    )]
    UnknownConfig { media_type: String },
    #[error("the image has no inline build cache (build it with --cache-to type=inline)")]
    NoInlineCache,
}

type FormatResult<T> = std::result::Result<T, CacheFormatError>;

fn json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    parsed: serde_json::Result<T>,
) -> FormatResult<T> {
    parsed.map_err(|source| CacheFormatError::Json { what, source })
}

/// The cache an image carries inline: its config's records, each given the manifest's
/// layer at the position of its diff_id in `rootfs.diff_ids`.
pub fn inline_records(manifest: &[u8], config: &[u8]) -> FormatResult<CacheConfig> {
    #[derive(Deserialize)]
    struct Manifest {
        layers: Vec<Descriptor>,
    }
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<Digest>,
    }
    let m: Manifest = json("the manifest", serde_json::from_slice(manifest))?;
    let mut c: serde_json::Value = json("the image config", serde_json::from_slice(config))?;
    let Some(field) = c.get_mut(INLINE_FIELD).map(serde_json::Value::take) else {
        return Err(CacheFormatError::NoInlineCache);
    };
    let inline: Vec<InlineRecord> = json("its inline cache", serde_json::from_value(field))?;
    let rootfs: RootFs = json(
        "the image's rootfs",
        serde_json::from_value(c["rootfs"].take()),
    )?;
    let records = inline
        .into_iter()
        .filter_map(|r| {
            let i = rootfs.diff_ids.iter().position(|d| *d == r.diff_id)?;
            Some(RemoteRecord {
                key: r.key,
                layer: m.layers.get(i)?.clone(),
                diff_id: r.diff_id,
                created_at: r.created_at,
            })
        })
        .collect();
    Ok(CacheConfig { records })
}

/// The config blob of a cache manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub records: Vec<RemoteRecord>,
}

/// One step's result: its key, the layer it made, and when that layer was first built
/// (the history `created` a hit reuses, so every runner writes the same history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub key: String,
    pub layer: Descriptor,
    pub diff_id: Digest,
    pub created_at: i64,
}

/// How much of a build `--cache-to` exports, as BuildKit's `mode=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportMode {
    /// The steps whose layers are in the final image (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage built, intermediate stages included.
    Max,
}

/// Caches imported with `--cache-from`, as the build sees them.
/// `Sync`: stages running side by side look their steps up in one cache.
pub trait CacheSource: Sync {
    /// The record for `key`, if an imported cache has one.
    fn lookup(&self, key: &CacheKey) -> Option<RemoteRecord>;
    /// Starts bringing the record's layer blob into the store (verified, recorded); it
    /// may return before the blob is there. Called only after `lease` (the build's)
    /// names the blob; the blob is written under it. An error here makes the step a miss.
    fn fetch(
        &self,
        lease: &store::Lease,
        record: &RemoteRecord,
    ) -> std::result::Result<(), RemoteError>;
    /// Returns once every fetch started is in the store. The build calls it before it
    /// needs any layer's content (a step that runs, the export), so downloads overlap
    /// the cache lookups of the steps after them. An error here fails the build.
    fn wait(&self) -> std::result::Result<(), RemoteError>;
}

/// The records of one or more imported cache configs, keyed for lookup; each remembers
/// which source (the caller's index) it came from. Earlier sources win, as with several
/// `--cache-from` flags.
#[derive(Debug, Default)]
pub struct RecordIndex {
    by_key: HashMap<String, (usize, RemoteRecord)>,
}

impl RecordIndex {
    pub fn add(&mut self, source: usize, config: CacheConfig) {
        for record in config.records {
            self.by_key
                .entry(record.key.clone())
                .or_insert((source, record));
        }
    }

    /// The record for a key (`CacheKey::as_str`) and the index of its source.
    pub fn get(&self, key: &str) -> Option<&(usize, RemoteRecord)> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The records `mode` exports from the records of a build's layer steps (in build order):
/// `Max` all of them, `Min` those whose layer is in the final image. One per key.
pub fn select(
    steps: &[RemoteRecord],
    final_layers: &[LayerRef],
    mode: ExportMode,
) -> Vec<RemoteRecord> {
    let mut seen = std::collections::HashSet::new();
    steps
        .iter()
        .filter(|r| mode == ExportMode::Max || final_layers.iter().any(|l| l.diff_id == r.diff_id))
        .filter(|r| seen.insert(r.key.clone()))
        .cloned()
        .collect()
}

/// The records of several lists (one per platform built) as one: one per key, the first
/// list's first, in order.
pub fn merge(lists: Vec<Vec<RemoteRecord>>) -> Vec<RemoteRecord> {
    let mut seen = std::collections::HashSet::new();
    lists
        .into_iter()
        .flatten()
        .filter(|r| seen.insert(r.key.clone()))
        .collect()
}

/// The image manifests an index named by `--cache-from` lists, in order: every entry but
/// those without a real platform (attestation manifests are `unknown/unknown`).
pub fn index_images(bytes: &[u8]) -> FormatResult<Vec<Digest>> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: Digest,
        #[serde(default)]
        platform: Option<EntryPlatform>,
    }
    #[derive(Deserialize)]
    struct EntryPlatform {
        #[serde(default)]
        os: String,
    }
    let index: Index = json("the image index", serde_json::from_slice(bytes))?;
    Ok(index
        .manifests
        .into_iter()
        .filter(|e| e.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        .map(|e| e.digest)
        .collect())
}

/// The config blob and manifest of a cache holding `records`; `config` is the
/// descriptor of the config bytes once stored. Layers are listed once each, in order.
pub fn cache_manifest(records: &[RemoteRecord], config: &Descriptor) -> Vec<u8> {
    let mut seen = std::collections::HashSet::new();
    let layers: Vec<Descriptor> = records
        .iter()
        .filter(|r| seen.insert(&r.layer.digest))
        .map(|r| r.layer.clone())
        .collect();
    store::manifest::build_manifest(config, &layers)
}

/// The config bytes of a cache holding `records`.
pub fn config_bytes(records: &[RemoteRecord]) -> Vec<u8> {
    serde_json::to_vec(&CacheConfig {
        records: records.to_vec(),
    })
    .expect("a cache config serializes")
}

/// What a manifest named by `--cache-from` holds: a cache manifest (its config is the
/// records), or an image whose config may carry an inline cache.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheManifest {
    Registry(Descriptor),
    Image(Descriptor),
}

/// Reads a `--cache-from` manifest's config descriptor; an error names what is wrong.
pub fn cache_manifest_kind(bytes: &[u8]) -> FormatResult<CacheManifest> {
    #[derive(Deserialize)]
    struct Manifest {
        config: Descriptor,
    }
    let m: Manifest = serde_json::from_slice(bytes).map_err(CacheFormatError::NotAManifest)?;
    match m.config.media_type.as_str() {
        CONFIG_MEDIA_TYPE => Ok(CacheManifest::Registry(m.config)),
        store::media_types::OCI_CONFIG | store::media_types::DOCKER_CONFIG => {
            Ok(CacheManifest::Image(m.config))
        }
        other => Err(CacheFormatError::UnknownConfig {
            media_type: other.to_string(),
        }),
    }
}

/// Parses a cache config blob.
pub fn parse_config(bytes: &[u8]) -> FormatResult<CacheConfig> {
    json("the cache config", serde_json::from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::media_types;

    fn rec(key: &str, layer: &str) -> RemoteRecord {
        let digest = Digest::sha256_of(layer.as_bytes());
        RemoteRecord {
            key: key.into(),
            layer: Descriptor {
                media_type: media_types::OCI_LAYER_TAR.into(),
                digest: digest.clone(),
                size: layer.len() as u64,
            },
            diff_id: digest,
            created_at: 1,
        }
    }

    #[test]
    fn min_keeps_final_layers_max_keeps_all_and_keys_stay_unique() {
        let (a, b, c) = (rec("ka", "a"), rec("kb", "b"), rec("kc", "c"));
        let steps = vec![a.clone(), b.clone(), c.clone(), c.clone()];
        let finals: Vec<LayerRef> = [&b, &c]
            .iter()
            .map(|r| LayerRef {
                blob: r.layer.clone(),
                diff_id: r.diff_id.clone(),
            })
            .collect();
        assert_eq!(
            select(&steps, &finals, ExportMode::Min),
            vec![b.clone(), c.clone()]
        );
        assert_eq!(select(&steps, &finals, ExportMode::Max), vec![a, b, c]);
    }

    #[test]
    fn manifest_lists_each_layer_once_and_round_trips() {
        let (a, mut b) = (rec("ka", "a"), rec("kb", "a"));
        b.key = "kb".into();
        let records = vec![a.clone(), b];
        let config_bytes = config_bytes(&records);
        let config = Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: Digest::sha256_of(&config_bytes),
            size: config_bytes.len() as u64,
        };
        let manifest = cache_manifest(&records, &config);
        let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(v["layers"].as_array().unwrap().len(), 1);
        assert_eq!(
            cache_manifest_kind(&manifest).unwrap(),
            CacheManifest::Registry(config.clone())
        );
        assert_eq!(parse_config(&config_bytes).unwrap().records, records);
        let other = serde_json::json!({"config": {"mediaType": "application/x-other",
            "digest": config.digest, "size": 2}});
        let err = cache_manifest_kind(&serde_json::to_vec(&other).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("not a strata build cache"),
            "{err}"
        );
    }

    #[test]
    fn inline_records_name_the_manifest_layer_of_their_diff_id() {
        let (a, b) = (rec("ka", "a"), rec("kb", "b"));
        let gz = |r: &RemoteRecord| Descriptor {
            media_type: media_types::OCI_LAYER_GZIP.into(),
            digest: Digest::sha256_of(format!("gz {}", r.diff_id).as_bytes()),
            size: 9,
        };
        let manifest = serde_json::json!({"layers": [gz(&a), gz(&b)]});
        let mut config = serde_json::json!({"rootfs": {"type": "layers",
            "diff_ids": [a.diff_id, b.diff_id]}});
        config[INLINE_FIELD] = inline_field(std::slice::from_ref(&b));
        let got = inline_records(
            &serde_json::to_vec(&manifest).unwrap(),
            &serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
        assert_eq!(got.records, vec![RemoteRecord { layer: gz(&b), ..b }]);
        config.as_object_mut().unwrap().remove(INLINE_FIELD);
        let err = inline_records(
            &serde_json::to_vec(&manifest).unwrap(),
            &serde_json::to_vec(&config).unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no inline build cache"), "{err}");
    }

    #[test]
    fn platforms_merge_into_one_record_per_key_and_index_images_skip_attestations() {
        let (a, b, shared) = (rec("ka", "a"), rec("kb", "b"), rec("ks", "s"));
        let merged = merge(vec![
            vec![shared.clone(), a.clone()],
            vec![shared.clone(), b.clone()],
        ]);
        assert_eq!(merged, vec![shared, a, b]);

        let d = |s: &str| Digest::sha256_of(s.as_bytes());
        let index = serde_json::json!({"manifests": [
            {"digest": d("amd64"), "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": d("arm64"), "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": d("att"), "platform": {"os": "unknown", "architecture": "unknown"}},
        ]});
        assert_eq!(
            index_images(&serde_json::to_vec(&index).unwrap()).unwrap(),
            vec![d("amd64"), d("arm64")]
        );
    }

    #[test]
    fn earlier_sources_win() {
        let mut index = RecordIndex::default();
        index.add(
            0,
            CacheConfig {
                records: vec![rec("k", "first")],
            },
        );
        index.add(
            1,
            CacheConfig {
                records: vec![rec("k", "second"), rec("j", "x")],
            },
        );
        let key = |s: &str| index.get(s).map(|(i, r)| (*i, r.layer.size));
        assert_eq!(key("k"), Some((0, 5)));
        assert_eq!(key("j"), Some((1, 1)));
        assert_eq!(index.len(), 2);
    }
}
