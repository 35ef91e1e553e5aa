//! `strata build`: `--check` goes to the front end only; otherwise plan, execute, tag.

use anyhow::{bail, Result};

use super::Ctx;
use crate::cli::BuildArgs;

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    if args.check {
        return super::check::run(ctx, args);
    }
    bail!("`build` is not implemented yet")
}
