//! One handler per instruction. Metadata instructions change the config and the cache key;
//! RUN, COPY, ADD (and WORKDIR when it must create the directory) make a layer, first
//! looking their key up in the build cache.

use std::path::{Path, PathBuf};

use store::{LayerRef, Store};

use super::cache_hit::{add_layer, cache_hit, chain_of, Origin};
use super::context::{sha256_file, Context};
use super::stage::{now_or_epoch, BuildRun, StageResult, StageState};
use super::{history_text, stage_ref, BuildError, Result};
use crate::cache::CacheKey;
use crate::copy::{self, CopyOptions, CopyPlan, DirTree};
use crate::dockerfile::{
    expand_word, expand_words, Command, Healthcheck, Instruction, ShellOrExec,
};
use crate::exec::{self, RunSpec};
use crate::image::{Empty, HealthConfig, History};
use crate::layers::{commit_layer, is_archive, retar_under};
use crate::progress::StepInfo;
use crate::rootfs::UnionFs;

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
    let err = |run: &BuildRun, m: String| run.step_error(inst, m);
    let env = state.expand_env();
    let word = |w: &str| expand_word(w, &env).map_err(|e| e.to_string());
    let words = |w: &str| expand_words(w, &env).map_err(|e| e.to_string());
    let history_text;
    match &inst.command {
        Command::Run(r) => return run_step(run, state, inst, info, r, done, ctx),
        Command::Copy(c) => {
            let from = c.from.as_deref();
            return copy_step(
                run,
                state,
                inst,
                CopySpec {
                    srcs: &c.srcs,
                    dest: &c.dest,
                    from,
                    chown: c.chown.as_deref(),
                    chmod: c.chmod.as_deref(),
                    is_add: false,
                    heredocs: &c.heredocs,
                    link: c.link,
                    parents: c.parents,
                    exclude: &c.exclude,
                    checksum: None,
                    keep_git_dir: false,
                },
                done,
                ctx,
            );
        }
        Command::Add(a) => {
            return copy_step(
                run,
                state,
                inst,
                CopySpec {
                    srcs: &a.srcs,
                    dest: &a.dest,
                    from: None,
                    chown: a.chown.as_deref(),
                    chmod: a.chmod.as_deref(),
                    is_add: true,
                    heredocs: &a.heredocs,
                    link: a.link,
                    parents: false,
                    exclude: &a.exclude,
                    checksum: a.checksum.as_deref(),
                    keep_git_dir: a.keep_git_dir.unwrap_or(false),
                },
                done,
                ctx,
            );
        }
        Command::Workdir(dir) => {
            let dir = word(dir).map_err(|m| err(run, m))?;
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
            return workdir_step(run, state, inst, &path);
        }
        Command::Env(pairs) => {
            let mut text = Vec::new();
            for kv in pairs {
                let value = word(&kv.value).map_err(|m| err(run, m))?;
                state.config.config.env_set(&kv.key, &value);
                text.push(format!("{}={}", kv.key, value));
            }
            history_text = format!("ENV {}", text.join(" "));
        }
        Command::Arg(defs) => {
            // The history shows the declaration (`ARG A=default`), not the value used.
            let mut text = Vec::new();
            for def in defs {
                let default = match &def.default {
                    Some(d) => Some(word(d).map_err(|m| err(run, m))?),
                    None => None,
                };
                text.push(match &default {
                    Some(d) => format!("{}={d}", def.name),
                    None => def.name.clone(),
                });
                let value = match (run.opts.build_args.get(&def.name), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(d),
                    (None, None) => run
                        .meta_args
                        .iter()
                        .rev()
                        .find(|(k, _)| *k == def.name)
                        .map(|(_, v)| v.clone()),
                };
                state.args.retain(|(k, _)| *k != def.name);
                state.declared_args.push((def.name.clone(), value.clone()));
                if let Some(v) = value {
                    state.args.push((def.name.clone(), v));
                }
            }
            history_text = format!("ARG {}", text.join(" "));
        }
        Command::Label(pairs) => {
            let mut text = Vec::new();
            for kv in pairs {
                let key = word(&kv.key).map_err(|m| err(run, m))?;
                let value = word(&kv.value).map_err(|m| err(run, m))?;
                text.push(format!("{key}={value}"));
                state.config.config.labels.insert(key, value);
            }
            history_text = format!("LABEL {}", text.join(" "));
        }
        Command::Expose(ports) => {
            let mut added = Vec::new();
            for p in ports {
                for spec in words(p).map_err(|m| err(run, m))? {
                    added.extend(port_specs(&spec).map_err(|m| err(run, m))?);
                }
            }
            for port in &added {
                state
                    .config
                    .config
                    .exposed_ports
                    .insert(port.clone(), Empty {});
            }
            history_text = format!("EXPOSE {}", history_text::port_map(&added));
        }
        Command::Volume(vols) => {
            let mut expanded = Vec::new();
            for v in vols {
                let v = word(v).map_err(|m| err(run, m))?;
                state.config.config.volumes.insert(v.clone(), Empty {});
                expanded.push(v);
            }
            history_text = format!("VOLUME {}", history_text::plain_list(&expanded));
        }
        Command::User(user) => {
            let user = word(user).map_err(|m| err(run, m))?;
            history_text = format!("USER {user}");
            state.config.config.user = user;
        }
        Command::Cmd(cmd) => {
            state.config.config.cmd = Some(argv(state, cmd));
            state.cmd_set_here = true;
            history_text = format!(
                "CMD {}",
                history_text::quoted_list(state.config.config.cmd.as_deref().unwrap_or(&[]))
            );
        }
        Command::Entrypoint(ep) => {
            state.config.config.entrypoint = Some(argv(state, ep));
            if !state.cmd_set_here {
                state.config.config.cmd = None;
            }
            history_text = format!(
                "ENTRYPOINT {}",
                history_text::quoted_list(state.config.config.entrypoint.as_deref().unwrap_or(&[]))
            );
        }
        Command::Shell(shell) => {
            state.config.config.shell = Some(shell.clone());
            history_text = format!("SHELL {}", history_text::plain_list(shell));
        }
        Command::StopSignal(sig) => {
            let sig = word(sig).map_err(|m| err(run, m))?;
            history_text = format!("STOPSIGNAL {sig}");
            state.config.config.stop_signal = Some(sig);
        }
        Command::Healthcheck(h) => {
            state.config.config.healthcheck = Some(match h {
                Healthcheck::None => HealthConfig {
                    test: vec!["NONE".to_string()],
                    ..Default::default()
                },
                Healthcheck::Cmd { test, options } => HealthConfig {
                    test: test.clone(),
                    interval: options.interval as i64,
                    timeout: options.timeout as i64,
                    start_period: options.start_period as i64,
                    start_interval: options.start_interval as i64,
                    retries: i64::from(options.retries),
                },
            });
            history_text = match &state.config.config.healthcheck {
                Some(h) => format!("HEALTHCHECK {}", history_text::healthcheck(h)),
                None => "HEALTHCHECK".to_string(),
            };
        }
        Command::Onbuild(o) => {
            state
                .config
                .config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(o.expression.clone());
            // BuildKit records no history entry for ONBUILD; the cache key still moves.
            let text = format!("ONBUILD {}", o.expression);
            state.key = CacheKey::for_step(&state.key, &text, &state.args, None);
            return Ok(Outcome::Done);
        }
        Command::Maintainer(m) => {
            state.config.author = Some(m.clone());
            history_text = format!("MAINTAINER {m}");
        }
    }
    state.key = CacheKey::for_step(&state.key, &history_text, &state.args, None);
    push_history(state, &history_text, run.opts.source_date_epoch, true, None);
    Ok(Outcome::Done)
}

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

/// EXPOSE's port specs as docker parses them: `80` is `80/tcp`, `8000-8002/udp` is three
/// ports.
fn port_specs(spec: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let bad = || format!("invalid port spec {spec:?}");
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn json(v: Option<&Vec<String>>) -> String {
    serde_json::to_string(&v.cloned().unwrap_or_default()).unwrap_or_default()
}

pub(super) fn push_history(
    state: &mut StageState,
    created_by: &str,
    epoch: Option<i64>,
    empty: bool,
    created: Option<i64>,
) {
    let secs = created.unwrap_or_else(|| now_or_epoch(epoch));
    state.config.history.push(History {
        created: Some(rfc3339(secs)),
        created_by: Some(created_by.to_string()),
        comment: Some("buildkit.dockerfile.v0".to_string()),
        empty_layer: empty,
    });
}

pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || "1970-01-01T00:00:00Z".to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The snapshot dirs of `layers`, top first, unpacking any that are missing.
pub fn lowerdirs(run: &BuildRun, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
    super::wait_for_cache_imports(run.remote)?;
    let ids: Vec<store::Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let is_missing = Store::chain_ids(&ids)
        .iter()
        .any(|c| !run.store.snapshot_dir(c).is_dir());
    if is_missing {
        // Unpacking is long work: let other processes at the database meanwhile.
        run.store.release_meta()?;
    }
    Ok(run.store.ensure_layer_snapshots(run.lease, layers)?)
}

fn run_step(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    info: &StepInfo,
    r: &crate::dockerfile::Run,
    done: &[Option<StageResult>],
    ctx: &mut Context,
) -> Result<Outcome> {
    if r.security == Some(crate::dockerfile::SecurityMode::Insecure) && !run.opts.allow_insecure {
        return Err(run.step_error(
            inst,
            "RUN --security=insecure is not allowed: pass --allow security.insecure".into(),
        ));
    }
    if r.network == Some(crate::dockerfile::NetworkMode::Host) && !run.opts.allow_network_host {
        return Err(run.step_error(
            inst,
            "RUN --network=host is not allowed: pass --allow network.host".into(),
        ));
    }
    let mounts = super::run_mounts::resolve(run, state, &r.mounts, done, ctx)
        .map_err(|m| run.step_error(inst, m))?;
    let script = match (&r.cmd, r.heredocs.is_empty()) {
        (_, true) => None,
        (ShellOrExec::Shell(line), false) => Some(super::heredocs::run_script(
            &state.config.config.shell_or_default(),
            line,
            &r.heredocs,
        )),
        (ShellOrExec::Exec(_), false) => {
            return Err(run.step_error(inst, "RUN heredocs need the shell form".into()))
        }
    };
    let argv = match &script {
        Some(s) => s.argv.clone(),
        None => argv(state, &r.cmd),
    };
    let network = match r.network {
        Some(crate::dockerfile::NetworkMode::None) => exec::Network::None,
        Some(crate::dockerfile::NetworkMode::Host) => exec::Network::Host,
        _ => run.opts.network,
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
    let lower = lowerdirs(run, &state.layers)?;
    let scratch = run
        .store
        .layout()
        .snapshot_temp(store::layout::RUN_TEMP_PREFIX);
    let upper = scratch.join("fs");
    let work = scratch.join("work");
    let io_err = |op: &str, p: &Path, e: std::io::Error| {
        run.step_error(inst, format!("{op} {}: {e}", p.display()))
    };
    std::fs::create_dir_all(&upper).map_err(|e| io_err("creating", &upper, e))?;
    std::fs::create_dir_all(&work).map_err(|e| io_err("creating", &work, e))?;
    let root = run.store.layout().root().to_path_buf();
    let mut waits = Vec::new();
    let active =
        super::run_mounts::activate(&root, mounts, &scratch, &mut |m| waits.push(m.to_string()))
            .map_err(|m| {
                let _ = std::fs::remove_dir_all(&scratch);
                run.step_error(inst, m)
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
        snapshotter: run.opts.snapshotter,
        extra_mounts,
        stop: Some(run.stop.clone()),
    };
    let info = info.clone();
    for w in waits {
        run.step_output(&info, w.as_bytes());
    }
    // Never hold the database across a RUN (docs/design.md §2); this also flushes the lease.
    run.store.release_meta()?;
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
        source_date_epoch: run.opts.source_date_epoch,
    };
    let layer = commit_layer(run.store, run.lease, |w| {
        crate::differ::write_layer(&upper, w, &diff_opts).map(|_| ())
    });
    let layer = match layer {
        Ok(l) => l,
        Err(e) => {
            cleanup();
            return Err(run.step_error(inst, format!("writing the layer: {e}")));
        }
    };
    let chain = chain_of(&state.layers, &layer);
    let parent = state.layers.last().map(|_| {
        let ids: Vec<store::Digest> = state.layers.iter().map(|l| l.diff_id.clone()).collect();
        Store::chain_ids(&ids).pop().expect("non-empty")
    });
    let committed = run
        .store
        .commit_snapshot(run.lease, &chain, parent.as_ref(), &upper);
    cleanup();
    committed?;
    add_layer(run, state, key, layer, &created_by, Origin::Built)?;
    Ok(Outcome::Done)
}

/// WORKDIR makes a layer for any directory but `/`, as BuildKit's mkdir does: the missing
/// directories (owned by the current USER, as BuildKit creates them), or nothing when the
/// directory exists (an empty layer, still a layer).
fn workdir_step(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    path: &str,
) -> Result<Outcome> {
    let created_by = format!("WORKDIR {path}");
    if path == "/" {
        state.key = CacheKey::for_step(&state.key, &created_by, &state.args, None);
        push_history(state, &created_by, run.opts.source_date_epoch, true, None);
        return Ok(Outcome::Done);
    }
    let lower = lowerdirs(run, &state.layers)?;
    let union = UnionFs::new(lower);
    let exists = union
        .is_dir(path)
        .map_err(|e| run.step_error(inst, format!("checking {path}: {e}")))?;
    let user = state.config.config.user.clone();
    let owner = if user.is_empty() || exists {
        None
    } else {
        Some(resolve_chown(&union, &user).map_err(|m| run.step_error(inst, m))?)
    };
    let key_text = format!("{created_by}\0{user}\0{exists}");
    let key = CacheKey::for_step(&state.key, &key_text, &state.args, Some("mkdir"));
    if let Some((layer, origin)) = cache_hit(run, &key)? {
        add_layer(run, state, key, layer, &created_by, origin)?;
        return Ok(Outcome::Cached);
    }
    let opts = CopyOptions {
        chown: owner,
        epoch: run.opts.source_date_epoch,
        ..Default::default()
    };
    let mut plan = CopyPlan::default();
    if !exists {
        let mut dir = copy::fresh_dir(&copy::clean_abs(path), &opts);
        dir.mtime = now_or_epoch(run.opts.source_date_epoch);
        plan.items.insert(dir.dest.clone(), dir);
        plan.add_parents(&union, &opts)
            .map_err(|e| run.step_error(inst, e.to_string()))?;
    }
    let layer = commit_layer(run.store, run.lease, |w| plan.write_tar(w).map(|_| ()))
        .map_err(|e| run.step_error(inst, e.to_string()))?;
    add_layer(run, state, key, layer, &created_by, Origin::Built)?;
    Ok(Outcome::Done)
}

struct CopySpec<'a> {
    srcs: &'a [String],
    dest: &'a str,
    from: Option<&'a str>,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    is_add: bool,
    heredocs: &'a [crate::dockerfile::Heredoc],
    link: bool,
    parents: bool,
    exclude: &'a [String],
    checksum: Option<&'a str>,
    keep_git_dir: bool,
}

fn copy_step(
    run: &mut BuildRun,
    state: &mut StageState,
    inst: &Instruction,
    spec: CopySpec,
    done: &[Option<StageResult>],
    ctx: &mut Context,
) -> Result<Outcome> {
    let name = if spec.is_add { "ADD" } else { "COPY" };
    let env = state.expand_env();
    let location = run.location(inst.span.start);
    let e = |message: String| super::BuildError::Step {
        location: location.clone(),
        message,
    };
    let mut srcs: Vec<String> = Vec::new();
    for s in spec.srcs {
        srcs.push(expand_word(s, &env).map_err(|x| e(x.to_string()))?);
    }
    // ADD of URLs and git repositories (fetch.rs); the rest are local sources.
    let (gits, urls): (Vec<String>, Vec<String>) = if spec.is_add {
        let remote: Vec<String> = srcs
            .iter()
            .filter(|s| super::fetch::is_git_url(s) || super::fetch::is_url(s))
            .cloned()
            .collect();
        srcs.retain(|s| !remote.contains(s));
        remote
            .into_iter()
            .partition(|s| super::fetch::is_git_url(s))
    } else {
        (Vec::new(), Vec::new())
    };
    if spec.checksum.is_some() && (urls.len() != 1 || !gits.is_empty() || !srcs.is_empty()) {
        return Err(e("ADD --checksum needs exactly one http(s) source".into()));
    }
    let dest = expand_word(spec.dest, &env).map_err(|x| e(x.to_string()))?;
    let workdir = if state.config.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        state.config.config.working_dir.clone()
    };
    let dest_abs = if dest.starts_with('/') {
        dest.clone()
    } else {
        format!("{workdir}/{dest}")
    };
    let dest_abs = if dest.ends_with('/') || dest == "." {
        format!("{}/", dest_abs.trim_end_matches('/'))
    } else {
        dest_abs
    };

    let below = UnionFs::new(lowerdirs(run, &state.layers)?);
    let chown = match spec.chown {
        None => None,
        Some(c) => {
            let c = expand_word(c, &env).map_err(|x| e(x.to_string()))?;
            Some(resolve_chown(&below, &c).map_err(e)?)
        }
    };
    let chmod_flag = match spec.chmod {
        None => None,
        Some(m) => Some(super::copy_flags::parse_chmod(m).map_err(e)?),
    };
    let chmod = match chmod_flag {
        Some(super::copy_flags::Chmod::Octal(m)) => Some(m),
        _ => None,
    };
    // --link: the layer may not depend on what is below it.
    let dest_is_dir = !spec.link && below.is_dir(&dest_abs).unwrap_or(false);
    let source_count = srcs.len() + urls.len() + gits.len() + spec.heredocs.len();
    if source_count > 1 && !dest_abs.ends_with('/') && !dest_is_dir {
        return Err(e(copy::CopyError::DestinationNotDir.to_string()));
    }
    let opts = CopyOptions {
        chown,
        chmod,
        keep_owner: spec.from.is_some(),
        epoch: run.opts.source_date_epoch,
    };

    // Where the sources come from: another stage or image, or the context.
    let from_union = match spec.from {
        None => None,
        Some(from) => {
            let from = expand_word(from, &env).map_err(|x| e(x.to_string()))?;
            let layers = match stage_ref(run.dockerfile, &from, usize::MAX)
                .and_then(|i| done.get(i).cloned().flatten())
            {
                Some(stage) => stage.layers,
                None => {
                    let r = store::Reference::parse(&from)
                        .map_err(|x| e(format!("COPY --from={from}: {x}")))?;
                    let manifest = run.resolve_image(&r, &run.location(inst.span.start))?;
                    run.store.image(&manifest)?.layers
                }
            };
            Some(UnionFs::new(lowerdirs(run, &layers)?))
        }
    };
    let excluded = |rel: &str| ctx.is_excluded(rel);
    let dir_tree = DirTree {
        root: ctx.root.clone(),
        is_excluded: &excluded,
    };
    let tree: &dyn copy::SourceTree = match &from_union {
        Some(u) => u,
        None => &dir_tree,
    };
    let excluding = match spec.exclude.is_empty() {
        true => None,
        false => Some(super::copy_flags::ExcludeTree::new(tree, spec.exclude, &srcs).map_err(e)?),
    };
    let tree: &dyn copy::SourceTree = match &excluding {
        Some(t) => t,
        None => tree,
    };
    // ADD extracts local archives instead of copying them.
    let mut archives: Vec<PathBuf> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    for s in &srcs {
        // Found as any context source is: inside the context, .dockerignore applied.
        let archive = match copy::clean_rel(s) {
            Some(rel) if spec.is_add && from_union.is_none() => tree
                .stat_follow(&rel)
                .map_err(|x| e(format!("reading {s}: {x}")))?
                .filter(|(real, meta)| meta.is_file() && is_archive(real).unwrap_or(false))
                .map(|(real, _)| real),
            _ => None,
        };
        match archive {
            Some(real) => archives.push(real),
            None => plain.push(s.clone()),
        }
    }
    let mut plan = if plain.is_empty() {
        CopyPlan::default()
    } else if spec.parents {
        super::copy_flags::plan_parents(tree, &plain, &dest_abs, &opts).map_err(e)?
    } else {
        copy::plan(tree, &plain, &dest_abs, dest_is_dir, &opts).map_err(|x| e(x.to_string()))?
    };
    drop(excluding);
    let scratch = super::copy_flags::Scratch(
        run.store
            .layout()
            .snapshot_temp(store::layout::COPY_TEMP_PREFIX),
    );
    let mtime = now_or_epoch(run.opts.source_date_epoch);
    super::copy_flags::add_heredocs(
        &mut plan,
        spec.heredocs,
        &env,
        &scratch.0,
        &dest_abs,
        dest_is_dir,
        &opts,
        mtime,
    )
    .map_err(e)?;
    // Each download stays locked against a prune until the layer is written.
    let mut downloads = Vec::new();
    for url in &urls {
        let root = run.store.layout().root();
        let got =
            super::fetch::download(root, url, spec.checksum, &run.opts.build_args).map_err(e)?;
        super::copy_flags::add_file(
            &mut plan,
            got.path.clone(),
            &got.file_name,
            &dest_abs,
            dest_is_dir,
            0o600,
            &opts,
            got.mtime.unwrap_or(0),
        )
        .map_err(e)?;
        downloads.push(got);
    }
    let mut git_commits = Vec::new();
    for g in &gits {
        git_commits.push(super::fetch::git_resolve(g).map_err(e)?);
    }
    if let Some(c) = &chmod_flag {
        for item in plan.items.values_mut() {
            item.mode =
                super::copy_flags::apply_chmod(c, item.mode, item.kind == copy::ItemKind::Dir);
        }
    }
    let below_for_parents = if spec.link {
        UnionFs::default()
    } else {
        below.clone()
    };
    // An extracted archive lands in the destination directory, which the layer holds too.
    let archive_dir = copy::clean_abs(&dest_abs);
    if !archives.is_empty() && !archive_dir.is_empty() && !plan.items.contains_key(&archive_dir) {
        plan.add_dir(&archive_dir, &below_for_parents, &opts)
            .map_err(|x| e(x.to_string()))?;
    }
    plan.add_parents(&below_for_parents, &opts)
        .map_err(|x| e(x.to_string()))?;
    drop(dir_tree);
    let mut content = |p: &Path| {
        if from_union.is_none() && p.starts_with(&ctx.root) {
            ctx.digest(p)
        } else {
            sha256_file(p)
        }
    };
    let mut fingerprint = plan
        .fingerprint(&mut content)
        .map_err(|x| e(x.to_string()))?;
    for (g, commit) in gits.iter().zip(&git_commits) {
        fingerprint.push_str(&format!(" git:{g}@{commit}:{}", spec.keep_git_dir));
    }
    if let Some(c) = spec.chmod {
        fingerprint.push_str(&format!(" chmod:{c}"));
    }
    for a in &archives {
        fingerprint.push_str(&format!(
            " archive:{}",
            sha256_file(a).map_err(|x| e(format!("reading {}: {x}", a.display())))?
        ));
    }
    let created_by = format!("{name} {} {} # buildkit", srcs.join(" "), dest);
    let key_text = format!(
        "{name} {}\0{dest_abs}\0{}\0{}",
        srcs.join("\0"),
        urls.join("\0"),
        gits.join("\0")
    );
    // --link: keyed without the parent, then stacked: a changed base keeps this layer.
    let parent_key = state.key.clone();
    let key_parent = if spec.link {
        CacheKey::for_base("link", "")
    } else {
        state.key.clone()
    };
    // The instruction is expanded already; a --link layer does not change with other ARGs.
    let key_args: &[(String, String)] = if spec.link { &[] } else { &state.args };
    let key = CacheKey::for_step(&key_parent, &key_text, key_args, Some(&fingerprint));
    let restack = |state: &mut StageState, key: &CacheKey| {
        if spec.link {
            state.key = CacheKey::for_step(&parent_key, "link", &[], Some(key.as_str()));
        }
    };
    if let Some((layer, origin)) = cache_hit(run, &key)? {
        add_layer(run, state, key.clone(), layer, &created_by, origin)?;
        restack(state, &key);
        return Ok(Outcome::Cached);
    }
    let mut checkouts = Vec::new();
    for (g, commit) in gits.iter().zip(&git_commits) {
        let co = super::fetch::git_checkout(g, commit, spec.keep_git_dir, &scratch.0).map_err(e)?;
        let tree = DirTree {
            root: co.dir.clone(),
            is_excluded: &|_| false,
        };
        let src = if co.subdir.is_empty() {
            ".".to_string()
        } else {
            co.subdir.clone()
        };
        let dir_dest = format!("{}/", dest_abs.trim_end_matches('/'));
        let mut p =
            copy::plan(&tree, &[src], &dir_dest, true, &opts).map_err(|x| e(x.to_string()))?;
        if let Some(c) = &chmod_flag {
            for item in p.items.values_mut() {
                item.mode =
                    super::copy_flags::apply_chmod(c, item.mode, item.kind == copy::ItemKind::Dir);
            }
        }
        plan.items.extend(p.items);
        checkouts.push(co);
    }
    if !checkouts.is_empty() {
        plan.add_parents(&below_for_parents, &opts)
            .map_err(|x| e(x.to_string()))?;
    }
    let archive_dest = dest_abs.clone();
    // Writing the layer is long work: let other processes at the database meanwhile.
    run.store.release_meta()?;
    let layer = commit_layer(
        run.store,
        run.lease,
        |w: &mut dyn std::io::Write| -> std::result::Result<(), String> {
            if archives.is_empty() {
                plan.write_tar(w).map_err(|x| x.to_string())?;
                return Ok(());
            }
            // Entries of the plan first, then each archive's entries re-rooted under dest; a
            // tar reader takes the concatenation once the end-of-archive blocks between are cut.
            let mut buf = Vec::new();
            if !plan.items.is_empty() {
                plan.write_tar(&mut buf).map_err(|x| x.to_string())?;
                buf.truncate(buf.len().saturating_sub(1024));
                w.write_all(&buf).map_err(|x| x.to_string())?;
            }
            for (i, a) in archives.iter().enumerate() {
                let f = crate::rootfs::open_nofollow(a)
                    .map_err(|x| format!("opening {}: {x}", a.display()))?;
                let mut out = Vec::new();
                retar_under(f, &archive_dest, &mut out)
                    .map_err(|x| format!("extracting {}: {x}", a.display()))?;
                if i + 1 < archives.len() {
                    out.truncate(out.len().saturating_sub(1024));
                }
                w.write_all(&out).map_err(|x| x.to_string())?;
            }
            Ok(())
        },
    )
    .map_err(|x| e(x.to_string()))?;
    drop(checkouts);
    drop(downloads);
    add_layer(run, state, key.clone(), layer, &created_by, Origin::Built)?;
    restack(state, &key);
    Ok(Outcome::Done)
}

/// `--chown=user[:group]` to numbers, looked up in the image's /etc/passwd and /etc/group.
fn resolve_chown(root: &UnionFs, spec: &str) -> std::result::Result<(u32, u32), String> {
    let read = |p: &str| {
        root.read(p)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let user = exec::user::resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| e.to_string())?;
    Ok((user.uid, user.gid))
}
