//! `--build-context NAME=VALUE`: named contexts, resolved as BuildKit's Dockerfile front end
//! resolves them.
//!
//! - A stage called NAME is replaced by the context: its instructions do not run, and
//!   `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME` get the context.
//! - `FROM NAME` and `COPY --from=NAME` (`RUN --mount=from=NAME`) where NAME is no stage
//!   take the context instead of the image NAME.
//! - Names are compared as image names (`alpine`, `alpine:latest` and
//!   `docker.io/library/alpine` are one name); `scratch` and `context` are never named
//!   contexts.
//!
//! A directory context becomes one layer holding its files (0:0, `.dockerignore` of the
//! directory applied), keyed by their content as COPY keys the main context: FROM gets that
//! layer and an empty config, COPY copies from it. An image context is an image as FROM
//! would use it, config and all.

use std::path::PathBuf;

use store::{Digest, Reference};

use super::cache_hit::{add_layer, cache_hit, Origin};
use super::state::{BuildRun, StageResult, StageState};
use super::{BuildError, Result, StepError};
use crate::cache::CacheKey;
use crate::copy::{self, CopyOptions, DirTree};
use crate::dockerfile::Span;
use crate::dockerignore::DockerIgnore;
use crate::image::ImageConfigFile;
use crate::layers::commit_layer;

/// What a named context is, once the caller has made it local.
#[derive(Debug, Clone)]
pub enum NamedContext {
    /// A directory (the user's, or a copy of a git repository or tarball URL).
    Dir(PathBuf),
    /// `docker-image://REF`: from the store, else pulled like a FROM image.
    Image(Reference),
    /// An image already in the store by manifest digest (`oci-layout://`, loaded before
    /// the build); `source` is what the user wrote, for messages.
    Manifest { manifest: Digest, source: String },
}

/// The key `--build-context NAME=…` and a Dockerfile name are compared by: the familiar
/// image name without `:latest` (BuildKit's and buildx's rule). `None` for a name that is
/// not an image name, and for `scratch` and `context`.
pub fn context_key(name: &str) -> Option<String> {
    if name.eq_ignore_ascii_case("scratch") || name.eq_ignore_ascii_case("context") {
        return None;
    }
    let r = Reference::parse(name).ok()?;
    let familiar = r.familiar();
    Some(
        familiar
            .strip_suffix(":latest")
            .map_or(familiar.clone(), str::to_string),
    )
}

impl BuildRun<'_> {
    /// The named context `name` refers to, if the build has one.
    pub fn named_context(&self, name: &str) -> Option<&NamedContext> {
        if self.build.opts.named_contexts.is_empty() {
            return None;
        }
        self.build.opts.named_contexts.get(&context_key(name)?)
    }

    /// A named context as a finished stage: its layers and config, keyed by its content
    /// (a directory) or manifest (an image). `name` is how the Dockerfile calls it (for
    /// BuildKit's `[context NAME]` progress line). Errors name the instruction at `span`.
    pub fn named_context_result(
        &mut self,
        name: &str,
        context: &NamedContext,
        span: Span,
    ) -> Result<StageResult> {
        let location = &self.location(span.start);
        let platform = format!("linux/{}", crate::image::host_architecture());
        let from_image = |run: &Self, manifest: Digest, image: store::ImageRecord| {
            let bytes = run.build.store.read_blob(&image.config.digest)?;
            let config: ImageConfigFile =
                serde_json::from_slice(&bytes).map_err(|source| BuildError::Step {
                    location: location.to_string(),
                    span,
                    source: Box::new(StepError::NamedContextConfig {
                        manifest: manifest.clone(),
                        source,
                    }),
                })?;
            Ok(StageResult {
                layers: image.layers,
                config,
                key: CacheKey::for_base(manifest.as_str(), &platform),
            })
        };
        match context {
            NamedContext::Image(reference) => {
                let (manifest, image) =
                    self.leased_image(reference, self.build.platform, location)?;
                from_image(self, manifest, image)
            }
            NamedContext::Manifest { manifest, source } => {
                self.build.lease.add_digest(manifest)?;
                let image = self
                    .build
                    .store
                    .image(manifest)
                    .map_err(|e| BuildError::Step {
                        location: location.to_string(),
                        span,
                        source: Box::new(StepError::NamedContextImage {
                            name: source.to_string(),
                            source: e,
                        }),
                    })?;
                for d in std::iter::once(&image.config.digest)
                    .chain(image.layers.iter().map(|l| &l.blob.digest))
                {
                    self.build.lease.add_digest(d)?;
                }
                from_image(self, manifest.clone(), image)
            }
            NamedContext::Dir(dir) => {
                self.note(&format!("[context {name}] load from client"));
                self.dir_context(dir, location, span)
            }
        }
    }

    /// A directory as one layer of its files, cached by their content.
    fn dir_context(
        &mut self,
        dir: &std::path::Path,
        location: &str,
        span: Span,
    ) -> Result<StageResult> {
        let e = |source: StepError| BuildError::Step {
            location: location.to_string(),
            span,
            source: Box::new(source),
        };
        let ignore = DockerIgnore::load(dir, None).map_err(|source| {
            e(StepError::NamedContextIgnore {
                path: dir.join(".dockerignore"),
                source,
            })
        })?;
        let dir_error = |source| {
            e(StepError::NamedContextDir {
                dir: dir.to_path_buf(),
                source,
            })
        };
        let excluded = |rel: &str| ignore.is_hidden(dir, rel);
        let tree = DirTree {
            root: dir.to_path_buf(),
            is_excluded: &excluded,
        };
        let opts = CopyOptions {
            epoch: self.build.opts.source_date_epoch,
            ..CopyOptions::default()
        };
        let plan = copy::plan(&tree, &[".".to_string()], "/", true, &opts).map_err(dir_error)?;
        let fingerprint = plan
            .fingerprint(&mut super::context::sha256_file)
            .map_err(dir_error)?;
        let key = CacheKey::for_step(
            &CacheKey::for_base("scratch", ""),
            "named-context-dir",
            &[],
            Some(&fingerprint),
        );
        let mut config = ImageConfigFile::default();
        config.config.working_dir = "/".to_string();
        let mut state = StageState {
            layers: Vec::new(),
            config,
            key: key.clone(),
            args: Vec::new(),
            declared_args: Vec::new(),
            cmd_set_here: false,
            escape: self.build.dockerfile.escape,
        };
        let (layer, origin) = match cache_hit(self, &key)? {
            Some(hit) => hit,
            None => {
                let layer = commit_layer(
                    self.build.store,
                    self.build.lease,
                    |w: &mut dyn std::io::Write| plan.write_tar(w).map(drop),
                )
                .map_err(|x| e(StepError::Layer(x)))?;
                (layer, Origin::Built)
            }
        };
        add_layer(
            self,
            &mut state,
            key,
            layer,
            "COPY . / # named context",
            origin,
        )?;
        Ok(StageResult {
            layers: state.layers,
            config: state.config,
            key: state.key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keys_compare_as_image_names() {
        let cases = [
            ("alpine", Some("alpine")),
            ("alpine:latest", Some("alpine")),
            ("docker.io/library/alpine", Some("alpine")),
            ("alpine:3.20", Some("alpine:3.20")),
            ("base", Some("base")),
            ("localhost:5000/app", Some("localhost:5000/app")),
            ("scratch", None),
            ("context", None),
            ("Upper", None),
        ];
        for (name, want) in cases {
            assert_eq!(context_key(name).as_deref(), want, "name {name:?}");
        }
    }
}
