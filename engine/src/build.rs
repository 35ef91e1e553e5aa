//! `strata build` past its flags: the builder run with the [`Registry`] behind its
//! [`Remote`] (base images, `--cache-from` records), then `--iidfile`, the `--cache-to`
//! exports, the `--output` files and directories and `--push`, in docker's order.
//!
//! The path of a `--cache-from REF`: the binary parses it ([`crate::parse_cache_from`]) and
//! hands it here in a [`BuildRequest`]; [`build`] imports its manifest into a
//! [`RegistryCache`]; the builder asks that cache (as `Remote::cache`) for each step key
//! its local cache misses, and a hit's layer download runs on the Registry's runtime
//! while later steps are keyed; the builder waits for the downloads before it needs a
//! layer's content.

use std::path::PathBuf;

use builder::progress::Reporter;
use builder::remote::{error_chain, Remote, RemoteError};
use builder::remote_cache::CacheSource;
use builder::solve::{BuildOptions, BuildResult};
use store::{Digest, Reference, Store};

use crate::cache_flags::CacheTo;
use crate::error::{EngineError, Result};
use crate::outputs::Output;
use crate::provenance::{self, BuildFacts, Provenance};
use crate::registry::Registry;
use crate::remote_cache::RegistryCache;

/// One `strata build` beyond what the builder itself takes.
pub struct BuildRequest {
    pub options: BuildOptions,
    /// `--cache-from`, in order (earlier caches win).
    pub cache_from: Vec<Reference>,
    pub cache_to: Vec<CacheTo>,
    /// `--iidfile`: written with the image ID as soon as the image exists.
    pub iidfile: Option<PathBuf>,
    /// `--push`: push every tag once the image is built.
    pub push: bool,
    /// `--output`: the archives and directories to write once the image is built.
    pub outputs: Vec<Output>,
    /// `--provenance` / `--attest type=provenance`: pushed with the image.
    pub provenance: Option<Provenance>,
    /// `--annotation index:…` / `manifest-descriptor:…`: on the pushed index (of several
    /// platforms, or of the image and its provenance).
    pub index_annotations: crate::image_index::IndexAnnotations,
}

/// A finished build and what its push made of it.
pub struct Built {
    /// The image of the first platform (the only one of a single-platform build).
    pub result: BuildResult,
    /// The image index a build for several platforms stored under its tags.
    pub index: Option<store::Descriptor>,
    /// The image index pushed under the tags when a provenance attestation went with the
    /// image (BuildKit reports that index as `containerimage.digest`).
    pub pushed_index: Option<store::Descriptor>,
    /// When the build started and when its image was written (RFC 3339): the
    /// provenance's `buildStartedOn` and `buildFinishedOn`.
    pub started: String,
    pub finished: String,
}

/// The builder's view of the registries of one build.
struct BuildRemote<'r> {
    registry: &'r Registry,
    store: &'r Store,
    cache: Option<RegistryCache<'r>>,
}

impl Remote for BuildRemote<'_> {
    fn fetch_base(
        &self,
        reference: &Reference,
        platform: &store::platform::Platform,
    ) -> std::result::Result<Digest, RemoteError> {
        Ok(self
            .registry
            .pull(self.store, reference, Some(platform.clone()))?)
    }

    fn cache(&self) -> Option<&dyn CacheSource> {
        self.cache.as_ref().map(|c| c as &dyn CacheSource)
    }
}

/// What a build for several platforms cannot do, refused before it starts. The images
/// are stored as one image index under the tags (and pushed with `--push`).
fn check_multi_platform(request: &BuildRequest) -> Result<()> {
    if request.options.platforms.len() < 2 {
        return Ok(());
    }
    let is_docker_archive = |o: &Output| {
        matches!(
            o,
            Output::Archive {
                format: store::archive::ArchiveFormat::Docker,
                ..
            }
        )
    };
    if request.outputs.iter().any(is_docker_archive) {
        // BuildKit's docker exporter refuses an index with these words.
        return Err(EngineError::Usage(
            "docker exporter does not currently support exporting manifest lists".to_string(),
        ));
    }
    if request.push && request.options.tags.is_empty() {
        return Err(EngineError::Usage(
            "--push needs a name: add -t REGISTRY/NAME:TAG".to_string(),
        ));
    }
    Ok(())
}

/// What the provenance of `result` says about its build.
fn facts<'a>(
    request: &'a BuildRequest,
    result: &'a BuildResult,
    dockerfile: &'a std::path::Path,
    times: (&str, &str),
) -> BuildFacts<'a> {
    BuildFacts {
        build_args: &request.options.build_args,
        target: request.options.target.as_deref(),
        dockerfile,
        materials: &result.materials,
        platform: &result.platform,
        started: times.0.to_string(),
        finished: times.1.to_string(),
    }
}

/// The end of a build for several platforms (see [`check_multi_platform`]): the index of
/// the platforms' images is stored under the tags, the outputs get every platform, and
/// with `--push` every tag gets the platforms' images and their index, with one provenance
/// attestation per image when asked for. The iidfile names the pushed index, else the
/// stored one.
fn finish_multi_platform(
    store: &Store,
    registry: &Registry,
    request: &BuildRequest,
    mut results: Vec<BuildResult>,
    started: String,
    finished: String,
) -> Result<Built> {
    let index = crate::image_index::store_index(
        store,
        &request.options.tags,
        &results,
        &request.index_annotations,
    )?;
    crate::outputs::export_platforms(
        store,
        &results,
        &index.digest,
        &request.index_annotations.index_descriptor,
        &request.outputs,
    )?;
    let dockerfile = request.options.dockerfile_path();
    let manifests: Vec<(store::Digest, store::platform::Platform)> = results
        .iter()
        .map(|r| (r.manifest.clone(), r.platform.clone()))
        .collect();
    let mut pushed_index = None;
    if request.push {
        for tag in &request.options.tags {
            let images = crate::image_index::push_images(store, registry, tag, &manifests)?;
            let mut attestations = Vec::new();
            if let Some(p) = &request.provenance {
                for ((image, _), result) in images.iter().zip(&results) {
                    let facts = facts(request, result, &dockerfile, (&started, &finished));
                    let statement = provenance::statement(p, tag, &image.digest, &facts);
                    attestations.push(provenance::push_attestation(
                        store,
                        registry,
                        tag,
                        &image.digest,
                        &statement,
                    )?);
                }
            }
            let mut pushed = provenance::index_json(&images, &attestations);
            request.index_annotations.apply(&mut pushed);
            pushed_index = Some(crate::image_index::push_index(
                store, registry, tag, &pushed,
            )?);
        }
    }
    if let Some(path) = &request.iidfile {
        let digest = pushed_index.as_ref().unwrap_or(&index).digest.to_string();
        std::fs::write(path, digest).map_err(|source| EngineError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Built {
        result: results.remove(0),
        index: Some(index),
        pushed_index,
        started,
        finished,
    })
}

/// Pushes every `--cache-to type=registry` cache: one cache manifest per reference whose
/// records cover every platform built (their keys differ by platform; a step every
/// platform shares, as in a `FROM --platform=$BUILDPLATFORM` stage, is one record).
fn export_caches(
    cache: Option<&RegistryCache>,
    request: &BuildRequest,
    results: &[BuildResult],
) -> Result<()> {
    for to in &request.cache_to {
        let (Some(reference), Some(cache)) = (&to.reference, cache) else {
            continue;
        };
        match cache.export(results, reference, to.mode) {
            Err(e) if to.ignore_error => eprintln!("WARNING: {}", error_chain(&e)),
            other => other?,
        }
    }
    Ok(())
}

/// Builds, tags, writes the iidfile, exports the cache and pushes. `--push` without a
/// tag is a usage error, reported after the build as docker does.
pub fn build(
    store: &Store,
    registry: &Registry,
    request: &BuildRequest,
    reporter: &mut dyn Reporter,
) -> Result<Built> {
    check_multi_platform(request)?;
    let started = store::archive::import::now_rfc3339();
    let exports_to_registry = request.cache_to.iter().any(|t| t.reference.is_some());
    let cache = if request.cache_from.is_empty() && !exports_to_registry {
        None
    } else {
        let mut cache = RegistryCache::new(registry, store);
        if !request.options.no_cache {
            for reference in &request.cache_from {
                cache.import(reference);
            }
        }
        Some(cache)
    };
    let remote = BuildRemote {
        registry,
        store,
        cache,
    };
    let mut results = builder::solve::build(store, &request.options, &remote, reporter)?;
    let finished = store::archive::import::now_rfc3339();
    if results.len() > 1 {
        export_caches(remote.cache.as_ref(), request, &results)?;
        return finish_multi_platform(store, registry, request, results, started, finished);
    }
    if let Some(path) = &request.iidfile {
        std::fs::write(path, results[0].image_id.to_string()).map_err(|source| {
            EngineError::Write {
                path: path.clone(),
                source,
            }
        })?;
    }
    export_caches(remote.cache.as_ref(), request, &results)?;
    let result = results.remove(0);
    crate::outputs::export(store, &result, &request.outputs)?;
    if request.push {
        if request.options.tags.is_empty() {
            return Err(EngineError::Usage(
                "--push needs a name: add -t REGISTRY/NAME:TAG".to_string(),
            ));
        }
        let dockerfile = request.options.dockerfile_path();
        let mut pushed_index = None;
        for tag in &request.options.tags {
            let pushed = registry.push(store, tag)?;
            if let Some(p) = &request.provenance {
                let facts = facts(request, &result, &dockerfile, (&started, &finished));
                let statement = provenance::statement(p, tag, &pushed, &facts);
                pushed_index = Some(provenance::push_attested(
                    store,
                    registry,
                    tag,
                    &pushed,
                    &result.platform,
                    &statement,
                    &request.index_annotations,
                )?);
            }
        }
        return Ok(Built {
            result,
            index: None,
            pushed_index,
            started,
            finished,
        });
    }
    Ok(Built {
        result,
        index: None,
        pushed_index: None,
        started,
        finished,
    })
}
