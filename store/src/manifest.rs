//! The OCI image manifests strata writes itself (`import`, `load` of a docker-archive,
//! `build`, a registry cache export).

use std::collections::BTreeMap;

use crate::{media_types, Descriptor};

/// An OCI image manifest naming `config` and `layers`.
pub fn build_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    build_manifest_with_annotations(config, layers, &BTreeMap::new())
}

/// [`build_manifest`] with the manifest's `annotations` (left out when empty).
pub fn build_manifest_with_annotations(
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    if !annotations.is_empty() {
        m["annotations"] = serde_json::json!(annotations);
    }
    serde_json::to_vec(&m).expect("manifest serializes")
}
