//! The OCI image manifests strata writes itself (`import`, `load` of a docker-archive,
//! `build`, a registry cache export).

use crate::{media_types, Descriptor};

/// An OCI image manifest naming `config` and `layers`.
pub fn build_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    serde_json::to_vec(&m).expect("manifest serializes")
}
