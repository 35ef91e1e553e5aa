//! `strata load [-i FILE]`: a docker-archive or OCI archive, gzip or not.

use std::fs::File;
use std::io::{IsTerminal, Read};

use anyhow::{bail, Context, Result};

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
    let store = super::open_store(ctx)?;
    let loaded = store
        .load(input, &source)
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
