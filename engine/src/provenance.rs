//! Provenance attestations as BuildKit makes them: an in-toto statement with a SLSA v0.2
//! provenance predicate about the built image manifest, in an attestation manifest that an
//! image index lists beside the image (`vnd.docker.reference.type: attestation-manifest`,
//! platform `unknown/unknown`). `build --push` pushes the statement, the attestation
//! manifest and then the index under each tag; a build for several platforms makes one
//! statement per platform's image (its subject, its platform, its materials) and lists
//! the images first, then their attestations, as BuildKit does; the local store keeps the plain image, as
//! docker's image store does after `--load`.
//!
//! The flags, as buildx and docker/build-push-action spell them:
//!
//! ```text
//! --provenance false|0 | true|1 | mode=min|max[,builder-id=URL][,inline-only=true][,disabled=true]
//! --attest type=provenance,(the same attributes)
//! --sbom … / --attest type=sbom,…     refused: SBOMs are not supported yet
//! ```
//!
//! The attestation manifest has BuildKit's `oci-artifact=false` form (an image config
//! naming the statement as its one layer), which every registry takes.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use bytes::Bytes;
use registry_client::{push_manifest, PushOptions};
use store::platform::Platform;
use store::{media_types, Descriptor, Digest, Lease, Reference, Store};

use crate::error::{EngineError, Result};
use crate::image_index::{fetch_pushed, push_error, push_index, PushedImage};
use crate::outputs::csv_fields;
use crate::registry::Registry;

pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v0.2";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";
pub const BUILD_TYPE: &str = "https://mobyproject.org/buildkit@v1";
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST_ANNOTATION: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvenanceMode {
    /// The builder, the build arguments and the materials (images read, by digest).
    Min,
    /// Also the Dockerfile.
    Max,
}

/// A provenance attestation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub mode: ProvenanceMode,
    /// `builder-id=URL`: the predicate's `builder.id`.
    pub builder_id: Option<String>,
}

fn usage(message: String) -> EngineError {
    EngineError::Usage(message)
}

fn is_true(v: &str) -> Option<bool> {
    match v.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses `--provenance`, `--sbom` and every `--attest`; the last provenance setting wins,
/// as in buildx. `None`: no attestation.
pub fn parse_attestations(
    provenance: Option<&str>,
    sbom: Option<&str>,
    attest: &[String],
) -> Result<Option<Provenance>> {
    let unsupported = |what: &str| {
        EngineError::Unsupported(format!(
            "{what}: SBOM attestations are not supported yet; build without them"
        ))
    };
    if let Some(sbom) = sbom {
        if is_true(sbom) != Some(false) && !sbom.contains("disabled=true") {
            return Err(unsupported(&format!("--sbom={sbom}")));
        }
    }
    let mut out = None;
    if let Some(p) = provenance {
        out = match is_true(p) {
            Some(false) => None,
            Some(true) => Some(Provenance {
                mode: ProvenanceMode::Min,
                builder_id: None,
            }),
            None => provenance_attrs("--provenance", p, &csv_fields(p)?)?,
        };
    }
    for raw in attest {
        let fields = csv_fields(raw)?;
        let kind = fields
            .iter()
            .find_map(|f| f.strip_prefix("type="))
            .ok_or_else(|| usage(format!("invalid --attest {raw:?}: want type=…")))?;
        match kind {
            "provenance" => out = provenance_attrs("--attest", raw, &fields)?,
            "sbom" if fields.iter().any(|f| f == "disabled=true") => {}
            "sbom" => return Err(unsupported(&format!("--attest {raw}"))),
            other => {
                return Err(usage(format!(
                    "invalid --attest {raw:?}: unknown attestation type {other:?} (want provenance or sbom)"
                )))
            }
        }
    }
    Ok(out)
}

fn provenance_attrs(flag: &str, raw: &str, fields: &[String]) -> Result<Option<Provenance>> {
    let mut p = Provenance {
        mode: ProvenanceMode::Min,
        builder_id: None,
    };
    for field in fields {
        let (k, v) = field.split_once('=').ok_or_else(|| {
            usage(format!(
                "invalid {flag} {raw:?}: {field:?} is not KEY=VALUE"
            ))
        })?;
        match (k.trim(), v.trim()) {
            ("type", _) => {}
            ("mode", "min") => p.mode = ProvenanceMode::Min,
            ("mode", "max") => p.mode = ProvenanceMode::Max,
            ("builder-id", id) => p.builder_id = Some(id.to_string()),
            ("disabled", v) => match is_true(v) {
                Some(true) => return Ok(None),
                Some(false) => {}
                None => return Err(usage(format!("invalid {flag} {raw:?}: disabled={v:?}: want true|false"))),
            },
            // Inline is the only place strata puts attestations.
            ("inline-only", v) if is_true(v).is_some() => {}
            ("version", "v0.2") => {}
            (k, v) => {
                return Err(usage(format!(
                    "invalid {flag} {raw:?}: {k}={v} is not supported (mode=min|max, builder-id=URL, inline-only=true|false, version=v0.2, disabled=true)"
                )))
            }
        }
    }
    Ok(Some(p))
}

/// What the predicate says about one build.
pub struct BuildFacts<'a> {
    pub build_args: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
    /// The Dockerfile's path and, in max mode, its bytes.
    pub dockerfile: &'a Path,
    pub materials: &'a [(Reference, Digest)],
    /// The platform the image is for (`invocation.environment.platform` and the purls').
    pub platform: &'a Platform,
    pub started: String,
    pub finished: String,
}

/// The purl BuildKit names images by: `pkg:docker/NAME@TAG?platform=OS%2FARCH`.
fn purl(reference: &Reference, platform: &str) -> String {
    let version = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    format!(
        "pkg:docker/{}/{}@{version}?platform={}",
        reference.registry,
        reference.repository,
        platform.replace('/', "%2F")
    )
}

/// The in-toto statement about `subject` (the pushed image manifest) named `name`.
pub fn statement(
    provenance: &Provenance,
    name: &Reference,
    subject: &Digest,
    facts: &BuildFacts,
) -> serde_json::Value {
    let platform = facts.platform.to_string();
    serde_json::json!({
        "_type": STATEMENT_TYPE,
        "predicateType": PREDICATE_TYPE,
        "subject": [{
            "name": purl(name, &platform),
            "digest": { subject.algorithm(): subject.hex() },
        }],
        "predicate": predicate(provenance, facts),
    })
}

/// The SLSA v0.2 provenance predicate of a build: builder, build type, invocation
/// (arguments, Dockerfile name, platform), materials, and `metadata` (times,
/// completeness; the Dockerfile itself in max mode).
pub fn predicate(provenance: &Provenance, facts: &BuildFacts) -> serde_json::Value {
    let platform = facts.platform.to_string();
    let mut args = serde_json::Map::new();
    for (k, v) in facts.build_args {
        args.insert(format!("build-arg:{k}"), v.clone().into());
    }
    if let Some(target) = facts.target {
        args.insert("target".into(), target.into());
    }
    let materials: Vec<serde_json::Value> = facts
        .materials
        .iter()
        .map(|(r, d)| {
            serde_json::json!({
                "uri": purl(r, &platform),
                "digest": { d.algorithm(): d.hex() },
            })
        })
        .collect();
    let entry_point = facts
        .dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".to_string());
    let mut predicate = serde_json::json!({
        "builder": { "id": provenance.builder_id.clone().unwrap_or_default() },
        "buildType": BUILD_TYPE,
        "materials": materials,
        "invocation": {
            "configSource": { "entryPoint": entry_point },
            "parameters": {
                "frontend": "dockerfile.v0",
                "args": args,
                "locals": [{ "name": "context" }, { "name": "dockerfile" }],
            },
            "environment": { "platform": platform },
        },
        "metadata": {
            "buildStartedOn": facts.started,
            "buildFinishedOn": facts.finished,
            "completeness": {
                "parameters": provenance.mode == ProvenanceMode::Max,
                "environment": true,
                "materials": false,
            },
            "reproducible": false,
            "https://mobyproject.org/buildkit@v1#metadata": {},
        },
    });
    if provenance.mode == ProvenanceMode::Max {
        if let Ok(data) = std::fs::read(facts.dockerfile) {
            predicate["metadata"]["https://mobyproject.org/buildkit@v1#metadata"] = serde_json::json!({
                "source": {
                    "infos": [{
                        "filename": entry_point,
                        "language": "Dockerfile",
                        "data": base64::engine::general_purpose::STANDARD.encode(&data),
                    }],
                },
            });
        }
    }
    predicate
}

/// Pushes the attestation of the image already pushed as `tag` (manifest `pushed`), then
/// an index listing both under `tag`. Returns the index's descriptor.
pub fn push_attested(
    store: &Store,
    registry: &Registry,
    tag: &Reference,
    pushed: &Digest,
    platform: &Platform,
    statement: &serde_json::Value,
    annotations: &crate::image_index::IndexAnnotations,
) -> Result<Descriptor> {
    let mut by_digest = tag.clone();
    by_digest.digest = Some(pushed.clone());
    let image = fetch_pushed(registry, tag, &by_digest)?;
    let image = Descriptor {
        media_type: image.media_type,
        digest: image.digest,
        size: image.bytes.len() as u64,
    };
    let attestation = push_attestation(store, registry, tag, &image.digest, statement)?;
    let mut index = index_json(&[(image, platform.clone())], &[attestation]);
    annotations.apply(&mut index);
    push_index(store, registry, tag, &index)
}

/// An attestation manifest pushed by digest: its descriptor and the image manifest it is
/// about.
pub struct PushedAttestation {
    pub manifest: Descriptor,
    pub subject: Digest,
}

/// Pushes `statement` about the image manifest `subject` into `tag`'s repository as an
/// attestation manifest (by digest; the index that lists it is pushed by the caller).
pub fn push_attestation(
    store: &Store,
    registry: &Registry,
    tag: &Reference,
    subject: &Digest,
    statement: &serde_json::Value,
) -> Result<PushedAttestation> {
    let lease: Lease = store.lease(std::time::Duration::from_secs(3600))?;
    let statement_bytes = serde_json::to_vec(statement).expect("a statement serializes");
    let statement_desc = store.put_blob(&lease, &statement_bytes, IN_TOTO_MEDIA_TYPE)?;
    let config = serde_json::json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [statement_desc.digest.to_string()] },
    });
    let config_desc = store.put_blob(
        &lease,
        &serde_json::to_vec(&config).expect("a config serializes"),
        media_types::OCI_CONFIG,
    )?;
    let attestation = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config_desc,
        "layers": [{
            "mediaType": IN_TOTO_MEDIA_TYPE,
            "digest": statement_desc.digest.to_string(),
            "size": statement_desc.size,
            "annotations": { PREDICATE_TYPE_ANNOTATION: PREDICATE_TYPE },
        }],
    });
    let attestation_bytes = Bytes::from(serde_json::to_vec(&attestation).expect("serializes"));
    let manifest = Descriptor {
        media_type: media_types::OCI_MANIFEST.to_string(),
        digest: Digest::sha256_of(&attestation_bytes),
        size: attestation_bytes.len() as u64,
    };
    let mut attestation_ref = tag.clone();
    attestation_ref.tag = None;
    attestation_ref.digest = Some(manifest.digest.clone());
    registry
        .runtime()?
        .block_on(push_manifest(
            registry.client()?,
            store,
            &attestation_ref,
            &[config_desc.clone(), statement_desc],
            attestation_bytes,
            media_types::OCI_MANIFEST,
            &PushOptions::default(),
        ))
        .map_err(|source| push_error(tag, source))?;
    Ok(PushedAttestation {
        manifest,
        subject: subject.clone(),
    })
}

/// An image index as BuildKit writes one with attestations: every image (with its
/// platform), then every attestation manifest (platform `unknown/unknown`, annotated with
/// the image manifest it is about).
pub fn index_json(images: &[PushedImage], attestations: &[PushedAttestation]) -> serde_json::Value {
    let mut index = crate::image_index::index_json(images);
    if !attestations.is_empty() {
        // Attestation manifests are OCI manifests: their index is an OCI index.
        index["mediaType"] = media_types::OCI_INDEX.into();
    }
    let entries = index["manifests"]
        .as_array_mut()
        .expect("an index has manifests");
    for a in attestations {
        entries.push(serde_json::json!({
            "mediaType": a.manifest.media_type,
            "digest": a.manifest.digest.to_string(),
            "size": a.manifest.size,
            "annotations": {
                REFERENCE_DIGEST_ANNOTATION: a.subject.to_string(),
                REFERENCE_TYPE_ANNOTATION: ATTESTATION_MANIFEST,
            },
            "platform": { "architecture": "unknown", "os": "unknown" },
        }));
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_flags_parse_as_build_push_action_passes_them() {
        let p = |prov: Option<&str>, attest: &[&str]| {
            let attest: Vec<String> = attest.iter().map(|s| s.to_string()).collect();
            parse_attestations(prov, None, &attest)
        };
        assert_eq!(p(Some("false"), &[]).unwrap(), None);
        assert_eq!(p(None, &["type=provenance,disabled=true"]).unwrap(), None);
        let max = p(
            None,
            &["type=provenance,mode=max,builder-id=https://github.com/o/r/actions/runs/1"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(max.mode, ProvenanceMode::Max);
        assert_eq!(
            max.builder_id.as_deref(),
            Some("https://github.com/o/r/actions/runs/1")
        );
        let min = p(
            None,
            &["type=provenance,mode=min,inline-only=true,builder-id=https://x/1"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(min.mode, ProvenanceMode::Min);
        assert_eq!(
            p(Some("true"), &[]).unwrap().unwrap().mode,
            ProvenanceMode::Min
        );
        assert_eq!(
            p(Some("mode=max"), &[]).unwrap().unwrap().mode,
            ProvenanceMode::Max
        );
        for bad in [
            "type=provenance,mode=all",
            "type=provenance,version=v1",
            "type=nope",
        ] {
            assert!(p(None, &[bad]).unwrap_err().is_usage(), "{bad}");
        }
        let sbom = parse_attestations(None, Some("true"), &[]).unwrap_err();
        assert!(sbom.to_string().contains("not supported yet"), "{sbom}");
        assert!(!sbom.is_usage(), "exit 1, as a missing feature");
    }
}
