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

mod activate;
mod cache_dirs;
mod error;
mod flags;
mod plan;

pub use activate::{activate, Active};
pub use cache_dirs::{remove_all, usage};
pub use error::RunMountError;
pub use flags::{parse_secret_flag, parse_ssh_flag, MountFlagError, SecretSource, Secrets};
pub use plan::{resolve, Resolved};
