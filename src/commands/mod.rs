//! One module per command family. Each `run` takes the parsed arguments, calls the library
//! crates, and prints docker-style output. No business logic lives here.

pub mod binfmt;
pub mod build;
pub mod check;
pub mod copy;
pub mod docs;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod login;
pub mod manifest;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod save;
pub mod system;
pub mod tag;
pub mod verify;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::Cli;

/// What every command needs from the global flags.
pub struct Ctx {
    /// The store root: --root, else $STRATA_ROOT, else $XDG_DATA_HOME/strata, else
    /// ~/.local/share/strata (docs/design.md §1).
    pub root: PathBuf,
    pub debug: bool,
    pub insecure_registries: Vec<String>,
    pub cacert: Option<PathBuf>,
}

impl Ctx {
    pub fn from_cli(cli: &Cli) -> Result<Ctx> {
        Ok(Ctx {
            root: resolve_root(cli.root.clone())?,
            debug: cli.debug,
            insecure_registries: cli.insecure_registries.clone(),
            cacert: cli.cacert.clone(),
        })
    }
}

fn resolve_root(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(root) = flag {
        return Ok(root);
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(root) = env("STRATA_ROOT") {
        return Ok(PathBuf::from(root));
    }
    if let Some(data) = env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(data).join("strata"));
    }
    let home =
        env("HOME").context("cannot find the store root: set --root, $STRATA_ROOT or $HOME")?;
    Ok(PathBuf::from(home).join(".local/share/strata"))
}

/// Parses an image reference the docker way; a bad one is a usage error naming it (exit 2).
pub fn parse_reference(s: &str) -> Result<store::Reference> {
    store::Reference::parse(s)
        .map_err(|e| anyhow::Error::new(crate::output::UsageError(e.to_string())))
}

/// Whether the user typed a tag or digest (`app:1`, `app@sha256:…`) rather than a bare
/// repository, which `--all-tags` needs (parsing adds `latest` to a bare one).
pub fn names_tag_or_digest(input: &str) -> bool {
    let last = input.rsplit('/').next().unwrap_or(input);
    input.contains('@') || last.contains(':')
}

/// The registry client of one command, made from the global flags on first use.
pub fn registry(ctx: &Ctx, quiet: bool) -> engine::Registry {
    engine::Registry::new(engine::RegistryOptions {
        insecure_registries: ctx.insecure_registries.clone(),
        ca_certs: ctx.cacert.iter().cloned().collect(),
        quiet,
    })
}

/// Opens (creating if needed) the store at `ctx.root`.
pub fn open_store(ctx: &Ctx) -> Result<store::Store> {
    store::Store::open(&ctx.root).with_context(|| format!("opening store {}", ctx.root.display()))
}

/// Resolves what the user typed (reference, digest, short id) to a manifest digest.
/// A malformed reference is a usage error (exit 2); an unknown one is an error (exit 1).
pub fn resolve_image(store: &store::Store, s: &str) -> Result<store::Digest> {
    match store.resolve_str(s) {
        Ok(d) => Ok(d),
        Err(store::StoreError::InvalidReference(e)) => {
            Err(anyhow::Error::new(crate::output::UsageError(e.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}

/// The image of `image` for this machine's platform: itself when it is a single-platform
/// image, else its index's manifest for this platform, as docker picks one of a
/// multi-platform image; an index without one is an error naming the platforms it has.
pub fn host_image(
    store: &store::Store,
    image: &store::ImageRecord,
    input: &str,
) -> Result<store::ImageRecord> {
    let host = store::platform::Platform::host();
    match image.manifest_for(&host) {
        Some(d) if *d == image.manifest => Ok(image.clone()),
        Some(d) => Ok(store.image(d)?),
        None => {
            let have: Vec<String> = image
                .platforms
                .iter()
                .filter_map(|c| c.platform())
                .map(|p| p.to_string())
                .collect();
            anyhow::bail!(
                "{input} is a multi-platform image without {host} (it has {})",
                have.join(", ")
            )
        }
    }
}
