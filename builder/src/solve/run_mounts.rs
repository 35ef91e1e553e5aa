//! `RUN --mount`: what each mount type becomes for the sandbox, and the cache mounts kept
//! under the store root.
//!
//! ```text
//! ROOT/cache-mounts/<name>/id          the mount's id as written (for `system df`)
//! ROOT/cache-mounts/<name>/<n>/lock    flock: shared (LOCK_SH), locked / private (LOCK_EX)
//! ROOT/cache-mounts/<name>/<n>/fs/     the directory bound into the step
//! ```
//!
//! `<name>` is the id with `%` and `/` percent-encoded (the default id is the target path,
//! which has slashes; an id given with `id=` may not have `/` or `..`). Instance `0` is the
//! one every build uses; `sharing=private` takes the first instance nobody holds and makes a
//! new, empty one when all are busy, as BuildKit gives each concurrent writer its own mount.
//!
//! Cache mounts are never part of a layer or a cache key: the step's key holds only the
//! mount's id, target and options. Secrets are read when the step is planned, kept in
//! memory, and reach the sandbox only as a file on the step's tmpfs or as an environment
//! variable of the step; the key holds only their id.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::context::Context;
use super::stage::{BuildRun, StageResult, StageState};
use super::{stage_ref, steps};
use crate::copy::{self, CopyOptions, DirTree};
use crate::dockerfile::mount::{parse_mount, Mount, MountType};
use crate::exec::MountSpec;
use crate::rootfs::UnionFs;
use store::dir_lock::{
    allocated_bytes, allocated_bytes_inside, lock_dir, try_lock_dir, FlockOperation,
};

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, as `docker buildx build` takes it.
/// With only an id, the value comes from the environment variable of that name when set,
/// else from a file of that name (buildx's rule).
pub fn parse_secret_flag(flag: &str) -> Result<(String, SecretSource), String> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for field in flag.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid --secret {flag:?}: {field:?} is not KEY=VALUE"))?;
        match k.to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => kind = Some(v.to_string()),
            _ => return Err(format!("invalid --secret {flag:?}: unexpected key {k:?}")),
        }
    }
    let id = match id.or_else(|| src.clone()).or_else(|| env.clone()) {
        Some(id) if !id.is_empty() => id,
        _ => return Err(format!("invalid --secret {flag:?}: id= is required")),
    };
    let source = match (kind.as_deref(), src, env) {
        (Some("env"), Some(v), _) | (_, None, Some(v)) => SecretSource::Env(v),
        (_, Some(f), _) => SecretSource::File(PathBuf::from(f)),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (_, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (_, None, None) => SecretSource::File(PathBuf::from(&id)),
    };
    Ok((id, source))
}

/// `--ssh default|ID[=SOCKET]`: without a socket, `$SSH_AUTH_SOCK`.
pub fn parse_ssh_flag(flag: &str) -> Result<(String, PathBuf), String> {
    let (id, path) = match flag.split_once('=') {
        Some((id, p)) => (id.to_string(), PathBuf::from(p)),
        None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(p) => (flag.to_string(), PathBuf::from(p)),
            None => {
                return Err(format!(
                    "invalid --ssh {flag:?}: no socket given and SSH_AUTH_SOCK is not set"
                ))
            }
        },
    };
    if id.is_empty() || path.as_os_str().is_empty() {
        return Err(format!("invalid --ssh {flag:?}: want ID[=SOCKET]"));
    }
    Ok((id, path))
}

/// `ROOT/cache-mounts`: every cache mount's directories. Nothing else lives there.
pub fn cache_mounts_dir(root: &Path) -> PathBuf {
    store::Layout::new(root).cache_mounts_dir()
}

/// Bytes used by cache mounts (allocated blocks), for `system df`.
pub fn usage(root: &Path) -> io::Result<u64> {
    allocated_bytes_inside(&cache_mounts_dir(root))
}

/// Remove every cache mount nobody is using (`builder prune`); returns the bytes freed.
/// A mount held by a running build (its lock is taken) is left alone.
pub fn remove_all(root: &Path) -> io::Result<u64> {
    let dir = cache_mounts_dir(root);
    let Ok(names) = fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut freed = 0;
    for name in names {
        let name = name?.path();
        let mut busy = false;
        for inst in fs::read_dir(&name)? {
            let inst = inst?.path();
            if !inst.is_dir() {
                continue;
            }
            let Some(_lock) = try_lock_dir(&inst, FlockOperation::NonBlockingLockExclusive)? else {
                busy = true;
                continue;
            };
            let size = allocated_bytes(&inst).unwrap_or(0);
            fs::remove_dir_all(&inst)?;
            freed += size;
        }
        if !busy {
            fs::remove_dir_all(&name)?;
        }
    }
    Ok(freed)
}

/// The mounts of one RUN, resolved: what the cache key holds and what the sandbox gets.
pub struct Resolved {
    mounts: Vec<Planned>,
    /// Describes every mount (ids, targets, options, bind-source content) but no secret
    /// value: it goes into the step's cache key.
    pub key_text: String,
}

enum Planned {
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
pub fn resolve(
    run: &BuildRun,
    state: &StageState,
    specs: &[String],
    done: &[Option<StageResult>],
    ctx: &mut Context,
) -> Result<Resolved, String> {
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
        let mut expand =
            |w: &str| crate::dockerfile::expand_word(w, &env).map_err(|e| e.to_string());
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
                target: target.ok_or("tmpfs mount needs a target")?,
                size: m.size.as_deref().map(parse_size).transpose()?,
            },
            MountType::Bind => bind_mount(run, &m, target, done, ctx, &mut key)?,
            MountType::Secret => match secret_mount(run, &m, target)? {
                Some(p) => p,
                None => continue,
            },
            MountType::Ssh => {
                let id = m.id.clone().unwrap_or_else(|| "default".to_string());
                let target =
                    target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_count}"));
                ssh_count += 1;
                match run.opts.ssh.get(&id) {
                    Some(socket) => Planned::Ssh {
                        socket: socket.clone(),
                        target,
                    },
                    None if m.required => {
                        return Err(format!(
                            "no SSH key {id:?} forwarded from the client: pass --ssh {id}[=SOCKET]"
                        ))
                    }
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

fn cache_mount(m: &Mount, target: Option<String>) -> Result<Planned, String> {
    let target = target.ok_or("cache mount needs a target")?;
    if m.from.is_some() || m.source.is_some() {
        // TODO(features): seeding a cache mount from a stage (from=, source=).
        return Err("cache mounts with from= or source= are not supported yet".into());
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

/// An `id=` names a directory under ROOT/cache-mounts: no `/`, no `..`, not empty.
pub fn check_cache_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id == "." || id.contains('/') || id.contains("..") || id.contains('\0') {
        return Err(format!(
            "invalid cache mount id {id:?}: it may not be empty or contain '/' or '..'"
        ));
    }
    Ok(())
}

fn encode_name(id: &str) -> String {
    let mut out = String::new();
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// `64m`, `1g`, `4096`: bytes (go-units RAMInBytes, binary multiples).
fn parse_size(s: &str) -> Result<u64, String> {
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
        .ok_or_else(|| format!("invalid tmpfs size {s:?}"))
}

fn secret_mount(
    run: &BuildRun,
    m: &Mount,
    target: Option<String>,
) -> Result<Option<Planned>, String> {
    let id = match (&m.id, &target) {
        (Some(id), _) => id.clone(),
        (None, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_string(),
        (None, None) => return Err("secret mount needs an id or a target".into()),
    };
    let data = match run.opts.secrets.get(&id) {
        None if m.required => {
            return Err(format!(
                "secret {id:?} is required but was not provided: pass --secret id={id},src=FILE"
            ))
        }
        None => return Ok(None),
        Some(SecretSource::File(path)) => fs::read(path)
            .map_err(|e| format!("reading secret {id:?} from {}: {e}", path.display()))?,
        Some(SecretSource::Env(var)) => match std::env::var_os(var) {
            Some(v) => std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec(),
            None => {
                return Err(format!(
                    "secret {id:?}: environment variable {var} is not set"
                ))
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
    ctx: &mut Context,
    key: &mut Vec<String>,
) -> Result<Planned, String> {
    let target = target.ok_or("bind mount needs a target")?;
    let source = m.source.clone().unwrap_or_else(|| ".".to_string());
    let rel = copy::clean_rel(&source).ok_or_else(|| {
        format!("bind source {source:?} is outside of its stage or the build context")
    })?;
    let is_readonly = m.readonly;
    let Some(from) = &m.from else {
        // Resolved as COPY resolves its sources: inside the context, never out of it.
        let context = UnionFs::new(vec![ctx.root.clone()]);
        let resolved = context
            .resolve_path(&rel)
            .map_err(|e| format!("bind source {source:?} in the build context: {e}"))?
            .ok_or_else(|| format!("bind source {source:?} not found in the build context"))?;
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
            copy::plan(&tree, &[src], "/m/", true, &CopyOptions::default())
                .map_err(|e| e.to_string())?
        };
        let fp = fingerprint
            .fingerprint(&mut |p| ctx.digest(p))
            .map_err(|e| e.to_string())?;
        key.push(format!("bind-context {rel} {fp}"));
        return Ok(Planned::HostBind {
            source: canonical,
            target,
            is_readonly,
        });
    };
    let (layers, from_key) = match stage_ref(run.dockerfile, from, usize::MAX)
        .and_then(|i| done.get(i).cloned().flatten())
    {
        Some(stage) => (stage.layers, stage.key.as_str().to_string()),
        None => {
            let r =
                store::Reference::parse(from).map_err(|e| format!("--mount from={from}: {e}"))?;
            let (manifest, image) = run
                .leased_image(&r, &run.dockerfile.file_name)
                .map_err(|e| e.to_string())?;
            (image.layers, manifest.to_string())
        }
    };
    let lowerdirs = steps::lowerdirs(run, &layers).map_err(|e| e.to_string())?;
    let union = UnionFs::new(lowerdirs.clone());
    let subpath = union
        .resolve_path(&rel)
        .map_err(|e| format!("bind source {source:?} from {from}: {e}"))?
        .ok_or_else(|| format!("bind source {source:?} not found in {from}"))?;
    let is_dir = union
        .lookup(&format!("/{subpath}"))
        .map_err(|e| e.to_string())?
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

/// The mounts of a RUN made real for one run: held locks, per-run directories. Dropping it
/// releases the cache-mount locks.
pub struct Active {
    pub specs: Vec<MountSpec>,
    /// `KEY=value` added to the step's environment (secrets with `env=`, SSH_AUTH_SOCK).
    pub env: Vec<String>,
    _locks: Vec<File>,
}

/// Create what the mounts need (cache directories, throw-away overlay dirs under
/// `scratch`) and take the cache locks (`sharing=locked` waits here for other builds).
pub fn activate(
    root: &Path,
    resolved: Resolved,
    scratch: &Path,
    on_wait: &mut dyn FnMut(&str),
) -> Result<Active, String> {
    let mut active = Active {
        specs: Vec::new(),
        env: Vec::new(),
        _locks: Vec::new(),
    };
    let mut ssh_sock_set = false;
    for (i, m) in resolved.mounts.into_iter().enumerate() {
        match m {
            Planned::Cache {
                name,
                id,
                target,
                sharing,
                is_readonly,
                mode,
                uid,
                gid,
            } => {
                let (dir, lock) = open_cache(root, &name, &id, &sharing, (mode, uid, gid), on_wait)
                    .map_err(|e| format!("cache mount {id:?}: {e}"))?;
                active._locks.push(lock);
                active.specs.push(MountSpec::Bind {
                    source: dir,
                    target,
                    is_readonly,
                });
            }
            Planned::Tmpfs { target, size } => active.specs.push(MountSpec::Tmpfs { target, size }),
            Planned::HostBind {
                source,
                target,
                is_readonly,
            } => {
                if is_readonly || !source.is_dir() {
                    // TODO(features): a writable bind of a single context file writes through.
                    active.specs.push(MountSpec::Bind {
                        source,
                        target,
                        is_readonly: true,
                    });
                } else {
                    let (upper, work) = throwaway(scratch, i)?;
                    active.specs.push(MountSpec::Overlay {
                        lowerdirs: vec![source],
                        upperdir: upper,
                        workdir: work,
                        subpath: String::new(),
                        is_dir: true,
                        target,
                        is_readonly,
                    });
                }
            }
            Planned::UnionBind {
                mut lowerdirs,
                subpath,
                is_dir,
                target,
                is_readonly,
            } => {
                let (upper, work) = throwaway(scratch, i)?;
                if lowerdirs.is_empty() {
                    let empty = scratch.join(format!("mount-{i}-empty"));
                    fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
                    lowerdirs.push(empty);
                }
                active.specs.push(MountSpec::Overlay {
                    lowerdirs,
                    upperdir: upper,
                    workdir: work,
                    subpath,
                    is_dir,
                    target,
                    is_readonly,
                });
            }
            Planned::Secret {
                data,
                target,
                env,
                mode,
                uid,
                gid,
            } => {
                if let Some(var) = env {
                    active
                        .env
                        .push(format!("{var}={}", String::from_utf8_lossy(&data)));
                }
                if let Some(target) = target {
                    active.specs.push(MountSpec::File {
                        target,
                        data,
                        mode,
                        uid,
                        gid,
                    });
                }
            }
            Planned::Ssh { socket, target } => {
                if !ssh_sock_set {
                    active.env.push(format!("SSH_AUTH_SOCK={target}"));
                    ssh_sock_set = true;
                }
                active.specs.push(MountSpec::Bind {
                    source: socket,
                    target,
                    is_readonly: false,
                });
            }
        }
    }
    Ok(active)
}

fn throwaway(scratch: &Path, i: usize) -> Result<(PathBuf, PathBuf), String> {
    let upper = scratch.join(format!("mount-{i}-upper"));
    let work = scratch.join(format!("mount-{i}-work"));
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    Ok((upper, work))
}

/// The directory of a cache mount, locked as `sharing` asks. Created with `attrs`
/// (mode, uid, gid) the first time.
fn open_cache(
    root: &Path,
    name: &str,
    id: &str,
    sharing: &str,
    attrs: (u32, u32, u32),
    on_wait: &mut dyn FnMut(&str),
) -> io::Result<(PathBuf, File)> {
    let base = cache_mounts_dir(root).join(name);
    fs::create_dir_all(&base)?;
    let id_file = base.join("id");
    if !id_file.exists() {
        fs::write(&id_file, id)?;
    }
    let instance = |n: usize| base.join(n.to_string());
    let (inst, lock) = match sharing {
        "private" => {
            let mut n = 0;
            loop {
                let inst = instance(n);
                if let Some(lock) = try_lock_dir(&inst, FlockOperation::NonBlockingLockExclusive)? {
                    break (inst, lock);
                }
                n += 1;
            }
        }
        "locked" => {
            let inst = instance(0);
            let lock = match try_lock_dir(&inst, FlockOperation::NonBlockingLockExclusive)? {
                Some(lock) => lock,
                None => {
                    on_wait(&format!(
                        "waiting for cache mount {id:?} (sharing=locked, held by another build)"
                    ));
                    lock_dir(&inst, FlockOperation::LockExclusive)?
                }
            };
            (inst, lock)
        }
        _ => {
            let inst = instance(0);
            let lock = lock_dir(&inst, FlockOperation::LockShared)?;
            (inst, lock)
        }
    };
    let fs_dir = inst.join("fs");
    if !fs_dir.exists() {
        // Unique per call: stages building side by side in this process may race here too.
        let tmp = inst.join(store::layout::unique_name("fs.new-"));
        let _ = fs::remove_dir_all(&tmp);
        fs::DirBuilder::new().mode(attrs.0).create(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(attrs.0))?;
        std::os::unix::fs::chown(&tmp, Some(attrs.1), Some(attrs.2))?;
        // Two shared users may race here: the loser's rename fails and it uses the winner's.
        if fs::rename(&tmp, &fs_dir).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    Ok((fs_dir, lock))
}

/// The secret values of a build, by id (for tests of the plumbing).
pub type Secrets = BTreeMap<String, SecretSource>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags() {
        assert_eq!(
            parse_secret_flag("id=a,src=/x").expect("valid"),
            ("a".into(), SecretSource::File("/x".into()))
        );
        assert_eq!(
            parse_secret_flag("id=a,env=V").expect("valid"),
            ("a".into(), SecretSource::Env("V".into()))
        );
        assert!(parse_secret_flag("src").is_err());
        assert!(parse_secret_flag("bogus=1").is_err());
    }

    #[test]
    fn usage_and_remove_all_skip_a_mount_in_use() {
        let root = tempfile::tempdir().expect("tempdir");
        let attrs = (0o755, 0, 0);
        let (dir, held) =
            open_cache(root.path(), "busy", "busy", "locked", attrs, &mut |_| {}).expect("open");
        fs::write(dir.join("f"), vec![7u8; 64 * 1024]).expect("write");
        let (dir2, free) =
            open_cache(root.path(), "idle", "idle", "shared", attrs, &mut |_| {}).expect("open");
        fs::write(dir2.join("f"), vec![7u8; 64 * 1024]).expect("write");
        drop(free);
        assert!(usage(root.path()).expect("usage") >= 128 * 1024);
        let freed = remove_all(root.path()).expect("remove");
        assert!(freed >= 64 * 1024, "{freed}");
        assert!(dir.join("f").is_file(), "a mount in use was removed");
        assert!(!cache_mounts_dir(root.path()).join("idle").exists());
        drop(held);
        remove_all(root.path()).expect("remove");
        assert!(!cache_mounts_dir(root.path()).join("busy").exists());
        assert!(usage(root.path()).expect("usage") < 64 * 1024);
    }

    #[test]
    fn cache_ids_and_names() {
        assert!(check_cache_id("go-build").is_ok());
        for bad in ["", ".", "a/b", "..", "a..b"] {
            assert!(check_cache_id(bad).is_err(), "{bad}");
        }
        assert_eq!(encode_name("/root/.cache"), "%2Froot%2F.cache");
        assert_eq!(encode_name("100%"), "100%25");
        assert_eq!(parse_size("64m").expect("valid"), 64 << 20);
        assert_eq!(parse_size("4096").expect("valid"), 4096);
        assert!(parse_size("lots").is_err());
    }
}
