//! A multi-platform build's result: one image per platform, listed in an OCI image index,
//! pushed as buildx pushes it (every platform's manifest by digest, then the index under
//! each tag).
//!
//! The store keeps the per-platform images (untagged); only the registry gets the index
//! and the tag.

use bytes::Bytes;
use registry_client::{push_manifest, PushOptions};
use store::platform::Platform;
use store::{media_types, Descriptor, Digest, Reference, Store};

use builder::solve::BuildResult;

use crate::error::{EngineError, Result};
use crate::registry::Registry;

/// An OCI index listing `manifests` (descriptor and platform), in order.
pub fn index_json(manifests: &[(Descriptor, Platform)]) -> serde_json::Value {
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
        "mediaType": media_types::OCI_INDEX,
        "manifests": entries,
    })
}

/// Pushes every platform's image by digest into `tag`'s repository, then the index of the
/// manifests as pushed (a push may compress layers, which makes a new manifest) under
/// `tag`. Returns the index's descriptor.
pub fn push(
    store: &Store,
    registry: &Registry,
    tag: &Reference,
    results: &[BuildResult],
) -> Result<Descriptor> {
    let push_error = |source| EngineError::Push {
        reference: tag.familiar(),
        source: Box::new(source),
    };
    let client = registry.client()?;
    let runtime = registry.runtime()?;
    let mut pushed = Vec::with_capacity(results.len());
    for r in results {
        let mut by_digest = tag.clone();
        by_digest.tag = None;
        by_digest.digest = Some(r.manifest.clone());
        let digest = registry.push(store, &by_digest)?;
        by_digest.digest = Some(digest.clone());
        let manifest = runtime
            .block_on(client.fetch_manifest(&by_digest))
            .map_err(push_error)?
            .ok_or_else(|| {
                EngineError::Usage(format!("{by_digest} is not in the registry after its push"))
            })?;
        let descriptor = Descriptor {
            media_type: manifest.media_type,
            digest,
            size: manifest.bytes.len() as u64,
        };
        pushed.push((descriptor, r.platform.clone()));
    }
    let index = index_json(&pushed);
    let bytes = Bytes::from(serde_json::to_vec(&index).expect("an index serializes"));
    let descriptor = Descriptor {
        media_type: media_types::OCI_INDEX.to_string(),
        digest: Digest::sha256_of(&bytes),
        size: bytes.len() as u64,
    };
    runtime
        .block_on(push_manifest(
            client,
            store,
            tag,
            &[],
            bytes,
            media_types::OCI_INDEX,
            &PushOptions::default(),
        ))
        .map_err(push_error)?;
    Ok(descriptor)
}
