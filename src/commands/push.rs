//! `strata push REF`: prints docker's lines, ending with `TAG: digest: sha256:… size: N`.

use anyhow::Result;

use super::Ctx;

pub fn run(ctx: &Ctx, args: &crate::cli::PushArgs) -> Result<()> {
    let r = super::parse_reference(&args.reference)?;
    let store = super::open_store(ctx)?;
    let digest = super::registry(ctx, args.quiet).push(&store, &r)?;
    if args.quiet {
        println!("{digest}");
    }
    Ok(())
}
