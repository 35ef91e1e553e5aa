//! `strata image copy SRC DST`: registry to registry, nothing stored locally (as `crane
//! copy` / `skopeo copy docker://SRC docker://DST`). Prints push's lines; with `-q`, only
//! the digest of the manifest (or index) now under DST.

use anyhow::Result;
use registry_client::Platform;

use super::Ctx;
use crate::output::UsageError;

pub fn run(ctx: &Ctx, args: &crate::cli::CopyArgs) -> Result<()> {
    let src = super::parse_reference(&args.source)?;
    let dst = super::parse_reference(&args.destination)?;
    let platform = match &args.platform {
        Some(p) => {
            Some(Platform::parse(p).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))?)
        }
        None => None,
    };
    let report = super::registry(ctx, args.quiet).copy(&src, &dst, platform)?;
    if args.quiet {
        println!("{}", report.digest);
    }
    Ok(())
}
