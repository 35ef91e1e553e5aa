//! strata's builder: the Dockerfile front end, the planner and build cache, the sandboxed
//! executor for RUN, and the differ that turns an upperdir into a layer.
//!
//! Data flows one way: `dockerfile` (parse → instructions → expand → lint) → `solve`
//! (stages in order; each step keyed by `cache`, a cache hit or a run through the handler
//! table in `solve::steps`) → `exec` (RUN in a sandbox over overlayfs of store snapshots)
//! → `differ` (upperdir → layer tar) → `store` ingest → the image export.
//! (Not `build/`: tools and people take a folder of that name for build output.)

pub mod annotations;
pub mod below;
pub mod cache;
pub mod copy;
pub mod csv;
pub mod differ;
pub mod dockerfile;
pub mod dockerignore;
pub mod exec;
pub mod hash_thread;
pub mod image;
pub mod image_tree;
pub mod layer_index;
pub mod layers;
pub mod progress;
pub mod remote;
pub mod remote_cache;
pub mod rootfs;
pub mod solve;
pub mod unwritten;
