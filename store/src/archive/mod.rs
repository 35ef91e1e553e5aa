//! Moving images in and out of the store as files: `import` (a rootfs tar),
//! `save` (docker-archive or OCI archive) and `load` (either, gzip or not).

pub mod gzip;
pub mod import;
pub mod load;
pub mod save;
pub mod tarcheck;

pub use import::ImportOptions;
pub use load::LoadPlatforms;
pub use save::{ArchiveFormat, SaveItem};
