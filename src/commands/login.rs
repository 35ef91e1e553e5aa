//! TODO(lead): placeholder until its owner fills it in.

use anyhow::{bail, Result};

use super::Ctx;

pub fn login(_ctx: &Ctx, _args: &crate::cli::LoginArgs) -> Result<()> {
    bail!("`login` is not implemented yet")
}

pub fn logout(_ctx: &Ctx, _args: &crate::cli::LogoutArgs) -> Result<()> {
    bail!("`logout` is not implemented yet")
}
