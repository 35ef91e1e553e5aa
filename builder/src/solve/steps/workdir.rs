//! WORKDIR: sets the config's working directory and, as BuildKit's mkdir does, makes a layer
//! holding the directories it creates.

use super::{lowerdirs, record_config_step, resolve_chown, Outcome};
use crate::cache::CacheKey;
use crate::copy::{self, CopyOptions, CopyPlan};
use crate::dockerfile::{expand_word, Instruction};
use crate::layers::commit_layer;
use crate::rootfs::UnionFs;
use crate::solve::cache_hit::{add_layer, cache_hit, Origin};
use crate::solve::state::{now_or_epoch, BuildRun, StageState};
use crate::solve::{Result, StepError};

/// WORKDIR makes a layer for any directory but `/`, as BuildKit's mkdir does: the missing
/// directories (owned by the current USER, as BuildKit creates them), or nothing when the
/// directory exists (an empty layer, still a layer).
pub(super) fn workdir_step(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    dir: &str,
) -> Result<Outcome> {
    let dir =
        expand_word(dir, &state.expand_env(), state.escape).map_err(|e| run.step_error(inst, e))?;
    let current = if state.config.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        state.config.config.working_dir.clone()
    };
    let joined = if dir.starts_with('/') {
        dir
    } else {
        format!("{current}/{dir}")
    };
    let path = format!("/{}", copy::clean_abs(&joined));
    state.config.config.working_dir = path.clone();
    let path = path.as_str();
    let created_by = format!("WORKDIR {path}");
    if path == "/" {
        record_config_step(run, state, &created_by);
        return Ok(Outcome::Done);
    }
    let lower = lowerdirs(run, &state.layers)?;
    let union = UnionFs::new(lower);
    let exists = union
        .is_dir(path)
        .map_err(|e| run.step_error(inst, StepError::io("checking", path)(e)))?;
    let user = state.config.config.user.clone();
    let owner = if user.is_empty() || exists {
        None
    } else {
        Some(resolve_chown(&union, &user).map_err(|e| run.step_error(inst, e))?)
    };
    let key_text = format!("{created_by}\0{user}\0{exists}");
    let key = CacheKey::for_step(&state.key, &key_text, &state.args, Some("mkdir"));
    if let Some((layer, origin)) = cache_hit(run, &key)? {
        add_layer(run, state, key, layer, &created_by, origin)?;
        return Ok(Outcome::Cached);
    }
    let opts = CopyOptions {
        chown: owner,
        epoch: run.build.opts.source_date_epoch,
        ..Default::default()
    };
    let mut plan = CopyPlan::default();
    if !exists {
        let mut dir = copy::fresh_dir(&copy::clean_abs(path), &opts);
        dir.mtime = now_or_epoch(run.build.opts.source_date_epoch);
        plan.items.insert(dir.dest.clone(), dir);
        plan.add_parents(&union, &opts)
            .map_err(|e| run.step_error(inst, StepError::Tree(e)))?;
    }
    let layer = commit_layer(run.build.store, run.build.lease, |w| {
        plan.write_tar(w).map(|_| ())
    })
    .map_err(|e| run.step_error(inst, StepError::Layer(e)))?;
    add_layer(run, state, key, layer, &created_by, Origin::Built)?;
    Ok(Outcome::Done)
}
