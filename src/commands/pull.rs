//! TODO(lead): placeholder until its owner fills it in.

use anyhow::{bail, Result};

use super::Ctx;

pub fn run(_ctx: &Ctx, _args: &crate::cli::PullArgs) -> Result<()> {
    bail!("`run` is not implemented yet")
}

/// Pull `reference` into `store` and return its manifest digest: used by `build` for a
/// `FROM` image that is not in the store (and for every FROM with `--pull`).
pub fn fetch(_ctx: &Ctx, _store: &store::Store, reference: &store::Reference) -> Result<store::Digest> {
    bail!("image {} not found in the store, and pulling is not implemented yet", reference.familiar())
}
