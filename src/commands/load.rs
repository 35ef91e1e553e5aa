//! `strata load [-i FILE] [--platform P]`: a docker-archive or OCI archive, gzip or not.

use std::fs::File;
use std::io::{IsTerminal, Read};

use anyhow::{bail, Context, Result};
use store::archive::LoadPlatforms;
use store::platform::Platform;

use super::Ctx;
use crate::cli::LoadArgs;
use crate::output::UsageError;

pub fn run(ctx: &Ctx, args: &LoadArgs) -> Result<()> {
    let (input, source): (Box<dyn Read>, String) = match &args.input {
        Some(p) if p.as_os_str() != "-" => (
            Box::new(File::open(p).with_context(|| format!("opening {}", p.display()))?),
            p.display().to_string(),
        ),
        _ => {
            if std::io::stdin().is_terminal() {
                bail!(UsageError(
                    "requested load from stdin, but stdin is empty; use -i FILE or redirect".into()
                ));
            }
            (Box::new(std::io::stdin().lock()), "-".to_string())
        }
    };
    let platforms = match &args.platform {
        // docker takes a list; strata records one platform's image (a subset of an index
        // would be an image whose digest names platforms it lacks).
        Some(p) if p.contains(',') => bail!(UsageError(format!(
            "--platform {p}: strata loads one platform, or (without --platform) all of them"
        ))),
        Some(p) => LoadPlatforms::Only(Platform::parse(p).map_err(|e| UsageError(e.to_string()))?),
        None => LoadPlatforms::All,
    };
    let store = super::open_store(ctx)?;
    let loaded = store
        .load(input, &source, &platforms)
        .with_context(|| format!("loading {source}"))?;
    if !args.quiet {
        for l in loaded {
            if l.tags.is_empty() {
                println!("Loaded image ID: {}", l.image.id());
            }
            for t in &l.tags {
                println!("Loaded image: {}", t.familiar());
            }
        }
    }
    Ok(())
}
