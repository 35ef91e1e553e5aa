//! `strata inspect IMAGE...`: docker's image inspect JSON (Id, RepoTags,
//! RepoDigests, Created, Config, RootFS, ...) plus the manifest itself.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::InspectArgs;
use crate::output::{report_error, Exit};

pub fn run(ctx: &Ctx, args: &InspectArgs) -> Result<()> {
    let store = super::open_store(ctx)?;
    let mut out = Vec::new();
    let mut worst = 0;
    for input in &args.images {
        match inspect_one(&store, input) {
            Ok(v) => out.push(v),
            Err(err) => worst = worst.max(report_error(&err, ctx.debug)),
        }
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(out))?);
    if worst != 0 {
        return Err(Exit(worst).into());
    }
    Ok(())
}

fn inspect_one(store: &store::Store, input: &str) -> Result<Value> {
    let manifest = super::resolve_image(store, input)?;
    let image = store.image(&manifest)?;
    let config: Value = serde_json::from_slice(&store.read_blob(&image.config.digest)?)
        .with_context(|| format!("config {} is not JSON", image.config.digest))?;
    let manifest_json: Value = serde_json::from_slice(&store.read_blob(&manifest)?)
        .with_context(|| format!("manifest {manifest} is not JSON"))?;
    let repo_tags: Vec<String> = image.tags.iter().map(|t| t.familiar()).collect();
    let mut repo_digests: Vec<String> = image
        .tags
        .iter()
        .map(|t| format!("{}@{}", t.repository_familiar(), manifest))
        .collect();
    repo_digests.dedup();
    let field = |k: &str| {
        config
            .get(k)
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    Ok(json!({
        "Id": image.id(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": config.pointer("/history").and_then(|h| h.as_array()).and_then(|h| h.last()).and_then(|h| h.get("comment")).cloned().unwrap_or(Value::String(String::new())),
        "Created": field("created"),
        "DockerVersion": field("docker_version"),
        "Author": field("author"),
        "Config": config.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": field("architecture"),
        "Variant": config.get("variant").cloned().unwrap_or(Value::Null),
        "Os": field("os"),
        "Size": image.size,
        "RootFS": {
            "Type": config.pointer("/rootfs/type").cloned().unwrap_or(json!("layers")),
            "Layers": image.diff_ids(),
        },
        "Metadata": { "LastTagTime": chrono::DateTime::from_timestamp(image.added_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default() },
        "Descriptor": {
            "mediaType": image.media_type,
            "digest": manifest,
            "size": image.manifest_size,
        },
        "Manifest": manifest_json,
    }))
}
