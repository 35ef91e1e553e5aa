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

use crate::cache::CacheKey;
use crate::dockerfile::{Command, Instruction, ShellOrExec};
use crate::exec;
use crate::exec::user::UserError;
use crate::progress::StepInfo;
use crate::rootfs::UnionFs;
use crate::solve::context::Context;
use crate::solve::history_text::push_history;
use crate::solve::state::{now_or_epoch, BuildRun, StageResult, StageState};
use crate::solve::Result;
use copy_add::CopySpec;

/// How a step ended, for progress and the CACHED count.
pub enum Outcome {
    Cached,
    Done,
}

/// Run one instruction on `state`.
pub fn dispatch(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    info: &StepInfo,
    done: &[Option<StageResult>],
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

/// The snapshot dirs of `layers`, top first, unpacking any that are missing.
pub fn lowerdirs(run: &BuildRun, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
    crate::solve::wait_for_cache_imports(run.build.remote)?;
    Ok(run
        .build
        .store
        .ensure_layer_snapshots(run.build.lease, layers)?)
}

/// `--chown=user[:group]` to numbers, looked up in the image's /etc/passwd and /etc/group.
fn resolve_chown(root: &UnionFs, spec: &str) -> std::result::Result<(u32, u32), UserError> {
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
