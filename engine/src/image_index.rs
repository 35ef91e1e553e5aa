//! A multi-platform build's result: one image per platform, listed in an OCI image index,
//! pushed as buildx pushes it (every platform's manifest by digest, then the index under
//! each tag).
//!
//! The store keeps the index too, tagged, as one image ([`store_index`]); its platforms'
//! images are recorded untagged, and GC keeps them as long as the index. The pushed index
//! may differ from the stored one: [`crate::provenance::index_json`] adds the attestations.

use std::collections::BTreeMap;

use bytes::Bytes;
use registry_client::{push_manifest, PushOptions};
use store::platform::Platform;
use store::{media_types, Descriptor, Digest, Reference, Store};

use builder::annotations::PlatformAnnotations;
use builder::solve::BuildResult;

use crate::error::{EngineError, Result};
use crate::registry::Registry;

/// `--annotation index:KEY=VALUE` and `manifest-descriptor:KEY=VALUE`: set on an image
/// index (stored or pushed) and on its entries for images (attestation manifests' entries
/// keep only their own), as BuildKit's image exporter sets them; `index-descriptor:` on
/// the index's entry in an OCI archive's `index.json`.
#[derive(Debug, Clone, Default)]
pub struct IndexAnnotations {
    pub index: BTreeMap<String, String>,
    /// On each image entry, by the entry's platform (`manifest-descriptor[PLATFORM]:…`).
    pub manifest_descriptor: PlatformAnnotations,
    pub index_descriptor: BTreeMap<String, String>,
}

impl IndexAnnotations {
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
            && self.manifest_descriptor.is_empty()
            && self.index_descriptor.is_empty()
    }

    /// Adds the annotations to `index`, an image index's JSON.
    pub fn apply(&self, index: &mut serde_json::Value) {
        fn extend(target: &mut serde_json::Value, add: &BTreeMap<String, String>) {
            if add.is_empty() {
                return;
            }
            if !target["annotations"].is_object() {
                target["annotations"] = serde_json::json!({});
            }
            for (k, v) in add {
                target["annotations"][k] = v.clone().into();
            }
        }
        if let Some(entries) = index["manifests"].as_array_mut() {
            for entry in entries
                .iter_mut()
                .filter(|e| e["annotations"]["vnd.docker.reference.type"].is_null())
            {
                let platform = Platform::from_json(&entry["platform"]);
                extend(
                    entry,
                    &self.manifest_descriptor.for_platform(platform.as_ref()),
                );
            }
        }
        extend(index, &self.index);
    }
}

/// An image index listing `manifests` (descriptor and platform), in order: a Docker
/// manifest list when every manifest is Docker schema2, else an OCI index.
pub fn index_json(manifests: &[(Descriptor, Platform)]) -> serde_json::Value {
    let media_type = if manifests
        .iter()
        .all(|(d, _)| d.media_type == media_types::DOCKER_MANIFEST)
    {
        media_types::DOCKER_MANIFEST_LIST
    } else {
        media_types::OCI_INDEX
    };
    let entries: Vec<serde_json::Value> = manifests
        .iter()
        .map(|(d, platform)| {
            serde_json::json!({
                "mediaType": d.media_type,
                "digest": d.digest.to_string(),
                "size": d.size,
                "platform": platform.to_json(),
            })
        })
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": entries,
    })
}

/// Writes the index of `results` (one image per platform, each recorded in the store),
/// with `annotations`, into the store and points `tags` at it. Returns its descriptor.
pub fn store_index(
    store: &Store,
    tags: &[Reference],
    results: &[BuildResult],
    annotations: &IndexAnnotations,
) -> Result<Descriptor> {
    let mut manifests = Vec::with_capacity(results.len());
    for r in results {
        let image = store.image(&r.manifest)?;
        let descriptor = Descriptor {
            media_type: image.media_type,
            digest: r.manifest.clone(),
            size: image.manifest_size,
        };
        manifests.push((descriptor, r.platform.clone()));
    }
    let mut index = index_json(&manifests);
    annotations.apply(&mut index);
    let media_type = index["mediaType"]
        .as_str()
        .unwrap_or(media_types::OCI_INDEX)
        .to_string();
    let bytes = serde_json::to_vec(&index).expect("an index serializes");
    let lease = store.lease(std::time::Duration::from_secs(3600))?;
    let descriptor = store.put_blob(&lease, &bytes, &media_type)?;
    store.add_index(&descriptor.digest, tags)?;
    Ok(descriptor)
}

/// One platform's image as pushed: its manifest's descriptor (as the registry has it)
/// and its platform.
pub type PushedImage = (Descriptor, Platform);

/// `push` of an image index kept in the store (`strata push NAME` of a multi-platform
/// image): its platforms' manifests, then the index under `tag`. The registry prints
/// docker's `TAG: digest: … size: …` line of the index last.
pub fn push_stored(
    store: &Store,
    registry: &Registry,
    tag: &Reference,
    image: &store::ImageRecord,
) -> Result<Descriptor> {
    let manifests = image
        .platforms
        .iter()
        .map(|c| {
            let platform = c.platform().ok_or_else(|| {
                EngineError::Usage(format!(
                    "{}: the index entry {} names no platform",
                    tag.familiar(),
                    c.manifest.digest
                ))
            })?;
            Ok((c.manifest.digest.clone(), platform))
        })
        .collect::<Result<Vec<_>>>()?;
    let images = push_images(store, registry, tag, &manifests)?;
    let mut index = index_json(&images);
    // The store parsed this index when it recorded it.
    let stored = serde_json::from_slice(&store.read_blob(&image.manifest)?)
        .unwrap_or(serde_json::Value::Null);
    keep_annotations(&stored, &mut index);
    let pushed = push_index(store, registry, tag, &index)?;
    if !registry.is_quiet() {
        let name = tag.tag.clone().unwrap_or_else(|| pushed.digest.to_string());
        println!("{name}: digest: {} size: {}", pushed.digest, pushed.size);
    }
    Ok(pushed)
}

/// Gives `pushed` (the index of the images as pushed, whose digests a push may change) the
/// annotations of `stored`: its own, and each entry's, matched by platform.
fn keep_annotations(stored: &serde_json::Value, pushed: &mut serde_json::Value) {
    if stored["annotations"].is_object() {
        pushed["annotations"] = stored["annotations"].clone();
    }
    let Some(entries) = pushed["manifests"].as_array_mut() else {
        return;
    };
    let stored_entries = stored["manifests"].as_array().map_or(&[][..], |v| v);
    for entry in entries {
        let found = stored_entries
            .iter()
            .find(|s| s["platform"] == entry["platform"] && s["annotations"].is_object());
        if let Some(s) = found {
            entry["annotations"] = s["annotations"].clone();
        }
    }
}

/// Pushes every `(manifest, platform)` by digest into `tag`'s repository; returns the
/// manifests as pushed (a push may compress layers, which makes a new manifest), in order.
pub fn push_images(
    store: &Store,
    registry: &Registry,
    tag: &Reference,
    manifests: &[(Digest, Platform)],
) -> Result<Vec<PushedImage>> {
    let mut pushed = Vec::with_capacity(manifests.len());
    for (manifest, platform) in manifests {
        let mut by_digest = tag.clone();
        by_digest.tag = None;
        by_digest.digest = Some(manifest.clone());
        let digest = registry.push(store, &by_digest)?;
        by_digest.digest = Some(digest.clone());
        let manifest = fetch_pushed(registry, tag, &by_digest)?;
        let descriptor = Descriptor {
            media_type: manifest.media_type,
            digest,
            size: manifest.bytes.len() as u64,
        };
        pushed.push((descriptor, platform.clone()));
    }
    Ok(pushed)
}

/// Pushes `index` (an image index whose manifests are in the registry) under `tag`;
/// returns its descriptor.
pub(crate) fn push_index(
    store: &Store,
    registry: &Registry,
    tag: &Reference,
    index: &serde_json::Value,
) -> Result<Descriptor> {
    let media_type = index["mediaType"]
        .as_str()
        .unwrap_or(media_types::OCI_INDEX)
        .to_string();
    let bytes = Bytes::from(serde_json::to_vec(index).expect("an index serializes"));
    let descriptor = Descriptor {
        media_type: media_type.clone(),
        digest: Digest::sha256_of(&bytes),
        size: bytes.len() as u64,
    };
    registry
        .runtime()?
        .block_on(push_manifest(
            registry.client()?,
            store,
            tag,
            &[],
            bytes,
            &media_type,
            &PushOptions::default(),
        ))
        .map_err(|source| push_error(tag, source))?;
    Ok(descriptor)
}

/// The manifest `by_digest` names, fetched back from the registry it was just pushed to.
pub(crate) fn fetch_pushed(
    registry: &Registry,
    tag: &Reference,
    by_digest: &Reference,
) -> Result<registry_client::RemoteManifest> {
    registry
        .runtime()?
        .block_on(registry.client()?.fetch_manifest(by_digest))
        .map_err(|source| push_error(tag, source))?
        .ok_or_else(|| {
            EngineError::Usage(format!("{by_digest} is not in the registry after its push"))
        })
}

/// A failed push of `tag`.
pub(crate) fn push_error(tag: &Reference, source: registry_client::RegistryError) -> EngineError {
    EngineError::Push {
        reference: tag.familiar(),
        source: Box::new(source),
    }
}
