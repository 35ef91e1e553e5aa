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

/// What a build for several platforms cannot do (yet), refused before it starts. The
/// images are stored as one image index under the tags (and pushed with `--push`).
fn check_multi_platform(request: &BuildRequest) -> Result<()> {
    let platforms = &request.options.platforms;
    if platforms.len() < 2 {
        return Ok(());
    }
    let platforms: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
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
    let unsupported = if !request.cache_to.is_empty() {
        Some("--cache-to with several platforms is not supported yet")
    } else if request.provenance.is_some() {
        Some("provenance attestations with several platforms are not supported yet")
    } else {
        None
    };
    if let Some(why) = unsupported {
        return Err(EngineError::Usage(format!(
            "--platform {}: {why}",
            platforms.join(",")
        )));
    }
    if request.push && request.options.tags.is_empty() {
        return Err(EngineError::Usage(
            "--push needs a name: add -t REGISTRY/NAME:TAG".to_string(),
        ));
    }
    Ok(())
}

/// The end of a build for several platforms (see [`check_multi_platform`]): the index of
/// the platforms' images is stored under the tags, then the iidfile (the index digest), the
/// outputs (every platform) and the push of every tag.
fn finish_multi_platform(
    store: &Store,
    registry: &Registry,
    request: &BuildRequest,
    mut results: Vec<BuildResult>,
    started: String,
) -> Result<Built> {
    let finished = store::archive::import::now_rfc3339();
    let index = crate::image_index::store_index(store, &request.options.tags, &results)?;
    if let Some(path) = &request.iidfile {
        std::fs::write(path, index.digest.to_string()).map_err(|source| EngineError::Write {
            path: path.clone(),
            source,
        })?;
    }
    crate::outputs::export_platforms(store, &results, &index.digest, &request.outputs)?;
    let mut pushed_index = None;
    if request.push {
        for tag in &request.options.tags {
            pushed_index = Some(crate::image_index::push(
                store,
                registry,
                tag,
                &results,
                &request.index_annotations,
            )?);
        }
    }
    Ok(Built {
        result: results.remove(0),
        index: Some(index),
        pushed_index,
        started,
        finished,
    })
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
    if results.len() > 1 {
        return finish_multi_platform(store, registry, request, results, started);
    }
    let result = results.remove(0);
    let finished = store::archive::import::now_rfc3339();
    if let Some(path) = &request.iidfile {
        std::fs::write(path, result.image_id.to_string()).map_err(|source| EngineError::Write {
            path: path.clone(),
            source,
        })?;
    }
    for to in &request.cache_to {
        let (Some(reference), Some(cache)) = (&to.reference, &remote.cache) else {
            continue;
        };
        match cache.export(&result, reference, to.mode) {
            Err(e) if to.ignore_error => eprintln!("WARNING: {}", error_chain(&e)),
            other => other?,
        }
    }
    crate::outputs::export(store, &result, &request.outputs)?;
    if request.push {
        if request.options.tags.is_empty() {
            return Err(EngineError::Usage(
                "--push needs a name: add -t REGISTRY/NAME:TAG".to_string(),
            ));
        }
        let mut pushed_index = None;
        for tag in &request.options.tags {
            let pushed = registry.push(store, tag)?;
            if let Some(p) = &request.provenance {
                let dockerfile = request
                    .options
                    .dockerfile
                    .clone()
                    .unwrap_or_else(|| request.options.context.join("Dockerfile"));
                let facts = BuildFacts {
                    build_args: &request.options.build_args,
                    target: request.options.target.as_deref(),
                    dockerfile: &dockerfile,
                    materials: &result.materials,
                    started: started.clone(),
                    finished: finished.clone(),
                };
                let statement = provenance::statement(p, tag, &pushed, &facts);
                pushed_index = Some(provenance::push_attested(
                    store,
                    registry,
                    tag,
                    &pushed,
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
