//! `strata save [-o FILE] [--format docker|oci] IMAGE...`: a docker-archive that
//! `docker load` accepts (default) or an OCI archive.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use store::archive::{ArchiveFormat, SaveItem};

use super::Ctx;
use crate::cli::SaveArgs;
use crate::output::UsageError;

pub fn run(ctx: &Ctx, args: &SaveArgs) -> Result<()> {
    let format = match args.format.as_str() {
        "docker" | "docker-archive" => ArchiveFormat::Docker,
        "oci" | "oci-archive" => ArchiveFormat::Oci,
        other => bail!(UsageError(format!(
            "unknown --format {other:?}: use docker or oci"
        ))),
    };
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!(UsageError(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into()
        ));
    }
    let store = super::open_store(ctx)?;
    let mut items: Vec<SaveItem> = Vec::new();
    for input in &args.images {
        for item in items_for(&store, input)? {
            match items.iter_mut().find(|i| i.manifest == item.manifest) {
                Some(existing) => {
                    for t in item.tags {
                        if !existing.tags.contains(&t) {
                            existing.tags.push(t);
                        }
                    }
                }
                None => items.push(item),
            }
        }
    }
    match &args.output {
        Some(path) => store
            .save_to_file(&items, format, path)
            .with_context(|| format!("saving to {}", path.display())),
        None => {
            let stdout = std::io::stdout().lock();
            store
                .save(&items, format, stdout)
                .context("saving to stdout")
        }
    }
}

/// Like docker: `name:tag` saves that tag; a bare repository name saves every
/// tag of that repository; an id or digest saves the image without names.
fn items_for(store: &store::Store, input: &str) -> Result<Vec<SaveItem>> {
    let last = input.rsplit('/').next().unwrap_or(input);
    let bare_repo = !last.contains(':') && !input.contains('@');
    if bare_repo {
        if let Ok(r) = store::Reference::parse(input) {
            let name = r.name();
            let mut items = Vec::new();
            for image in store.images()? {
                let tags: Vec<_> = image
                    .tags
                    .iter()
                    .filter(|t| t.name() == name)
                    .cloned()
                    .collect();
                if !tags.is_empty() {
                    items.push(SaveItem {
                        manifest: image.manifest,
                        tags,
                        annotations: Default::default(),
                    });
                }
            }
            if !items.is_empty() {
                return Ok(items);
            }
        }
    }
    let manifest = super::resolve_image(store, input)?;
    let tags = match store::Reference::parse(input) {
        Ok(r) if r.digest.is_none() && store.image(&manifest)?.tags.contains(&r) => vec![r],
        _ => Vec::new(),
    };
    Ok(vec![SaveItem {
        manifest,
        tags,
        annotations: Default::default(),
    }])
}
