//! Running one stage: resolve its base, then each instruction through the handler table in
//! `steps`. The state a stage carries between steps is [`StageState`].

use std::time::Instant;

use store::platform::Platform;
use store::{LayerRef, Reference};

use super::context::Context;
use super::schedule::Done;
use super::state::{one_line, BuildRun, StageResult, StageState};
use super::{stage_ref, steps, BuildError, BuildOptions, Result, StepError};
use crate::cache::CacheKey;
use crate::dockerfile::{expand_word, Command, Dockerfile, Instruction, Stage};
use crate::image::{ImageConfigFile, DEFAULT_PATH};
use crate::progress::{StepEnd, StepInfo};

impl BuildRun<'_> {
    /// Build stage `index`; `done` gives the earlier stages it refers to.
    pub fn stage(&mut self, index: usize, done: &Done, ctx: &mut Context) -> Result<StageResult> {
        let stage = &self.build.dockerfile.stages[index];
        self.writes_layers = self.build.exported.get(index).copied().unwrap_or(true);
        self.platform = stage_platform(
            self.build.dockerfile,
            stage,
            self.build.meta_args,
            self.build.platform,
        )?;
        // A named context of the stage's name replaces the stage (BuildKit's rule).
        let replacement = stage.name.as_deref().and_then(|n| self.named_context(n));
        if let Some(context) = replacement.cloned() {
            return self.named_context_result(
                stage.name.as_deref().unwrap_or_default(),
                &context,
                stage.span,
            );
        }
        // docker's labels: `[2/5]` in a single-stage Dockerfile, `[build 2/5]` otherwise.
        let stage_name = match (&stage.name, self.build.dockerfile.stages.len()) {
            (_, 1) => String::new(),
            (Some(name), _) => name.clone(),
            (None, _) => format!("stage-{index}"),
        };
        // BuildKit's `[linux/arm64 build 2/5]` when several platforms build.
        let stage_name = match self.build.label {
            Some(label) if stage_name.is_empty() => label.to_string(),
            Some(label) => format!("{label} {stage_name}"),
            None => stage_name,
        };
        // BuildKit matches the names without regard to case and ignores unknown ones.
        self.is_cache_ignored = stage.name.as_ref().is_some_and(|name| {
            self.build
                .opts
                .no_cache_stages
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
        });
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
                    self.build.progress.finished(&from_info, end);
                    state
                }
                Err(e) => {
                    self.build
                        .progress
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
            steps::wait_for_inputs(self, &state, inst, done)?;
            let info = self.next_step(&stage_name, position, count, &inst.original);
            let started = Instant::now();
            match steps::dispatch(self, &mut state, inst, &info, done, ctx) {
                Ok(steps::Outcome::Cached) => {
                    self.cached += 1;
                    self.build.progress.finished(&info, StepEnd::Cached);
                }
                Ok(steps::Outcome::Done) => self
                    .build
                    .progress
                    .finished(&info, StepEnd::Done(started.elapsed())),
                Err(e) => {
                    self.build
                        .progress
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

    /// Number the next step and report that it started.
    fn next_step(&mut self, stage: &str, index: usize, total: usize, text: &str) -> StepInfo {
        let info = self.build.progress.start(stage, index, total, text);
        self.step_number = info.number;
        info
    }

    /// Another stage failed: this one ends before its next step.
    fn check_stopped(&self) -> Result<()> {
        if self.build.stop.is_stopped() {
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
        let location = format!("{}:{}", self.build.dockerfile.file_name, stage.span.start);
        let mut out = Vec::new();
        for expr in exprs {
            let text = format!("FROM scratch\n{expr}\n");
            let parsed = crate::dockerfile::parse(&text, &self.build.dockerfile.file_name)
                .map_err(|e| BuildError::OnbuildTrigger {
                    location: location.clone(),
                    span: stage.span,
                    expression: expr.clone(),
                    reason: e.message,
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
        expand_word(
            &stage.base,
            self.build.meta_args,
            self.build.dockerfile.escape,
        )
        .map_err(|reason| BuildError::Expand {
            location: format!("{}:{}", self.build.dockerfile.file_name, stage.span.start),
            span: stage.span,
            reason,
        })
    }

    /// Whether FROM names an image (not `scratch`, not an earlier stage): only then is it a
    /// step of its own in the progress, as in docker.
    fn base_is_image(&self, stage: &Stage, index: usize) -> bool {
        self.base_name(stage)
            .map(|name| {
                name != "scratch" && stage_ref(self.build.dockerfile, &name, index).is_none()
            })
            .unwrap_or(true)
    }

    /// FROM: scratch, an earlier stage, or an image from the store (fetched if missing).
    /// Also says whether the base was already local (docker's `CACHED` for FROM).
    fn base(&mut self, stage: &Stage, index: usize, done: &Done) -> Result<(StageState, bool)> {
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
                escape: self.build.dockerfile.escape,
            }
        };
        let platform = stage_platform(
            self.build.dockerfile,
            stage,
            self.build.meta_args,
            self.build.platform,
        )?;
        if name == "scratch" {
            let key = CacheKey::for_base("scratch", &platform.to_string());
            // BuildKit's empty image has WorkingDir "/".
            let mut config = ImageConfigFile::default();
            config.config.working_dir = "/".to_string();
            return Ok((fresh(Vec::new(), config, key), true));
        }
        if let Some(dep) = stage_ref(self.build.dockerfile, &name, index) {
            let r = done
                .get(dep)?
                .expect("a stage starts once the stage it builds on is done");
            return Ok((
                fresh(r.layers.clone(), r.config.clone(), r.key.clone()),
                true,
            ));
        }
        let location = format!("{}:{}", self.build.dockerfile.file_name, stage.span.start);
        if let Some(context) = self.named_context(&name).cloned() {
            let r = self.named_context_result(&name, &context, stage.span)?;
            return Ok((fresh(r.layers, r.config, r.key), true));
        }
        let reference = Reference::parse(&name).map_err(|reason| BuildError::InvalidReference {
            location: location.clone(),
            span: stage.span,
            reason,
        })?;
        let was_local = !self.build.opts.pull && self.build.store.resolve(&reference).is_ok();
        let (manifest, image) = self.leased_image(&reference, &platform, &location)?;
        let config: ImageConfigFile = serde_json::from_slice(
            &self.build.store.read_blob(&image.config.digest)?,
        )
        .map_err(|reason| BuildError::BaseConfig {
            location,
            span: stage.span,
            name: name.clone(),
            reason,
        })?;
        let key = CacheKey::for_base(manifest.as_str(), &platform.to_string());
        Ok((fresh(image.layers, config, key), was_local))
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

/// The platform stage `stage` builds for: `FROM --platform=…` expanded with the meta ARGs
/// (`$BUILDPLATFORM` is this machine's), else the build's `target`.
pub fn stage_platform(
    dockerfile: &Dockerfile,
    stage: &Stage,
    meta_args: &[(String, String)],
    target: &Platform,
) -> Result<Platform> {
    let Some(raw) = &stage.platform else {
        return Ok(target.clone());
    };
    let location = || format!("{}:{}", dockerfile.file_name, stage.span.start);
    let expanded =
        expand_word(raw, meta_args, dockerfile.escape).map_err(|e| BuildError::Step {
            span: stage.span,
            location: location(),
            source: Box::new(e.into()),
        })?;
    Platform::parse(&expanded).map_err(|source| BuildError::Step {
        span: stage.span,
        location: location(),
        source: Box::new(StepError::Platform {
            raw: raw.clone(),
            source,
        }),
    })
}

/// ARGs before the first FROM, after BuildKit's automatic platform ARGs (which
/// `--build-arg` may set too): `--build-arg` wins over the default; defaults may use
/// earlier meta ARGs.
pub fn resolve_meta_args(
    dockerfile: &Dockerfile,
    opts: &BuildOptions,
    target: &Platform,
) -> Result<Vec<(String, String)>> {
    let mut values: Vec<(String, String)> = crate::image::platform_args(target)
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
                (None, Some(d)) => Some(expand_word(d, &values, dockerfile.escape).map_err(
                    |reason| BuildError::Expand {
                        location: format!("{}:{}", dockerfile.file_name, inst.span.start),
                        span: inst.span,
                        reason,
                    },
                )?),
                (None, None) => None,
            };
            if let Some(v) = value {
                values.push((def.name.clone(), v));
            }
        }
    }
    Ok(values)
}
