//! `strata build`: from a Dockerfile and a context to a tagged image in the store.
//!
//! ```text
//! parse ──▶ pick the stages the target needs ──▶ each stage once the stages it uses are
//!           done (side by side, at most `jobs` at once; schedule.rs):
//!             FROM: resolve the base (store, else the caller's pull) ──▶ steps:
//!               key = CacheKey::for_step(parent, expanded instruction, args, content)
//!               cache hit  → reuse the layer, run nothing
//!               cache miss → RUN in the sandbox / COPY straight to a tar → layer → store
//!           ──▶ export the target stage: config + manifest blobs ──▶ tag
//! ```
//!
//! The metadata database sees only short transactions between steps; none is open while a
//! RUN runs or a layer is written (docs/design.md §2). A lease names what the build has
//! written or reuses, so a concurrent prune leaves it alone (docs/design.md §3).

mod cache_hit;
mod context;
mod copy_flags;
mod export;
pub mod fetch;
mod heredocs;
mod history_text;
pub mod named_context;
pub mod run_mounts;
pub mod schedule;
mod stage;
mod state;
mod step_error;
mod steps;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use store::platform::Platform;
use store::{Digest, Reference, Store};

use crate::dockerfile::{self, Command, Dockerfile, ParseError, Span};
use crate::exec;
use crate::progress::Reporter;
use crate::remote::{Remote, RemoteError};
use crate::remote_cache::{ExportMode, RemoteRecord};

pub use named_context::NamedContext;
pub use state::StageResult;
pub use step_error::StepError;

/// What to build and how.
pub struct BuildOptions {
    pub context: PathBuf,
    /// The Dockerfile's path; `None` means `CONTEXT/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<Reference>,
    /// `--build-arg KEY=VALUE` values.
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--no-cache-filter`: the stages (by name) whose steps miss the cache.
    pub no_cache_stages: Vec<String>,
    /// `--pull`: ask `resolve_base` even when the image is in the store.
    pub pull: bool,
    pub network: exec::Network,
    /// `--isolation` and `--snapshotter`, probed on the first RUN that executes.
    pub sandbox: exec::probe::SandboxChoice,
    /// `--add-host`, `--shm-size`, `--ulimit`: given to every RUN.
    pub runtime: exec::RuntimeOptions,
    /// SOURCE_DATE_EPOCH: timestamps in the image and layers are clamped to it.
    pub source_date_epoch: Option<i64>,
    /// `--secret`: by id, where each value comes from (read only by the steps that mount it).
    pub secrets: run_mounts::Secrets,
    /// `--ssh`: agent sockets by id.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--allow security.insecure`: lets `RUN --security=insecure` run.
    pub allow_insecure: bool,
    /// `--allow network.host`: lets `RUN --network=host` run (BuildKit's entitlement; without
    /// it a Dockerfile could leave the `--network none` the user asked for).
    pub allow_network_host: bool,
    /// `--cache-to type=inline` (or `BUILDKIT_INLINE_CACHE=1`): the image's config carries
    /// the cache records of its own layers, so `--cache-from IMAGE` can use them.
    pub inline_cache: bool,
    /// `--jobs`: how many stages may run at once (1: one after another, in Dockerfile
    /// order); see [`schedule::default_jobs`].
    pub jobs: usize,
    /// `--label`: set on the image config after the Dockerfile's own `LABEL`s.
    pub labels: BTreeMap<String, String>,
    /// `--annotation` (manifest level): the image manifest's `annotations`, some perhaps
    /// for one platform only.
    pub manifest_annotations: crate::annotations::PlatformAnnotations,
    /// `--platform`: the platforms to build, each a solve of its own (empty: this
    /// machine's). With more than one, no tag is set: the caller makes the index.
    pub platforms: Vec<Platform>,
    /// `--build-context NAME=…`, by [`named_context::context_key`] of NAME.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

impl BuildOptions {
    /// The Dockerfile this build reads: `-f`, else `CONTEXT/Dockerfile`.
    pub fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"))
    }
}

/// What the build produced for one platform.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The platform the image is for (its config's os/architecture/variant).
    pub platform: Platform,
    pub manifest: Digest,
    /// docker's image ID: the config digest.
    pub image_id: Digest,
    /// Steps whose result came from the cache, and all steps.
    pub cached_steps: usize,
    pub total_steps: usize,
    /// The cache record of every step that produced a layer, in build order: what
    /// `--cache-to` exports.
    pub steps: Vec<RemoteRecord>,
    /// The image's layers, bottom first.
    pub layers: Vec<store::LayerRef>,
    /// The images the build read (bases, `COPY --from` images) by manifest digest.
    pub materials: Vec<(Reference, Digest)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("reading {path}")]
    ReadDockerfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("target stage {0:?} could not be found")]
    NoSuchTarget(String),
    /// A `FROM` (or `COPY --from`) image not in the store could not be fetched; `location`
    /// is `Dockerfile:LINE`, `reference` the image as the user wrote it, `full` its
    /// normalised name (BuildKit's wording).
    #[error("{location}: {reference}: failed to resolve source metadata for {full}")]
    BaseImage {
        location: String,
        reference: String,
        full: String,
        #[source]
        source: RemoteError,
    },
    /// A RUN's process exited non-zero or was killed; `output` is the tail of what it
    /// printed (empty if nothing).
    #[error(
        "{location}: process {command:?} did not complete successfully: {status}{}",
        output_section(output)
    )]
    RunFailed {
        location: String,
        span: Span,
        command: String,
        status: exec::ExitStatus,
        output: String,
    },
    /// The sandbox could not run a RUN at all (a mount, a namespace, the exec).
    #[error("{location}")]
    Sandbox {
        location: String,
        span: Span,
        #[source]
        source: exec::ExecError,
    },
    /// A word (FROM's image, a meta ARG's default) did not expand.
    #[error("{location}: {reason}")]
    Expand {
        location: String,
        span: Span,
        reason: dockerfile::ExpandError,
    },
    /// FROM names something that is not an image reference.
    #[error("{location}: invalid reference format: {reason}")]
    InvalidReference {
        location: String,
        span: Span,
        reason: store::ReferenceError,
    },
    /// The base image's config blob is not an image config.
    #[error("{location}: base image {name}: bad config: {reason}")]
    BaseConfig {
        location: String,
        span: Span,
        name: String,
        reason: serde_json::Error,
    },
    /// An ONBUILD trigger of the base image does not parse; `location` is the FROM.
    #[error("{location}: ONBUILD trigger {expression:?} of the base image: {reason}")]
    OnbuildTrigger {
        location: String,
        span: Span,
        expression: String,
        reason: String,
    },
    /// The context's `.dockerignore` could not be read or parsed.
    #[error("{path}: {reason}")]
    DockerIgnore {
        path: String,
        reason: crate::dockerignore::IgnoreError,
    },
    /// A step (or a stage's `FROM --platform`) failed; `location` is `Dockerfile:LINE`.
    #[error("{location}: {source}")]
    Step {
        location: String,
        span: Span,
        #[source]
        source: Box<StepError>,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A stage of a foreign platform runs RUN, and this kernel cannot run its binaries:
    /// found before the first step.
    #[error("{location}: {source}")]
    Emulation {
        location: String,
        #[source]
        source: exec::binfmt::BinfmtError,
    },
    /// A layer of an imported build cache could not be downloaded after its step hit.
    #[error("importing build cache")]
    CacheImport(#[source] RemoteError),
    /// The stage ended early because another stage of the build failed (that stage's
    /// error is the one the build returns).
    #[error("stopped: another stage of the build failed")]
    Stopped,
    /// The blob of a layer recorded unwritten could not be made (docs/design.md §4.8).
    #[error(transparent)]
    Unwritten(#[from] crate::unwritten::UnwrittenError),
}

pub type Result<T> = std::result::Result<T, BuildError>;

/// The output tail of a failed RUN as its error message shows it.
fn output_section(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("\n--- output (last lines) ---\n{output}")
    }
}

/// Build the image, once per platform of `opts.platforms` (this machine's when empty), the
/// platforms side by side; the results come in `opts.platforms` order. Base images the store
/// lacks and `--cache-from` records come through `remote`. Progress goes to `reporter`;
/// nothing is printed directly. Each platform's build checks first that RUN can run its
/// binaries ([`exec::binfmt`]); none starts a step when one cannot.
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    remote: &dyn Remote,
    reporter: &mut dyn Reporter,
) -> Result<Vec<BuildResult>> {
    let dockerfile_path = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    let text =
        std::fs::read_to_string(&dockerfile_path).map_err(|source| BuildError::ReadDockerfile {
            path: dockerfile_path.clone(),
            source,
        })?;
    let file_name = dockerfile_path
        .file_name()
        .map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned());
    let dockerfile = dockerfile::parse(&text, &file_name)?;
    let platforms = match opts.platforms.is_empty() {
        true => vec![crate::image::build_platform()],
        false => opts.platforms.clone(),
    };
    let is_multi = platforms.len() > 1;
    let solves = platforms
        .into_iter()
        .map(|platform| {
            let meta_args = stage::resolve_meta_args(&dockerfile, opts, &platform)?;
            let target = target_index(&dockerfile, opts.target.as_deref())?;
            let needed = needed_stages(&dockerfile, target, &meta_args, &opts.named_contexts);
            check_emulation(&dockerfile, &needed, &meta_args, &platform)?;
            Ok(Solve {
                // Held for the whole build; dropping it (also on error) ends the lease.
                lease: store.lease(Duration::from_secs(6 * 3600))?,
                platform,
                meta_args,
                target,
                needed,
                label: None,
                tags: if is_multi { &[][..] } else { &opts.tags[..] },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let progress = state::Progress::new(reporter);
    let stop = exec::Stopper::new();
    if !is_multi {
        let result = build_parsed(
            store,
            opts,
            remote,
            &dockerfile,
            &dockerfile_path,
            &progress,
            &stop,
            &solves[0],
        )?;
        return Ok(vec![result]);
    }
    // Platforms side by side, each on a thread of its own (their stages may fan out
    // further); one failure stops the others at their next step.
    let solves: Vec<Solve> = solves
        .into_iter()
        .map(|s| Solve {
            label: Some(s.platform.to_string()),
            ..s
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = solves
            .iter()
            .map(|solve| {
                let (progress, path, dockerfile, stop) =
                    (&progress, &dockerfile_path, &dockerfile, &stop);
                scope.spawn(move || {
                    build_parsed(store, opts, remote, dockerfile, path, progress, stop, solve)
                })
            })
            .collect();
        let mut out = Vec::new();
        let mut first_error = None;
        for h in handles {
            match h.join().expect("a platform's build thread does not panic") {
                Ok(r) => out.push(r),
                Err(BuildError::Stopped) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
}

/// One platform's solve of the Dockerfile.
struct Solve<'a> {
    lease: store::Lease,
    platform: Platform,
    /// The meta ARGs with this platform's `TARGET*` values.
    meta_args: Vec<(String, String)>,
    target: usize,
    needed: Vec<usize>,
    /// Shown in front of every step (`[linux/arm64 build 2/3]`) when several platforms build.
    label: Option<String>,
    tags: &'a [Reference],
}

/// Every needed stage that RUNs for a platform this machine does not run natively must
/// have a binfmt_misc handler for it: checked before any step, so a build that would fail
/// at its first foreign RUN does no work.
fn check_emulation(
    dockerfile: &Dockerfile,
    needed: &[usize],
    meta_args: &[(String, String)],
    target: &Platform,
) -> Result<()> {
    for &i in needed {
        let stage = &dockerfile.stages[i];
        let platform = stage::stage_platform(dockerfile, stage, meta_args, target)?;
        let has_run = stage
            .instructions
            .iter()
            .any(|inst| matches!(inst.command, Command::Run(_)));
        if has_run {
            exec::binfmt::check(&platform, std::path::Path::new(exec::binfmt::BINFMT_MISC))
                .map_err(|source| BuildError::Emulation {
                    location: format!("{}:{}", dockerfile.file_name, stage.span.start),
                    source,
                })?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_parsed<'a>(
    store: &'a Store,
    opts: &'a BuildOptions,
    remote: &'a dyn Remote,
    dockerfile: &'a Dockerfile,
    dockerfile_path: &std::path::Path,
    progress: &'a state::Progress<'_>,
    stop: &'a exec::Stopper,
    solve: &'a Solve<'a>,
) -> Result<BuildResult> {
    let target = solve.target;
    let meta_args = &solve.meta_args;
    let needed = &solve.needed;
    let deps: Vec<Vec<usize>> = (0..dockerfile.stages.len())
        .map(|i| stage_deps(dockerfile, i, meta_args, &opts.named_contexts))
        .collect();
    let starts_after: Vec<Vec<usize>> = (0..dockerfile.stages.len())
        .map(|i| Vec::from_iter(base_stage(dockerfile, i, meta_args, &opts.named_contexts)))
        .collect();
    let exported = exported_stages(target, &starts_after);
    let lease = &solve.lease;
    let mut ctx = context::Context::open(store, &opts.context, dockerfile_path)?;
    let build = state::Build {
        exported: &exported,
        store,
        opts,
        remote,
        dockerfile,
        lease,
        meta_args,
        platform: &solve.platform,
        label: solve.label.as_deref(),
        progress,
        stop,
    };
    // Each stage hashes context files into its own copy of the stat cache; the copies'
    // new records are saved together at the end.
    let (mut results, stages) = schedule::run(
        needed,
        &deps,
        &starts_after,
        opts.jobs,
        stop,
        |index, done| {
            let mut stage_ctx = ctx.fork();
            let mut run = build.stage_run();
            let result = run.stage(index, done, &mut stage_ctx)?;
            let built = run.take_built_steps();
            Ok((result, (stage_ctx, run.cached, built, run.take_materials())))
        },
    )?;
    let mut cached_steps = 0;
    let mut steps = Vec::new();
    let mut materials: Vec<(Reference, Digest)> = Vec::new();
    for (stage_ctx, cached, built, read) in stages {
        ctx.absorb(stage_ctx);
        cached_steps += cached;
        steps.extend(built);
        for (reference, manifest) in read {
            if !materials.iter().any(|(r, _)| *r == reference) {
                materials.push((reference, manifest));
            }
        }
    }
    ctx.save(store)?;
    wait_for_cache_imports(remote)?;
    let finished = results[target].take().expect("the target stage was built");
    let total_steps = step_count(dockerfile, needed);
    let inline = opts
        .inline_cache
        .then(|| crate::remote_cache::select(&steps, &finished.layers, ExportMode::Min));
    let image = progress.with_reporter(|reporter| {
        let to = export::Target {
            platform: &solve.platform,
            tags: solve.tags,
        };
        export::export(
            store,
            &finished,
            opts,
            &to,
            lease,
            inline.as_deref(),
            reporter,
        )
    })?;
    Ok(BuildResult {
        platform: solve.platform.clone(),
        manifest: image.manifest,
        image_id: image.config,
        cached_steps,
        total_steps,
        steps,
        layers: finished.layers,
        materials,
    })
}

/// Which stages' layers the image holds: the target and the stages it is built on (`FROM
/// stage`, through any number of stages). The others' RUN layers are recorded unwritten
/// (docs/design.md §4.8).
fn exported_stages(target: usize, starts_after: &[Vec<usize>]) -> Vec<bool> {
    let mut exported = vec![false; starts_after.len()];
    let mut next = Some(target);
    while let Some(i) = next.filter(|i| !exported[*i]) {
        exported[i] = true;
        next = starts_after[i].first().copied();
    }
    exported
}

/// The steps of the stages built, as the progress counts them (each stage's FROM too).
fn step_count(dockerfile: &Dockerfile, needed: &[usize]) -> usize {
    needed
        .iter()
        .map(|i| {
            dockerfile.stages[*i]
                .instructions
                .iter()
                .filter(|inst| stage::is_step(inst))
                .count()
                + 1
        })
        .sum()
}

/// Every layer a `--cache-from` hit started to download is in the store.
pub(crate) fn wait_for_cache_imports(remote: &dyn Remote) -> Result<()> {
    match remote.cache() {
        Some(cache) => cache.wait().map_err(BuildError::CacheImport),
        None => Ok(()),
    }
}

/// `--target NAME` (or a stage index), else the last stage.
fn target_index(dockerfile: &Dockerfile, target: Option<&str>) -> Result<usize> {
    match target {
        None => Ok(dockerfile.stages.len() - 1),
        Some(name) => dockerfile
            .stage_index(name)
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|i| *i < dockerfile.stages.len())
            })
            .ok_or_else(|| BuildError::NoSuchTarget(name.to_string())),
    }
}

/// The stages `target` depends on (through `FROM stage` and `COPY --from`), and itself,
/// in Dockerfile order. Unused stages are skipped, as BuildKit skips them.
fn needed_stages(
    dockerfile: &Dockerfile,
    target: usize,
    meta_args: &[(String, String)],
    named: &BTreeMap<String, NamedContext>,
) -> Vec<usize> {
    let mut needed = vec![false; dockerfile.stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed[i] {
            continue;
        }
        needed[i] = true;
        todo.extend(stage_deps(dockerfile, i, meta_args, named));
    }
    (0..dockerfile.stages.len())
        .filter(|i| needed[*i])
        .collect()
}

/// The earlier stages stage `i` uses: its base (`FROM stage`), `COPY --from=stage` and
/// `RUN --mount=from=stage`; none when a named context replaces the stage.
fn stage_deps(
    dockerfile: &Dockerfile,
    i: usize,
    meta_args: &[(String, String)],
    named: &BTreeMap<String, NamedContext>,
) -> Vec<usize> {
    let stage = &dockerfile.stages[i];
    if is_replaced(dockerfile, i, named) {
        return Vec::new();
    }
    let base = base_word(dockerfile, i, meta_args);
    let mut refs: Vec<&str> = vec![base.as_str()];
    for inst in &stage.instructions {
        if let Command::Copy(copy) = &inst.command {
            if let Some(from) = &copy.from {
                refs.push(from);
            }
        }
        if let Command::Run(run) = &inst.command {
            refs.extend(run.mounts.iter().filter_map(|m| mount_from(m)));
        }
    }
    let mut deps: Vec<usize> = refs
        .into_iter()
        .filter_map(|r| stage_ref(dockerfile, r, i))
        .collect();
    deps.sort_unstable();
    deps.dedup();
    deps
}

/// The earlier stage that stage `i` builds on (`FROM stage`), if any: it must be done before
/// stage `i` starts, while the stages it takes files from need only have started
/// (schedule.rs).
fn base_stage(
    dockerfile: &Dockerfile,
    i: usize,
    meta_args: &[(String, String)],
    named: &BTreeMap<String, NamedContext>,
) -> Option<usize> {
    if is_replaced(dockerfile, i, named) {
        return None;
    }
    stage_ref(dockerfile, &base_word(dockerfile, i, meta_args), i)
}

/// Whether a named context of stage `i`'s name replaces the stage.
fn is_replaced(dockerfile: &Dockerfile, i: usize, named: &BTreeMap<String, NamedContext>) -> bool {
    dockerfile.stages[i]
        .name
        .as_deref()
        .and_then(named_context::context_key)
        .is_some_and(|k| named.contains_key(&k))
}

/// Stage `i`'s FROM word, expanded: FROM may name a stage through a global ARG (`FROM
/// base-$TARGETARCH`).
fn base_word(dockerfile: &Dockerfile, i: usize, meta_args: &[(String, String)]) -> String {
    let stage = &dockerfile.stages[i];
    dockerfile::expand_word(&stage.base, meta_args, dockerfile.escape)
        .unwrap_or_else(|_| stage.base.clone())
}

/// The `from=` of a `--mount` spec, if any.
pub(crate) fn mount_from(spec: &str) -> Option<&str> {
    spec.split(',').find_map(|kv| kv.strip_prefix("from="))
}

/// Whether `name` names an earlier stage (by name, or by index as docker allows for
/// `COPY --from=0`).
pub(crate) fn stage_ref(dockerfile: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    dockerfile
        .stage_index(name)
        .filter(|i| *i < before)
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
}
