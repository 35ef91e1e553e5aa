//! Making a RUN's planned mounts real for one run: the cache directories opened and locked,
//! throw-away overlay directories for writable binds, secrets and the SSH socket handed to
//! the sandbox.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::cache_dirs::open_cache;
use super::error::RunMountError;
use super::plan::{Planned, Resolved};
use crate::exec::MountSpec;

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
) -> Result<Active, RunMountError> {
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
                    .map_err(|source| RunMountError::CacheOpen {
                        id: id.clone(),
                        source,
                    })?;
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
                    fs::create_dir_all(&empty).map_err(RunMountError::EmptyLower)?;
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

fn throwaway(scratch: &Path, i: usize) -> Result<(PathBuf, PathBuf), RunMountError> {
    let upper = scratch.join(format!("mount-{i}-upper"));
    let work = scratch.join(format!("mount-{i}-work"));
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(|source| RunMountError::Create {
            path: d.clone(),
            source,
        })?;
    }
    Ok((upper, work))
}
