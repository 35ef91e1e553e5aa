//! `strata push [-a] REF`: prints docker's lines, ending with `TAG: digest: sha256:… size: N`.

use anyhow::{bail, Result};

use super::Ctx;

pub fn run(ctx: &Ctx, args: &crate::cli::PushArgs) -> Result<()> {
    let r = super::parse_reference(&args.reference)?;
    let store = super::open_store(ctx)?;
    let registry = super::registry(ctx, args.quiet);
    let references = if args.all_tags {
        if super::names_tag_or_digest(&args.reference) {
            bail!("tag can't be used with --all-tags/-a");
        }
        let mut tagged: Vec<store::Reference> = store
            .images()?
            .into_iter()
            .flat_map(|image| image.tags)
            .filter(|t| t.registry == r.registry && t.repository == r.repository)
            .collect();
        tagged.sort();
        if tagged.is_empty() {
            bail!(
                "An image does not exist locally with the tag: {}",
                r.repository_familiar()
            );
        }
        tagged
    } else {
        vec![r]
    };
    for reference in &references {
        let digest = registry.push(&store, reference)?;
        if args.quiet {
            println!("{digest}");
        }
    }
    Ok(())
}
