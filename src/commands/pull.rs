//! `strata pull [--platform P] REF`: docker's output, the registry-client's work.

use anyhow::{Context, Result};
use registry_client::{Client, ClientOptions, Platform, ProgressMode, PullOptions};

use super::Ctx;
use crate::output::UsageError;

/// A registry client configured from the global flags.
pub fn client(ctx: &Ctx, quiet: bool) -> Result<Client> {
    let opts = ClientOptions {
        insecure_registries: ctx.insecure_registries.clone(),
        ca_certs: ctx.cacert.iter().cloned().collect(),
        progress: if quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        ..ClientOptions::default()
    };
    Client::new(opts).context("setting up the registry client")
}

/// Parses a reference; a malformed one is a usage error (exit 2), like docker.
pub fn reference(s: &str) -> Result<store::Reference> {
    store::Reference::parse(s).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))
}

pub fn run(ctx: &Ctx, args: &crate::cli::PullArgs) -> Result<()> {
    let r = reference(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => {
            Some(Platform::parse(p).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))?)
        }
        None => None,
    };
    let store = store::Store::open(&ctx.root)
        .with_context(|| format!("opening store {}", ctx.root.display()))?;
    let client = client(ctx, args.quiet)?;
    registry_client::pull_blocking(&client, &store, &r, &PullOptions { platform })
        .with_context(|| format!("pulling {}", r.familiar()))?;
    println!("{r}");
    Ok(())
}

/// Pull `reference` into `store` and return its manifest digest: used by `build` for a
/// `FROM` image that is not in the store (and for every FROM with `--pull`).
pub fn fetch(
    ctx: &Ctx,
    store: &store::Store,
    reference: &store::Reference,
) -> Result<store::Digest> {
    let client = client(ctx, false)?;
    let report = registry_client::pull_blocking(&client, store, reference, &PullOptions::default())
        .with_context(|| format!("pulling {}", reference.familiar()))?;
    Ok(report.manifest)
}
