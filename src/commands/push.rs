//! `strata push REF`: prints docker's lines, ending with `TAG: digest: sha256:… size: N`.

use anyhow::{Context, Result};
use registry_client::PushOptions;

use super::Ctx;

pub fn run(ctx: &Ctx, args: &crate::cli::PushArgs) -> Result<()> {
    let r = super::pull::reference(&args.reference)?;
    let store = store::Store::open(&ctx.root)
        .with_context(|| format!("opening store {}", ctx.root.display()))?;
    let digest = push(ctx, &store, &r, args.quiet)?;
    if args.quiet {
        println!("{digest}");
    }
    Ok(())
}

/// Push one tagged image; also `build --push` for each `-t`.
pub fn push(ctx: &Ctx, store: &store::Store, r: &store::Reference, quiet: bool) -> Result<String> {
    let client = super::pull::client(ctx, quiet)?;
    let report = registry_client::push_blocking(&client, store, r, &PushOptions::default())
        .with_context(|| format!("pushing {}", r.familiar()))?;
    Ok(report.digest.to_string())
}
