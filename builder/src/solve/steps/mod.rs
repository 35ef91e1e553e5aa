//! The step executor: one handler per instruction, chosen by [`dispatch`].
//!
//! | instruction | handler | makes a layer |
//! |---|---|---|
//! | RUN | `run.rs` | yes: what the command wrote |
//! | COPY, ADD | `copy_add.rs` | yes: the planned tar |
//! | WORKDIR | `workdir.rs` | yes (not for `/`): the directories it creates |
//! | ENV, ARG, LABEL, … | `config_only.rs` | no: config and cache key only |
//!
//! A layer step first looks its key up (`crate::solve::cache_hit`) and, hit or built, ends
//! in `add_layer`; a config-only step moves the key with its history text here.

mod config_only;
mod copy_add;
mod run;
mod workdir;

use std::path::PathBuf;

use store::LayerRef;

use crate::below::Below;
use crate::cache::CacheKey;
use crate::dockerfile::{Command, Instruction, ShellOrExec};
use crate::exec;
use crate::exec::user::UserError;
use crate::image_tree::ImageTree;
use crate::layer_index::{IndexError, LayerIndex};
use crate::progress::StepInfo;
use crate::rootfs::UnionFs;
use crate::solve::context::Context;
use crate::solve::history_text::push_history;
use crate::solve::schedule::Done;
use crate::solve::state::{now_or_epoch, BuildRun, StageState};
use crate::solve::Result;
use copy_add::CopySpec;

/// How a step ended, for progress and the CACHED count.
pub enum Outcome {
    Cached,
    Done,
}

/// Waits until the stages `inst` takes files from (`COPY --from=stage`, `RUN
/// --mount=from=stage`) are built: the stage may have started before them (schedule.rs),
/// and the step starts (its time counts) once its inputs are ready, as a BuildKit vertex.
/// A `from` that does not expand is left for the step to report.
pub fn wait_for_inputs(
    run: &BuildRun,
    state: &StageState,
    inst: &Instruction,
    done: &Done,
) -> Result<()> {
    let froms: Vec<&str> = match &inst.command {
        Command::Copy(c) => c.from.as_deref().into_iter().collect(),
        Command::Run(r) => r
            .mounts
            .iter()
            .filter_map(|m| crate::solve::mount_from(m))
            .collect(),
        _ => return Ok(()),
    };
    let env = state.expand_env();
    for from in froms {
        let Ok(from) = crate::dockerfile::expand_word(from, &env, state.escape) else {
            continue;
        };
        if let Some(i) = crate::solve::stage_ref(run.build.dockerfile, &from, usize::MAX) {
            done.get(i)?;
        }
    }
    Ok(())
}

/// Run one instruction on `state`.
pub fn dispatch(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    info: &StepInfo,
    done: &Done,
    ctx: &mut Context,
) -> Result<Outcome> {
    use config_only as c;
    let history_text = match &inst.command {
        Command::Run(r) => return run::run_step(run, state, inst, info, r, done, ctx),
        Command::Copy(cp) => {
            return copy_add::copy_step(run, state, inst, CopySpec::copy(cp), done, ctx)
        }
        Command::Add(a) => {
            return copy_add::copy_step(run, state, inst, CopySpec::add(a), done, ctx)
        }
        Command::Workdir(dir) => return workdir::workdir_step(run, state, inst, dir),
        Command::Onbuild(o) => {
            // No history entry (as BuildKit); the cache key still moves.
            let text = c::onbuild(state, &o.expression);
            state.key = CacheKey::for_step(&state.key, &text, &state.args, None);
            return Ok(Outcome::Done);
        }
        Command::Env(pairs) => c::env(state, pairs),
        Command::Arg(defs) => c::arg(state, defs, &run.build.opts.build_args, run.build.meta_args),
        Command::Label(pairs) => c::label(state, pairs),
        Command::Expose(ports) => c::expose(state, ports),
        Command::Volume(vols) => c::volume(state, vols),
        Command::User(user) => c::user(state, user),
        Command::Cmd(cmd) => c::cmd(state, cmd),
        Command::Entrypoint(ep) => c::entrypoint(state, ep),
        Command::Shell(shell) => c::shell(state, shell),
        Command::StopSignal(sig) => c::stop_signal(state, sig),
        Command::Healthcheck(h) => c::healthcheck(state, h),
        Command::Maintainer(m) => c::maintainer(state, m),
    }
    .map_err(|e| run.step_error(inst, e))?;
    record_config_step(run, state, &history_text);
    Ok(Outcome::Done)
}

/// A step without a layer: its history text moves the cache key and becomes an empty-layer
/// history entry.
fn record_config_step(run: &BuildRun, state: &mut StageState, history_text: &str) {
    state.key = CacheKey::for_step(&state.key, history_text, &state.args, None);
    let now = now_or_epoch(run.build.opts.source_date_epoch);
    push_history(&mut state.config.history, history_text, now, true);
}

/// A CMD/ENTRYPOINT/RUN command as the argv it runs: the shell form through SHELL.
fn argv(state: &StageState, cmd: &ShellOrExec) -> Vec<String> {
    match cmd {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => {
            let mut v = state.config.config.shell_or_default();
            v.push(s.clone());
            v
        }
    }
}

/// The image of `layers` as COPY, ADD and WORKDIR read it (`crate::below`): the layers
/// unpacked already through their snapshots, the others through their tars, but for big
/// compressed layers, which are unpacked (with those below them). The inner `Err` is a
/// layer that cannot be read.
pub fn below<'a>(
    run: &BuildRun<'a>,
    layers: &[LayerRef],
) -> Result<std::result::Result<Below<'a>, IndexError>> {
    crate::solve::wait_for_cache_imports(run.build.remote)?;
    let store = run.build.store;
    let mut unpacked = store.unpacked_layer_snapshots(run.build.lease, layers)?;
    // A big compressed layer (a pulled base) is unpacked as before: reading it means
    // decompressing all of it, and the next RUN would do that again to unpack it. A layer
    // recorded unwritten has no tar, only its snapshot (docs/design.md §4.8): it and the
    // layers below it are read through snapshots.
    let must_unpack = layers
        .iter()
        .rposition(|l| !LayerIndex::is_cheap(l) || !store.has_blob(&l.blob.digest))
        .map_or(0, |i| i + 1);
    if must_unpack > unpacked.len() {
        unpacked = store.ensure_layer_snapshots(run.build.lease, &layers[..must_unpack])?;
    }
    let upper = &layers[unpacked.len()..];
    let lower = UnionFs::new(unpacked);
    if upper.is_empty() {
        return Ok(Ok(Below::unpacked(store, lower)));
    }
    Ok(Below::new(store, lower, upper))
}

/// The snapshot dirs of `layers`, top first, unpacking any that are missing.
pub fn lowerdirs(run: &BuildRun, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
    crate::solve::wait_for_cache_imports(run.build.remote)?;
    Ok(run
        .build
        .store
        .ensure_layer_snapshots(run.build.lease, layers)?)
}

/// `--chown=user[:group]` to numbers, looked up in the image's /etc/passwd and /etc/group.
fn resolve_chown(root: &dyn ImageTree, spec: &str) -> std::result::Result<(u32, u32), UserError> {
    let read = |p: &str| {
        root.read(p)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let user = exec::user::resolve(spec, &read("/etc/passwd"), &read("/etc/group"))?;
    Ok((user.uid, user.gid))
}
