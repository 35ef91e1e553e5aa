//! RUN: the step that runs a command in the sandbox over the stage's layers and turns what
//! it wrote (the overlay's upper directory) into a layer.

use std::path::Path;

use store::Store;

use super::{argv, lowerdirs, Outcome};
use crate::cache::CacheKey;
use crate::dockerfile::{Instruction, ShellOrExec};
use crate::exec::{self, RunSpec};
use crate::layers::{commit_layer, hash_layer};
use crate::progress::StepInfo;
use crate::solve::cache_hit::{add_layer, cache_hit, chain_of, Origin};
use crate::solve::context::Context;
use crate::solve::schedule::Done;
use crate::solve::state::{BuildRun, StageResult, StageState};
use crate::solve::{heredocs, run_mounts, BuildError, Result, StepError};

fn json(v: Option<&Vec<String>>) -> String {
    serde_json::to_string(&v.cloned().unwrap_or_default()).unwrap_or_default()
}

pub(super) fn run_step(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    info: &StepInfo,
    r: &crate::dockerfile::Run,
    done: &Done,
    ctx: &mut Context,
) -> Result<Outcome> {
    if r.security == Some(crate::dockerfile::SecurityMode::Insecure)
        && !run.build.opts.allow_insecure
    {
        return Err(run.step_error(inst, StepError::InsecureNotAllowed));
    }
    if r.network == Some(crate::dockerfile::NetworkMode::Host) && !run.build.opts.allow_network_host
    {
        return Err(run.step_error(inst, StepError::NetworkHostNotAllowed));
    }
    // `--mount=from=NAME` of a named context that is no stage: made ready here, since a
    // directory context may build its layer.
    let mut named = std::collections::BTreeMap::new();
    // The stages `--mount=from=` names (`wait_for_inputs` waited for them before the step
    // began; `get` reads their results).
    let mut stages: Vec<Option<StageResult>> = vec![None; run.build.dockerfile.stages.len()];
    for from in r
        .mounts
        .iter()
        .filter_map(|spec| crate::solve::mount_from(spec))
    {
        let from = crate::dockerfile::expand_word(from, &state.expand_env(), state.escape)
            .unwrap_or_else(|_| from.to_string());
        if let Some(i) = crate::solve::stage_ref(run.build.dockerfile, &from, usize::MAX) {
            stages[i] = done.get(i)?;
            continue;
        }
        if let Some(context) = run.named_context(&from).cloned() {
            let result = run.named_context_result(&from, &context, inst.span)?;
            named.insert(from, result);
        }
    }
    let mounts = run_mounts::resolve(run, state, &r.mounts, &stages, &named, ctx)
        .map_err(|e| run.step_error(inst, e))?;
    let script = match (&r.cmd, r.heredocs.is_empty()) {
        (_, true) => None,
        (ShellOrExec::Shell(line), false) => Some(heredocs::run_script(
            &state.config.config.shell_or_default(),
            line,
            &r.heredocs,
        )),
        (ShellOrExec::Exec(_), false) => {
            return Err(run.step_error(inst, StepError::HeredocExecForm))
        }
    };
    let argv = match &script {
        Some(s) => s.argv.clone(),
        None => argv(state, &r.cmd),
    };
    let network = match r.network {
        Some(crate::dockerfile::NetworkMode::None) => exec::Network::None,
        Some(crate::dockerfile::NetworkMode::Host) => exec::Network::Host,
        _ => run.build.opts.network,
    };
    let created_by = format!(
        "RUN {}{} # buildkit",
        state.run_history_args(),
        argv.join(" ")
    );
    let mut key_text = format!(
        "RUN {}\0{:?}\0{}\0{}",
        json(Some(&argv)),
        network,
        state.config.config.user,
        state.config.config.working_dir
    );
    if !r.mounts.is_empty() || script.is_some() || r.security.is_some() {
        let file = script.as_ref().and_then(|s| s.file.as_ref());
        key_text.push_str(&format!(
            "\0{}\0{file:?}\0{:?}",
            mounts.key_text, r.security
        ));
    }
    let runtime_key = run.build.opts.runtime.key_text();
    if !runtime_key.is_empty() {
        key_text.push_str(&format!("\0{runtime_key}"));
    }
    let key = CacheKey::for_step(
        &state.key,
        &key_text,
        &state.args,
        Some(&state.config.config.env.join("\0")),
    );
    if let Some((layer, origin)) = cache_hit(run, &key)? {
        add_layer(run, state, key, layer, &created_by, origin)?;
        return Ok(Outcome::Cached);
    }
    // The build's first RUN probes what the host allows (probe.rs) while the layers below
    // unpack, rather than after: a cold build's first step waits on both.
    let sandbox = &run.build.opts.sandbox;
    let lower = std::thread::scope(|scope| {
        if !sandbox.is_chosen() {
            scope.spawn(|| sandbox.get());
        }
        lowerdirs(run, &state.layers)
    })?;
    let scratch = run
        .build
        .store
        .layout()
        .snapshot_temp(store::layout::RUN_TEMP_PREFIX);
    let upper = scratch.join("fs");
    let work = scratch.join("work");
    let io_err = |op: &'static str, p: &Path, e: std::io::Error| {
        run.step_error(inst, StepError::io(op, p)(e))
    };
    std::fs::create_dir_all(&upper).map_err(|e| io_err("creating", &upper, e))?;
    std::fs::create_dir_all(&work).map_err(|e| io_err("creating", &work, e))?;
    let root = run.build.store.layout().root().to_path_buf();
    let mut waits = Vec::new();
    let active = run_mounts::activate(&root, mounts, &scratch, &mut |m| waits.push(m.to_string()))
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&scratch);
            run.step_error(inst, e)
        })?;
    let mut extra_mounts = active.specs.clone();
    if let Some((target, data)) = script.and_then(|s| s.file) {
        extra_mounts.push(exec::MountSpec::File {
            target,
            data,
            mode: 0o755,
            uid: 0,
            gid: 0,
        });
    }
    let mut run_env = state.run_env();
    run_env.extend(active.env.iter().cloned());
    let (isolation, snapshotter) = run.build.opts.sandbox.get();
    let spec = RunSpec {
        lowerdirs: lower,
        upperdir: upper.clone(),
        workdir_overlay: work.clone(),
        argv: argv.clone(),
        env: run_env,
        cwd: if state.config.config.working_dir.is_empty() {
            "/".into()
        } else {
            state.config.config.working_dir.clone()
        },
        user: state.config.config.user.clone(),
        network,
        security: match r.security {
            Some(crate::dockerfile::SecurityMode::Insecure) => exec::Security::Insecure,
            _ => exec::Security::Sandbox,
        },
        hostname: "strata".to_string(),
        snapshotter,
        isolation,
        extra_mounts,
        runtime: run.build.opts.runtime.clone(),
        stop: Some(run.build.stop.clone()),
    };
    let info = info.clone();
    for w in waits {
        run.step_output(&info, w.as_bytes());
    }
    let outcome = {
        let mut on_output = |chunk: &[u8]| run.step_output(&info, chunk);
        exec::run_step_with_output(&spec, &mut on_output)
    };
    drop(active);
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&scratch);
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(source) => {
            cleanup();
            return Err(BuildError::Sandbox {
                location: run.location(inst.span.start),
                span: inst.span,
                source,
            });
        }
    };
    if !outcome.status.is_success() {
        cleanup();
        return Err(BuildError::RunFailed {
            location: run.location(inst.span.start),
            span: inst.span,
            command: argv.join(" "),
            status: outcome.status,
            output: String::from_utf8_lossy(&outcome.output_tail)
                .trim_end()
                .to_string(),
        });
    }
    let diff_opts = crate::differ::DiffOptions {
        source_date_epoch: run.build.opts.source_date_epoch,
    };
    // A stage the image does not hold keeps the layer as its snapshot and diff_id; the
    // blob is made if something needs it (docs/design.md §4.8).
    let write_tar =
        |w: &mut dyn std::io::Write| crate::differ::write_layer(&upper, w, &diff_opts).map(|_| ());
    let (layer, origin) = if run.writes_layers {
        let layer = commit_layer(run.build.store, run.build.lease, write_tar);
        (layer, Origin::Built)
    } else {
        (hash_layer(write_tar), Origin::BuiltUnwritten)
    };
    let layer = match layer {
        Ok(l) => l,
        Err(e) => {
            cleanup();
            return Err(run.step_error(inst, StepError::RunLayer(e)));
        }
    };
    let chain = chain_of(&state.layers, &layer);
    let parent = state.layers.last().map(|_| {
        let ids: Vec<store::Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        Store::chain_ids(&ids).pop().expect("non-empty")
    });
    let committed =
        run.build
            .store
            .commit_snapshot(run.build.lease, &chain, parent.as_ref(), &upper);
    cleanup();
    committed?;
    add_layer(run, state, key, layer, &created_by, origin)?;
    Ok(Outcome::Done)
}
