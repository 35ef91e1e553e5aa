//! The state of a build as its stages run: [`Build`] is what every stage of one build shares
//! (store, options, remote, Dockerfile, lease, meta ARGs, progress, stop signal), a
//! [`BuildRun`] is one stage being built against it, [`StageState`] what that stage carries
//! from step to step, and [`StageResult`] what it leaves for later stages and the export.

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use store::platform::Platform;
use store::{LayerRef, Lease, Reference, Store};

use super::{BuildError, BuildOptions, Result, StepError};
use crate::cache::CacheKey;
use crate::dockerfile::{Dockerfile, Instruction};
use crate::exec;
use crate::image::{ImageConfigFile, DEFAULT_PATH};
use crate::progress::{Reporter, StepEnd, StepInfo};
use crate::remote::Remote;
use crate::remote_cache::RemoteRecord;

/// A finished stage: what later stages (`COPY --from`, `FROM stage`) and the export need.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub layers: Vec<LayerRef>,
    pub config: ImageConfigFile,
    pub key: CacheKey,
}

/// The state of the stage being built.
pub struct StageState {
    pub layers: Vec<LayerRef>,
    pub config: ImageConfigFile,
    pub key: CacheKey,
    /// ARGs declared in this stage and their values, in declaration order.
    pub args: Vec<(String, String)>,
    /// Every ARG declared in this stage, in order, with its value if it has one: what
    /// BuildKit shows in front of a RUN's history (`RUN |2 A=1 B= /bin/sh -c …`).
    pub declared_args: Vec<(String, Option<String>)>,
    /// Whether this stage set CMD itself (ENTRYPOINT then keeps it; an inherited CMD is
    /// reset by ENTRYPOINT, as docker does).
    pub cmd_set_here: bool,
    /// The Dockerfile's escape character (`\\` or the `# escape=` one): words are expanded
    /// with it.
    pub escape: char,
}

impl StageState {
    /// The variables words are expanded with: ARGs, then ENV on top (ENV wins, as in docker).
    pub fn expand_env(&self) -> Vec<(String, String)> {
        let mut env = self.args.clone();
        for kv in &self.config.config.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// `|N K=V ... ` for a RUN's history: each declared ARG with ENV's value when ENV sets
    /// the name, else the ARG's (empty without one); nothing when the stage declares none.
    pub fn run_history_args(&self) -> String {
        if self.declared_args.is_empty() {
            return String::new();
        }
        let mut text = format!("|{}", self.declared_args.len());
        for (k, v) in &self.declared_args {
            let value = self
                .config
                .config
                .env_get(k)
                .map(str::to_string)
                .or_else(|| v.clone())
                .unwrap_or_default();
            text.push_str(&format!(" {k}={value}"));
        }
        text.push(' ');
        text
    }

    /// The environment of a RUN: the config's ENV plus ARGs that ENV does not override,
    /// with docker's default PATH when none is set.
    pub fn run_env(&self) -> Vec<String> {
        let mut env = self.config.config.env.clone();
        for (k, v) in &self.args {
            if self.config.config.env_get(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        env
    }
}

/// What every stage of one build shares. Stages may run side by side on threads of their
/// own (see `schedule`); each gets a [`BuildRun`] from [`Build::stage_run`].
pub struct Build<'a> {
    pub store: &'a Store,
    pub opts: &'a BuildOptions,
    pub remote: &'a dyn Remote,
    pub dockerfile: &'a Dockerfile,
    pub lease: &'a Lease,
    /// Values of the ARGs before the first FROM and the automatic platform ARGs
    /// (`resolve_meta_args`; the build sets them before the first stage).
    pub meta_args: &'a [(String, String)],
    /// The platform this solve builds for (`TARGETPLATFORM`); a stage's own is
    /// `FROM --platform`'s, else this one.
    pub platform: &'a Platform,
    /// Shown in front of each stage's name in the progress when several platforms build.
    pub label: Option<&'a str>,
    /// The build's [`Progress`], behind a trait object so that it may outlive the
    /// per-platform state (leases, meta ARGs) of builds that share it.
    pub progress: &'a (dyn StepProgress + Sync + 'a),
    /// Fired when a stage fails: the other stages stop at their next step, and their
    /// running RUN steps are killed.
    pub stop: &'a exec::Stopper,
    /// Per stage: whether the image holds its layers (the target and the stages it is
    /// `FROM`). A RUN of another stage records its layer unwritten (docs/design.md §4.8).
    pub exported: &'a [bool],
}

impl<'a> Build<'a> {
    pub fn stage_run(&'a self) -> BuildRun<'a> {
        BuildRun {
            build: self,
            step_number: 0,
            cached: 0,
            is_cache_ignored: false,
            platform: self.platform.clone(),
            writes_layers: true,
            built: Vec::new(),
            materials: RefCell::new(Vec::new()),
        }
    }
}

/// The progress of one build, shared by its stages: `#N` numbers steps in the order they
/// start over the whole build, as BuildKit numbers vertices, and the reporter sees one call
/// at a time (plain output of stages running together interleaves line by line).
pub struct Progress<'a> {
    state: Mutex<ProgressState<'a>>,
}

struct ProgressState<'a> {
    reporter: &'a mut dyn Reporter,
    step_number: usize,
}

impl<'a> Progress<'a> {
    pub fn new(reporter: &'a mut dyn Reporter) -> Progress<'a> {
        Progress {
            state: Mutex::new(ProgressState {
                reporter,
                step_number: 0,
            }),
        }
    }

    /// Runs `f` with the reporter (for work after the stages: the export).
    pub fn with_reporter<T>(&self, f: impl FnOnce(&mut dyn Reporter) -> T) -> T {
        f(&mut *self.lock().reporter)
    }

    fn lock(&self) -> MutexGuard<'_, ProgressState<'a>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the stages of a build report as they go (implemented by [`Progress`]).
pub trait StepProgress {
    /// Number the next step and report that it started.
    fn start(&self, stage: &str, index: usize, total: usize, text: &str) -> StepInfo;
    fn finished(&self, info: &StepInfo, end: StepEnd);
    fn output(&self, info: &StepInfo, line: &[u8]);
    fn note(&self, text: &str);
}

impl StepProgress for Progress<'_> {
    fn start(&self, stage: &str, index: usize, total: usize, text: &str) -> StepInfo {
        let mut state = self.lock();
        state.step_number += 1;
        let info = StepInfo {
            number: state.step_number,
            stage: stage.to_string(),
            index,
            total,
            text: one_line(text),
        };
        state.reporter.step_started(&info);
        info
    }

    fn finished(&self, info: &StepInfo, end: StepEnd) {
        self.lock().reporter.step_finished(info, end);
    }

    fn output(&self, info: &StepInfo, line: &[u8]) {
        self.lock().reporter.step_output(info, line);
    }

    fn note(&self, text: &str) {
        self.lock().reporter.note(text);
    }
}

/// One stage being built: the build it belongs to, and this stage's step counters.
pub struct BuildRun<'a> {
    pub build: &'a Build<'a>,
    /// The `#N` of this stage's latest step (config-only instructions show it too).
    pub(super) step_number: usize,
    /// Steps of this stage whose result came from the cache.
    pub cached: usize,
    /// This stage is named by `--no-cache-filter`: its steps run again (see
    /// [`CacheKey::for_rebuilt`](crate::cache::CacheKey::for_rebuilt)).
    pub is_cache_ignored: bool,
    /// The platform of the stage being built: `FROM --platform`'s, else the build's. A
    /// `COPY --from=IMAGE` reads the image for it, as BuildKit does.
    pub platform: Platform,
    /// Whether this stage's layers are written as blobs when built or hit: false for a
    /// stage the build does not export, whose RUN layers are recorded unwritten and made
    /// only when something needs their bytes (`crate::unwritten`, docs/design.md §4.8).
    pub writes_layers: bool,
    /// The cache record of every layer step of this stage (for `--cache-to`).
    built: Vec<RemoteRecord>,
    /// Every image the build read (bases, `COPY --from` images) and its manifest digest:
    /// the provenance's materials.
    materials: RefCell<Vec<(Reference, store::Digest)>>,
}

impl<'a> BuildRun<'a> {
    /// Note a step that produced `layer` under `key` (built, or found in a cache).
    pub fn note_layer_step(&mut self, key: &CacheKey, layer: &LayerRef, created_at: i64) {
        self.built.push(RemoteRecord {
            key: key.as_str().to_string(),
            layer: layer.blob.clone(),
            diff_id: layer.diff_id.clone(),
            created_at,
        });
    }

    /// The images the build read, each once, in the order first read.
    pub fn take_materials(&mut self) -> Vec<(Reference, store::Digest)> {
        std::mem::take(self.materials.get_mut())
    }

    pub fn take_built_steps(&mut self) -> Vec<RemoteRecord> {
        std::mem::take(&mut self.built)
    }

    /// A free-form progress line.
    pub fn note(&self, text: &str) {
        self.build.progress.note(text);
    }

    pub fn location(&self, inst_line: usize) -> String {
        format!("{}:{}", self.build.dockerfile.file_name, inst_line)
    }

    /// Build stage `index`; `done` holds the earlier stages it may refer to.
    pub fn step_output(&mut self, info: &StepInfo, line: &[u8]) {
        self.build.progress.output(info, line);
    }

    /// The image `reference` names, resolved (or fetched) and then leased with its
    /// config and layer blobs for the rest of the build. Lease, then check: a prune or
    /// `rmi` in another process may remove the image between resolving it and leasing
    /// it, and then it is resolved (or fetched) again.
    pub fn leased_image(
        &self,
        reference: &Reference,
        platform: &Platform,
        location: &str,
    ) -> Result<(store::Digest, store::ImageRecord)> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let manifest = self.resolve_image(reference, platform, location)?;
            self.build.lease.add_digest(&manifest)?;
            let image = match self.build.store.image(&manifest) {
                Ok(image) => image,
                Err(e) if e.kind() == store::ErrorKind::NotFound && attempt < ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let blobs = std::iter::once(&image.config.digest)
                .chain(image.layers.iter().map(|l| &l.blob.digest));
            let mut complete = true;
            for d in blobs {
                self.build.lease.add_digest(d)?;
                complete &= self.build.store.has_blob(d);
            }
            if complete || attempt >= ATTEMPTS {
                let mut materials = self.materials.borrow_mut();
                if !materials.iter().any(|(r, _)| r == reference) {
                    materials.push((reference.clone(), manifest.clone()));
                }
                return Ok((manifest, image));
            }
            attempt += 1;
        }
    }

    /// The manifest digest of `reference` for `platform`: from the store when the image
    /// there is for that platform (or is a multi-platform image holding it), else (or with
    /// --pull) fetched for it.
    pub fn resolve_image(
        &self,
        reference: &Reference,
        platform: &Platform,
        location: &str,
    ) -> Result<store::Digest> {
        if !self.build.opts.pull {
            let stored =
                self.build
                    .store
                    .resolve(reference)
                    .map(|d| match self.build.store.image(&d) {
                        Ok(image) if image.is_index() => image.manifest_for(platform).cloned(),
                        _ => Some(d),
                    });
            match stored {
                Ok(None) => {}
                Ok(Some(d)) if self.is_for_platform(&d, platform) => return Ok(d),
                Ok(_) => {}
                Err(e) if e.kind() == store::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.build
            .remote
            .fetch_base(reference, platform)
            .map_err(|source| BuildError::BaseImage {
                location: location.to_string(),
                reference: reference.familiar(),
                full: reference.to_string(),
                source,
            })
    }

    /// Whether the image recorded under `manifest` runs on `platform` (its config's
    /// os/architecture/variant; a config naming none is taken for any platform).
    fn is_for_platform(&self, manifest: &store::Digest, platform: &Platform) -> bool {
        let Ok(image) = self.build.store.image(manifest) else {
            return true;
        };
        let Ok(bytes) = self.build.store.read_blob(&image.config.digest) else {
            return true;
        };
        let config: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        match Platform::from_json(&config) {
            Some(p) => platform.matches(&p.os, &p.architecture, p.variant.as_deref()),
            None => true,
        }
    }

    pub fn step_error(&self, inst: &Instruction, source: impl Into<StepError>) -> BuildError {
        BuildError::Step {
            location: self.location(inst.span.start),
            span: inst.span,
            source: Box::new(source.into()),
        }
    }
}

/// An instruction on one line, for progress and history.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Seconds since the epoch, or SOURCE_DATE_EPOCH when set: the `created` of new history.
pub fn now_or_epoch(epoch: Option<i64>) -> i64 {
    epoch.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}
