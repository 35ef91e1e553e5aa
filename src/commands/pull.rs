//! `strata pull [-a] [--platform P] REF`: docker's output, the registry-client's work.

use anyhow::{bail, Result};
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
    let registry = super::registry(ctx, args.quiet);
    if !args.all_tags {
        registry.pull(&store, &r, platform)?;
        println!("{r}");
        return Ok(());
    }
    if super::names_tag_or_digest(&args.reference) {
        bail!("tag can't be used with --all-tags/-a");
    }
    for tag in registry.list_tags(&r)? {
        registry.pull(&store, &r.with_tag(&tag), platform.clone())?;
    }
    println!("{}", r.name());
    Ok(())
}
