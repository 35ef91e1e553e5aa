//! Planning the `--mount`s of one RUN: parse and check each, read secrets, resolve bind
//! sources, and describe them all for the step's cache key. Nothing is created on disk here
//! (`activate.rs` does that when the step runs).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use super::cache_dirs::{check_cache_id, encode_name};
use super::error::RunMountError;
use super::flags::SecretSource;
use crate::copy::{self, CopyOptions, DirTree};
use crate::dockerfile::mount::{parse_mount, Mount, MountType};
use crate::rootfs::UnionFs;
use crate::solve::context::Context;
use crate::solve::state::{BuildRun, StageResult, StageState};
use crate::solve::{stage_ref, steps};

/// The mounts of one RUN, resolved: what the cache key holds and what the sandbox gets.
pub struct Resolved {
    pub(super) mounts: Vec<Planned>,
    /// Describes every mount (ids, targets, options, bind-source content) but no secret
    /// value: it goes into the step's cache key.
    pub key_text: String,
}

pub(super) enum Planned {
    Cache {
        name: String,
        id: String,
        target: String,
        sharing: String,
        is_readonly: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// A host path (a context file or directory); `rw` binds get a throw-away overlay.
    HostBind {
        source: PathBuf,
        target: String,
        is_readonly: bool,
    },
    /// A path of another stage or image, through an overlay of its layers.
    UnionBind {
        lowerdirs: Vec<PathBuf>,
        subpath: String,
        is_dir: bool,
        target: String,
        is_readonly: bool,
    },
    Secret {
        data: Vec<u8>,
        target: Option<String>,
        env: Option<String>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        socket: PathBuf,
        target: String,
    },
}

/// Parse and check the `--mount`s of a RUN and compute their key text. Secrets are read
/// here (so a missing one fails before anything runs); nothing is created on disk.
/// `named`: the named contexts `from=` names (by the name as written), already resolved.
pub fn resolve(
    run: &BuildRun,
    state: &StageState,
    specs: &[String],
    done: &[Option<StageResult>],
    named: &BTreeMap<String, StageResult>,
    ctx: &mut Context,
) -> Result<Resolved, RunMountError> {
    let env = state.expand_env();
    let workdir = if state.config.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        state.config.config.working_dir.clone()
    };
    let mut mounts = Vec::new();
    let mut key = Vec::new();
    let mut ssh_count = 0;
    for spec in specs {
        let mut expand = |w: &str| crate::dockerfile::expand_word(w, &env, state.escape);
        let m = parse_mount(spec, &mut expand)?;
        let target = m.target.as_deref().map(|t| {
            let t = if t.starts_with('/') {
                t.to_string()
            } else {
                format!("{workdir}/{t}")
            };
            format!("/{}", copy::clean_abs(&t))
        });
        let planned = match m.kind {
            MountType::Cache => cache_mount(&m, target)?,
            MountType::Tmpfs => Planned::Tmpfs {
                target: target.ok_or(RunMountError::NoTarget("tmpfs"))?,
                size: m.size.as_deref().map(parse_size).transpose()?,
            },
            MountType::Bind => bind_mount(run, &m, target, done, named, ctx, &mut key)?,
            MountType::Secret => match secret_mount(run, &m, target)? {
                Some(p) => p,
                None => continue,
            },
            MountType::Ssh => {
                let id = m.id.clone().unwrap_or_else(|| "default".to_string());
                let target =
                    target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_count}"));
                ssh_count += 1;
                match run.build.opts.ssh.get(&id) {
                    Some(socket) => Planned::Ssh {
                        socket: socket.clone(),
                        target,
                    },
                    None if m.required => return Err(RunMountError::NoSshKey(id)),
                    None => continue,
                }
            }
        };
        key.push(describe(&m, &planned));
        mounts.push(planned);
    }
    Ok(Resolved {
        mounts,
        key_text: key.join("\n"),
    })
}

fn describe(m: &Mount, p: &Planned) -> String {
    match p {
        Planned::Cache {
            id,
            target,
            sharing,
            is_readonly,
            ..
        } => format!(
            "cache id={id} target={target} sharing={sharing} ro={is_readonly} {:?}/{:?}/{:?}",
            m.mode, m.uid, m.gid
        ),
        Planned::Tmpfs { target, size } => format!("tmpfs target={target} size={size:?}"),
        Planned::HostBind {
            target,
            is_readonly,
            ..
        }
        | Planned::UnionBind {
            target,
            is_readonly,
            ..
        } => format!("bind target={target} ro={is_readonly}"),
        Planned::Secret { target, env, .. } => format!(
            "secret id={:?} target={target:?} env={env:?} {:?}/{:?}/{:?}",
            m.id, m.mode, m.uid, m.gid
        ),
        Planned::Ssh { target, .. } => format!("ssh id={:?} target={target}", m.id),
    }
}

fn cache_mount(m: &Mount, target: Option<String>) -> Result<Planned, RunMountError> {
    let target = target.ok_or(RunMountError::NoTarget("cache"))?;
    if m.from.is_some() || m.source.is_some() {
        // TODO(features): seeding a cache mount from a stage (from=, source=).
        return Err(RunMountError::CacheFrom);
    }
    let id = match &m.id {
        Some(id) => {
            check_cache_id(id)?;
            id.clone()
        }
        None => target.clone(),
    };
    Ok(Planned::Cache {
        name: encode_name(&id),
        id,
        target,
        sharing: m.sharing.clone().unwrap_or_else(|| "shared".into()),
        is_readonly: m.readonly,
        mode: m.mode.unwrap_or(0o755),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
    })
}

/// `64m`, `1g`, `4096`: bytes (go-units RAMInBytes, binary multiples).
fn parse_size(s: &str) -> Result<u64, RunMountError> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| RunMountError::TmpfsSize(s.to_string()))
}

fn secret_mount(
    run: &BuildRun,
    m: &Mount,
    target: Option<String>,
) -> Result<Option<Planned>, RunMountError> {
    let id = match (&m.id, &target) {
        (Some(id), _) => id.clone(),
        (None, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_string(),
        (None, None) => return Err(RunMountError::SecretId),
    };
    let data = match run.build.opts.secrets.get(&id) {
        None if m.required => return Err(RunMountError::SecretMissing(id)),
        None => return Ok(None),
        Some(SecretSource::File(path)) => {
            fs::read(path).map_err(|source| RunMountError::SecretRead {
                id: id.clone(),
                path: path.clone(),
                source,
            })?
        }
        Some(SecretSource::Env(var)) => match std::env::var_os(var) {
            Some(v) => std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec(),
            None => {
                return Err(RunMountError::SecretEnv {
                    id,
                    var: var.clone(),
                })
            }
        },
    };
    // env= alone puts the secret only in the environment; otherwise it is also a file.
    let target = match (&m.env, target) {
        (Some(_), None) => None,
        (_, Some(t)) => Some(t),
        (None, None) => Some(format!("/run/secrets/{id}")),
    };
    Ok(Some(Planned::Secret {
        data,
        target,
        env: m.env.clone(),
        mode: m.mode.unwrap_or(0o400),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
    }))
}

fn bind_mount(
    run: &BuildRun,
    m: &Mount,
    target: Option<String>,
    done: &[Option<StageResult>],
    named: &BTreeMap<String, StageResult>,
    ctx: &mut Context,
    key: &mut Vec<String>,
) -> Result<Planned, RunMountError> {
    let target = target.ok_or(RunMountError::NoTarget("bind"))?;
    let source = m.source.clone().unwrap_or_else(|| ".".to_string());
    let rel = copy::clean_rel(&source).ok_or_else(|| RunMountError::BindOutside(source.clone()))?;
    let lookup = |place: String| {
        let path = source.clone();
        move |source| RunMountError::BindLookup {
            path,
            place,
            source,
        }
    };
    let not_found = |place: String| RunMountError::BindNotFound {
        path: source.clone(),
        place,
    };
    let is_readonly = m.readonly;
    let Some(from) = &m.from else {
        // Resolved as COPY resolves its sources: inside the context, never out of it.
        let context = UnionFs::new(vec![ctx.root.clone()]);
        let resolved = context
            .resolve_path(&rel)
            .map_err(lookup("in the build context".into()))?
            .ok_or_else(|| not_found("in the build context".into()))?;
        let canonical = ctx.root.join(&resolved);
        // The content of what is bound is part of the key, as for COPY.
        let fingerprint = {
            let excluded = |r: &str| ctx.is_excluded(r);
            let tree = DirTree {
                root: ctx.root.clone(),
                is_excluded: &excluded,
            };
            let src = if rel.is_empty() {
                ".".to_string()
            } else {
                rel.clone()
            };
            copy::plan(&tree, &[src], "/m/", true, &CopyOptions::default())?
        };
        let fp = fingerprint.fingerprint(&mut |p| ctx.digest(p))?;
        key.push(format!("bind-context {rel} {fp}"));
        return Ok(Planned::HostBind {
            source: canonical,
            target,
            is_readonly,
        });
    };
    let (layers, from_key) = match stage_ref(run.build.dockerfile, from, usize::MAX)
        .and_then(|i| done.get(i).cloned().flatten())
    {
        Some(stage) => (stage.layers, stage.key.as_str().to_string()),
        None if named.contains_key(from) => {
            let context = &named[from];
            (context.layers.clone(), context.key.as_str().to_string())
        }
        None => {
            let r =
                store::Reference::parse(from).map_err(|source| RunMountError::FromReference {
                    from: from.clone(),
                    source,
                })?;
            let (manifest, image) = run
                .leased_image(&r, run.build.platform, &run.build.dockerfile.file_name)
                .map_err(|e| RunMountError::From(Box::new(e)))?;
            (image.layers, manifest.to_string())
        }
    };
    let lowerdirs = steps::lowerdirs(run, &layers).map_err(|e| RunMountError::From(Box::new(e)))?;
    let union = UnionFs::new(lowerdirs.clone());
    let subpath = union
        .resolve_path(&rel)
        .map_err(lookup(format!("from {from}")))?
        .ok_or_else(|| not_found(format!("in {from}")))?;
    let is_dir = union
        .lookup(&format!("/{subpath}"))
        .map_err(RunMountError::BindStat)?
        .is_some_and(|f| f.metadata.is_dir())
        || subpath.is_empty();
    key.push(format!("bind-from {from_key} {subpath}"));
    Ok(Planned::UnionBind {
        lowerdirs,
        subpath,
        is_dir,
        target,
        is_readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_sizes() {
        assert_eq!(parse_size("64m").expect("valid"), 64 << 20);
        assert_eq!(parse_size("4096").expect("valid"), 4096);
        assert!(parse_size("lots").is_err());
    }
}
