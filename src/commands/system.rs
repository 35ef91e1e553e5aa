//! TODO(lead): placeholder until its owner fills it in.

use anyhow::{bail, Result};

use super::Ctx;

pub fn df(_ctx: &Ctx, _args: &crate::cli::DfArgs) -> Result<()> {
    bail!("`df` is not implemented yet")
}
