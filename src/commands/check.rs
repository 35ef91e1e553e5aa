//! TODO(lead): placeholder until its owner fills it in.

use anyhow::{bail, Result};

use super::Ctx;

pub fn run(_ctx: &Ctx, _args: &crate::cli::BuildArgs) -> Result<()> {
    bail!("`run` is not implemented yet")
}
