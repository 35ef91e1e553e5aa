//! strata's engine: the work that needs both the builder and the registry client, so that
//! the binary only parses, calls and prints.
//!
//! ```text
//! registry.rs      Registry: one registry client and one tokio runtime per command,
//!                  made on first use; pull and push for synchronous callers
//! build.rs         `build`: the builder run with base images and `--cache-from` records
//!                  from the Registry, then `--cache-to` export and `--push`
//! cache_flags.rs   `--cache-from` / `--cache-to` as buildx spells them
//! remote_cache.rs  RegistryCache: import a cache manifest, fetch a hit's layer (bounded,
//!                  in the background), export a build's records
//! outputs.rs       `--output` as buildx spells it; writes the local, tar, oci and docker
//!                  outputs of a finished build
//! provenance.rs    `--provenance` / `--attest`: BuildKit's SLSA provenance attestation,
//!                  pushed in an image index beside the image
//! contexts.rs      CONTEXT, `-f -` and `--build-context` as buildx takes them: stdin tars,
//!                  git and tarball URLs, images and OCI layouts, made local for the builder
//! changes.rs       `import --change`: Dockerfile instructions as typed config changes
//! warnings.rs      the build checks' warnings as BuildKit's `VertexWarning` JSON, for
//!                  `--progress rawjson` and `buildx.build.warnings` in `--metadata-file`
//! error.rs         EngineError
//! ```
//!
//! The crates depend one way: `store` on nothing of ours; `builder` and `registry-client`
//! on `store`; `engine` on all three; the binary on `engine` (and on the others for plain
//! calls such as listing images).

pub mod build;
pub mod cache_flags;
pub mod changes;
pub mod contexts;
pub mod error;
pub mod image_index;
pub mod outputs;
pub mod provenance;
pub mod registry;
pub mod remote_cache;
pub mod warnings;

pub use build::{build, BuildRequest};
pub use cache_flags::{parse_cache_from, parse_cache_to, CacheTo};
pub use changes::ConfigChanges;
pub use error::{EngineError, Result};
pub use outputs::{parse_outputs, Output};
pub use registry::{Registry, RegistryOptions};
