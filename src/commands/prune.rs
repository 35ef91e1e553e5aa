//! TODO(lead): placeholder until its owner fills it in.

use anyhow::{bail, Result};

use super::Ctx;

pub fn image_prune(_ctx: &Ctx, _args: &crate::cli::ImagePruneArgs) -> Result<()> {
    bail!("`image_prune` is not implemented yet")
}

pub fn builder_prune(_ctx: &Ctx, _args: &crate::cli::BuilderPruneArgs) -> Result<()> {
    bail!("`builder_prune` is not implemented yet")
}

pub fn system_prune(_ctx: &Ctx, _args: &crate::cli::SystemPruneArgs) -> Result<()> {
    bail!("`system_prune` is not implemented yet")
}
