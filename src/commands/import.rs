//! `strata import FILE|- [REPOSITORY[:TAG]]`: a rootfs tarball becomes a one-layer image.

use std::fs::File;
use std::io::Read;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::ImportArgs;
use crate::output::UsageError;

pub fn run(ctx: &Ctx, args: &ImportArgs) -> Result<()> {
    let reference = args
        .reference
        .as_deref()
        .map(super::parse_reference)
        .transpose()?;
    let config = engine::ConfigChanges::parse(&args.changes)?;
    let platform = args
        .platform
        .as_deref()
        .map(|p| store::platform::Platform::parse(p).map_err(|e| UsageError(e.to_string())))
        .transpose()?;
    let store = super::open_store(ctx)?;
    let source = args.file.display().to_string();
    let input: Box<dyn Read> = if source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("opening {source}"))?)
    };
    let opts = store::archive::ImportOptions {
        reference,
        message: args.message.clone(),
        config: config.to_json(),
        source: source.clone(),
        platform,
    };
    let image = store
        .import(input, &opts)
        .with_context(|| format!("importing {source}"))?;
    println!("{}", image.id());
    Ok(())
}
