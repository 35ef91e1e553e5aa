//! `strata pull [--platform P] REF`: docker's output, the registry-client's work.

use anyhow::Result;
use registry_client::Platform;

use super::Ctx;
use crate::output::UsageError;

pub fn run(ctx: &Ctx, args: &crate::cli::PullArgs) -> Result<()> {
    let r = super::parse_reference(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => {
            Some(Platform::parse(p).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))?)
        }
        None => None,
    };
    let store = super::open_store(ctx)?;
    super::registry(ctx, args.quiet).pull(&store, &r, platform)?;
    println!("{r}");
    Ok(())
}
