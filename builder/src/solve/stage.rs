//! Running one stage: resolve its base, then each instruction through the handler table in
//! `steps`. The state a stage carries between steps is `StageState`.

use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use store::{LayerRef, Lease, Reference, Store};

use super::context::Context;
use super::{stage_ref, steps, BuildError, BuildOptions, Result};
use crate::cache::CacheKey;
use crate::dockerfile::{expand_word, Command, Dockerfile, Instruction, Stage};
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
    pub progress: &'a Progress<'a>,
    /// Fired when a stage fails: the other stages stop at their next step, and their
    /// running RUN steps are killed.
    pub stop: &'a exec::Stopper,
}

impl<'a> Build<'a> {
    pub fn stage_run(&self) -> BuildRun<'a> {
        BuildRun {
            store: self.store,
            opts: self.opts,
            remote: self.remote,
            dockerfile: self.dockerfile,
            lease: self.lease,
            meta_args: self.meta_args,
            progress: self.progress,
            stop: self.stop,
            step_number: 0,
            cached: 0,
            built: Vec::new(),
            materials: std::cell::RefCell::new(Vec::new()),
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

    /// Number the next step and report that it started.
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

    pub fn output(&self, info: &StepInfo, line: &[u8]) {
        self.lock().reporter.step_output(info, line);
    }

    pub fn note(&self, text: &str) {
        self.lock().reporter.note(text);
    }

    /// Runs `f` with the reporter (for work after the stages: the export).
    pub fn with_reporter<T>(&self, f: impl FnOnce(&mut dyn Reporter) -> T) -> T {
        f(&mut *self.lock().reporter)
    }

    fn lock(&self) -> MutexGuard<'_, ProgressState<'a>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One stage being built: the build's shared parts, and this stage's step counters.
pub struct BuildRun<'a> {
    pub store: &'a Store,
    pub opts: &'a BuildOptions,
    pub remote: &'a dyn Remote,
    pub dockerfile: &'a Dockerfile,
    pub lease: &'a Lease,
    pub meta_args: &'a [(String, String)],
    progress: &'a Progress<'a>,
    pub stop: &'a exec::Stopper,
    /// The `#N` of this stage's latest step (config-only instructions show it too).
    step_number: usize,
    /// Steps of this stage whose result came from the cache.
    pub cached: usize,
    /// The cache record of every layer step of this stage (for `--cache-to`).
    built: Vec<RemoteRecord>,
    /// Every image the build read (bases, `COPY --from` images) and its manifest digest:
    /// the provenance's materials.
    materials: std::cell::RefCell<Vec<(Reference, store::Digest)>>,
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
        self.progress.note(text);
    }

    pub fn location(&self, inst_line: usize) -> String {
        format!("{}:{}", self.dockerfile.file_name, inst_line)
    }

    /// Build stage `index`; `done` holds the earlier stages it may refer to.
    pub fn stage(
        &mut self,
        index: usize,
        done: &[Option<StageResult>],
        ctx: &mut Context,
    ) -> Result<StageResult> {
        let stage = &self.dockerfile.stages[index];
        // A named context of the stage's name replaces the stage (BuildKit's rule).
        let replacement = stage.name.as_deref().and_then(|n| self.named_context(n));
        if let Some(context) = replacement.cloned() {
            let location = self.location(stage.span.start);
            return self.named_context_result(&context, &location);
        }
        // docker's labels: `[2/5]` in a single-stage Dockerfile, `[build 2/5]` otherwise.
        let stage_name = match (&stage.name, self.dockerfile.stages.len()) {
            (_, 1) => String::new(),
            (Some(name), _) => name.clone(),
            (None, _) => format!("stage-{index}"),
        };
        let base_is_image = self.base_is_image(stage, index);
        let count =
            usize::from(base_is_image) + stage.instructions.iter().filter(|i| is_step(i)).count();
        let mut position = 0;
        let mut state = if base_is_image {
            position += 1;
            let name = self.base_name(stage)?;
            let shown = Reference::parse(&name).map_or(name, |r| r.to_string());
            self.check_stopped()?;
            let from_info = self.next_step(&stage_name, position, count, &format!("FROM {shown}"));
            let started = Instant::now();
            match self.base(stage, index, done) {
                Ok((state, was_local)) => {
                    let end = if was_local {
                        StepEnd::Cached
                    } else {
                        StepEnd::Done(started.elapsed())
                    };
                    self.progress.finished(&from_info, end);
                    state
                }
                Err(e) => {
                    self.progress
                        .finished(&from_info, StepEnd::Failed(started.elapsed()));
                    return Err(e);
                }
            }
        } else {
            self.base(stage, index, done)?.0
        };
        // The base image's ONBUILD triggers run first, as if written right after FROM.
        let triggers = self.onbuild_triggers(&mut state, stage)?;
        let count = count + triggers.iter().filter(|i| is_step(i)).count();
        for inst in triggers.iter().chain(&stage.instructions) {
            if !is_step(inst) {
                // Config-only instructions are not steps in docker's progress either.
                let info = StepInfo {
                    number: self.step_number,
                    stage: stage_name.clone(),
                    index: position,
                    total: count,
                    text: one_line(&inst.original),
                };
                steps::dispatch(self, &mut state, inst, &info, done, ctx)?;
                continue;
            }
            position += 1;
            self.check_stopped()?;
            let info = self.next_step(&stage_name, position, count, &inst.original);
            let started = Instant::now();
            match steps::dispatch(self, &mut state, inst, &info, done, ctx) {
                Ok(steps::Outcome::Cached) => {
                    self.cached += 1;
                    self.progress.finished(&info, StepEnd::Cached);
                }
                Ok(steps::Outcome::Done) => self
                    .progress
                    .finished(&info, StepEnd::Done(started.elapsed())),
                Err(e) => {
                    self.progress
                        .finished(&info, StepEnd::Failed(started.elapsed()));
                    return Err(e);
                }
            }
        }
        Ok(StageResult {
            layers: state.layers,
            config: state.config,
            key: state.key,
        })
    }

    pub fn step_output(&mut self, info: &StepInfo, line: &[u8]) {
        self.progress.output(info, line);
    }

    /// Number the next step and report that it started.
    fn next_step(&mut self, stage: &str, index: usize, total: usize, text: &str) -> StepInfo {
        let info = self.progress.start(stage, index, total, text);
        self.step_number = info.number;
        info
    }

    /// Another stage failed: this one ends before its next step.
    fn check_stopped(&self) -> Result<()> {
        if self.stop.is_stopped() {
            return Err(BuildError::Stopped);
        }
        Ok(())
    }

    /// Take the base image's ONBUILD triggers out of the config (a child does not inherit
    /// them, as with docker) and parse each one into an instruction located at FROM.
    fn onbuild_triggers(&self, state: &mut StageState, stage: &Stage) -> Result<Vec<Instruction>> {
        let Some(exprs) = state.config.config.on_build.take() else {
            return Ok(Vec::new());
        };
        let location = format!("{}:{}", self.dockerfile.file_name, stage.span.start);
        let mut out = Vec::new();
        for expr in exprs {
            let text = format!("FROM scratch\n{expr}\n");
            let parsed =
                crate::dockerfile::parse(&text, &self.dockerfile.file_name).map_err(|e| {
                    BuildError::Step {
                        location: location.clone(),
                        message: format!(
                            "ONBUILD trigger {expr:?} of the base image: {}",
                            e.message
                        ),
                    }
                })?;
            for mut inst in parsed.stages.into_iter().flat_map(|s| s.instructions) {
                inst.span = stage.span;
                out.push(inst);
            }
        }
        Ok(out)
    }

    /// The FROM name with meta ARGs expanded.
    fn base_name(&self, stage: &Stage) -> Result<String> {
        expand_word(&stage.base, self.meta_args, self.dockerfile.escape).map_err(|e| {
            BuildError::Step {
                location: format!("{}:{}", self.dockerfile.file_name, stage.span.start),
                message: e.to_string(),
            }
        })
    }

    /// Whether FROM names an image (not `scratch`, not an earlier stage): only then is it a
    /// step of its own in the progress, as in docker.
    fn base_is_image(&self, stage: &Stage, index: usize) -> bool {
        self.base_name(stage)
            .map(|name| name != "scratch" && stage_ref(self.dockerfile, &name, index).is_none())
            .unwrap_or(true)
    }

    /// FROM: scratch, an earlier stage, or an image from the store (fetched if missing).
    /// Also says whether the base was already local (docker's `CACHED` for FROM).
    fn base(
        &mut self,
        stage: &Stage,
        index: usize,
        done: &[Option<StageResult>],
    ) -> Result<(StageState, bool)> {
        let name = self.base_name(stage)?;
        let fresh = |layers: Vec<LayerRef>, mut config: ImageConfigFile, key: CacheKey| {
            // BuildKit gives every image a PATH, even FROM scratch or a base without one.
            if config.config.env_get("PATH").is_none() {
                config.config.env_set("PATH", DEFAULT_PATH);
            }
            StageState {
                layers,
                config,
                key,
                args: Vec::new(),
                declared_args: Vec::new(),
                cmd_set_here: false,
                escape: self.dockerfile.escape,
            }
        };
        let platform = format!("linux/{}", crate::image::host_architecture());
        if name == "scratch" {
            let key = CacheKey::for_base("scratch", &platform);
            // BuildKit's empty image has WorkingDir "/".
            let mut config = ImageConfigFile::default();
            config.config.working_dir = "/".to_string();
            return Ok((fresh(Vec::new(), config, key), true));
        }
        if let Some(dep) = stage_ref(self.dockerfile, &name, index) {
            let r = done[dep]
                .as_ref()
                .expect("stages are built in dependency order");
            return Ok((
                fresh(r.layers.clone(), r.config.clone(), r.key.clone()),
                true,
            ));
        }
        let location = format!("{}:{}", self.dockerfile.file_name, stage.span.start);
        if let Some(context) = self.named_context(&name).cloned() {
            let r = self.named_context_result(&context, &location)?;
            return Ok((fresh(r.layers, r.config, r.key), true));
        }
        let reference = Reference::parse(&name).map_err(|e| BuildError::Step {
            location: location.clone(),
            message: format!("invalid reference format: {e}"),
        })?;
        let was_local = !self.opts.pull && self.store.resolve(&reference).is_ok();
        let (manifest, image) = self.leased_image(&reference, &location)?;
        let config: ImageConfigFile =
            serde_json::from_slice(&self.store.read_blob(&image.config.digest)?).map_err(|e| {
                BuildError::Step {
                    location,
                    message: format!("base image {name}: bad config: {e}"),
                }
            })?;
        let key = CacheKey::for_base(manifest.as_str(), &platform);
        Ok((fresh(image.layers, config, key), was_local))
    }

    /// The image `reference` names, resolved (or fetched) and then leased with its
    /// config and layer blobs for the rest of the build. Lease, then check: a prune or
    /// `rmi` in another process may remove the image between resolving it and leasing
    /// it, and then it is resolved (or fetched) again.
    pub fn leased_image(
        &self,
        reference: &Reference,
        location: &str,
    ) -> Result<(store::Digest, store::ImageRecord)> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let manifest = self.resolve_image(reference, location)?;
            self.lease.add_digest(&manifest)?;
            let image = match self.store.image(&manifest) {
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
                self.lease.add_digest(d)?;
                complete &= self.store.has_blob(d);
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

    /// The manifest digest of `reference`: from the store, else (or with --pull) fetched.
    pub fn resolve_image(&self, reference: &Reference, location: &str) -> Result<store::Digest> {
        if !self.opts.pull {
            match self.store.resolve(reference) {
                Ok(d) => return Ok(d),
                Err(e) if e.kind() == store::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.remote
            .fetch_base(reference)
            .map_err(|source| BuildError::BaseImage {
                location: location.to_string(),
                reference: reference.familiar(),
                full: reference.to_string(),
                source,
            })
    }

    pub fn step_error(&self, inst: &Instruction, message: String) -> BuildError {
        BuildError::Step {
            location: self.location(inst.span.start),
            message,
        }
    }
}

/// Instructions that are steps of their own in the progress (they make a layer);
/// the rest only change the config.
pub(super) fn is_step(inst: &Instruction) -> bool {
    matches!(
        inst.command,
        Command::Run(_) | Command::Copy(_) | Command::Add(_) | Command::Workdir(_)
    )
}

/// An instruction on one line, for progress and history.
fn one_line(text: &str) -> String {
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

/// ARGs before the first FROM, after BuildKit's automatic platform ARGs (which
/// `--build-arg` may set too): `--build-arg` wins over the default; defaults may use
/// earlier meta ARGs.
pub fn resolve_meta_args(
    dockerfile: &Dockerfile,
    opts: &BuildOptions,
) -> Result<Vec<(String, String)>> {
    let mut values: Vec<(String, String)> = crate::image::platform_args()
        .into_iter()
        .map(|(k, v)| {
            let v = opts.build_args.get(&k).cloned().unwrap_or(v);
            (k, v)
        })
        .collect();
    for inst in &dockerfile.meta_args {
        let Command::Arg(defs) = &inst.command else {
            continue;
        };
        for def in defs {
            let value = match (opts.build_args.get(&def.name), &def.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => {
                    Some(expand_word(d, &values, dockerfile.escape).map_err(|e| {
                        BuildError::Step {
                            location: format!("{}:{}", dockerfile.file_name, inst.span.start),
                            message: e.to_string(),
                        }
                    })?)
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                values.push((def.name.clone(), v));
            }
        }
    }
    Ok(values)
}
