//! `strata tag SOURCE TARGET`: point TARGET at the image SOURCE names.

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::TagArgs;

pub fn run(ctx: &Ctx, args: &TagArgs) -> Result<()> {
    let target = super::parse_reference(&args.target)?;
    let store = super::open_store(ctx)?;
    let manifest = super::resolve_image(&store, &args.source)?;
    store
        .tag(&manifest, &target)
        .with_context(|| format!("tagging {} as {}", args.source, target.familiar()))
}
