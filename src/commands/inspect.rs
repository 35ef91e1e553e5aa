//! `strata inspect IMAGE...`: docker's image inspect JSON (Id, RepoTags,
//! RepoDigests, Created, Config, RootFS, ...) plus the manifest itself; `-f/--format`
//! runs a Go template on each (`crate::template`; a field the JSON lacks is an error).

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::InspectArgs;
use crate::output::{report_error, Exit};
use crate::template::RowTemplate;

/// docker's exit status for a `--format` template that does not parse.
const EXIT_BAD_TEMPLATE: i32 = 64;

pub fn run(ctx: &Ctx, args: &InspectArgs) -> Result<()> {
    let template = match args.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(text) => match RowTemplate::parse(text) {
            Ok(t) => Some(t),
            Err(err) => {
                report_error(&err.into(), ctx.debug);
                return Err(Exit(EXIT_BAD_TEMPLATE).into());
            }
        },
    };
    let store = super::open_store(ctx)?;
    let mut out = Vec::new();
    let mut worst = 0;
    for input in &args.images {
        match inspect_one(&store, input) {
            Ok(v) => out.push(v),
            Err(err) => worst = worst.max(report_error(&err, ctx.debug)),
        }
    }
    match template {
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
        Some(template) => {
            for v in &out {
                match template.render(&with_config_fields(v)) {
                    Ok(text) => println!("{text}"),
                    Err(err) => worst = worst.max(report_error(&err.into(), ctx.debug)),
                }
            }
        }
    }
    if worst != 0 {
        return Err(Exit(worst).into());
    }
    Ok(())
}

fn inspect_one(store: &store::Store, input: &str) -> Result<Value> {
    let manifest = super::resolve_image(store, input)?;
    let listed = store.image(&manifest)?;
    // A multi-platform image shows as docker 25+ (containerd store) shows one: its id,
    // names and descriptor are the index's, Config and the rest this machine's
    // platform's, and `Manifests` lists every platform (docker's ManifestSummary).
    let image = super::host_image(store, &listed, input)?;
    let config: Value = serde_json::from_slice(&store.read_blob(&image.config.digest)?)
        .with_context(|| format!("config {} is not JSON", image.config.digest))?;
    let manifest_json: Value = serde_json::from_slice(&store.read_blob(&manifest)?)
        .with_context(|| format!("manifest {manifest} is not JSON"))?;
    let repo_tags: Vec<String> = listed.tags.iter().map(|t| t.familiar()).collect();
    let mut repo_digests: Vec<String> = listed
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
    let mut out = json!({
        "Id": listed.id(),
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
        "Metadata": { "LastTagTime": chrono::DateTime::from_timestamp(listed.added_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default() },
        "Descriptor": {
            "mediaType": listed.media_type,
            "digest": manifest,
            "size": listed.manifest_size,
        },
        "Manifest": manifest_json,
    });
    if listed.is_index() {
        out["Manifests"] = Value::Array(
            listed
                .platforms
                .iter()
                .map(|c| manifest_summary(store, c))
                .collect::<Result<_>>()?,
        );
    }
    Ok(out)
}

/// One platform of a multi-platform image, in the shape of docker's `ManifestSummary`.
fn manifest_summary(store: &store::Store, c: &store::records::IndexChild) -> Result<Value> {
    let image = store.image(&c.manifest.digest)?;
    let mut descriptor = json!({
        "mediaType": c.manifest.media_type,
        "digest": c.manifest.digest,
        "size": c.manifest.size,
    });
    if let Some(p) = &c.platform {
        descriptor["platform"] = p.clone();
    }
    Ok(json!({
        "ID": c.manifest.digest,
        "Descriptor": descriptor,
        "Available": true,
        "Size": { "Total": image.size, "Content": image.size },
        "Kind": "image",
        "ImageData": {
            "Platform": c.platform.clone().unwrap_or(Value::Null),
            "Containers": [],
            "Size": { "Unpacked": image.size },
        },
    }))
}

/// docker's typed `Config` has every field of an image config, empty when unset, so a
/// template reads `{{.Config.Cmd}}` of an image without CMD as `[]`; the stored JSON omits
/// them.
fn with_config_fields(inspect: &Value) -> Value {
    let mut v = inspect.clone();
    if let Some(Value::Object(config)) = v.get_mut("Config") {
        let defaults = [
            ("User", json!("")),
            ("ExposedPorts", json!({})),
            ("Env", json!([])),
            ("Entrypoint", json!([])),
            ("Cmd", json!([])),
            ("Volumes", json!({})),
            ("WorkingDir", json!("")),
            ("Labels", json!({})),
            ("StopSignal", json!("")),
            ("OnBuild", json!([])),
            ("Shell", json!([])),
        ];
        for (key, empty) in defaults {
            let entry = config.entry(key).or_insert(Value::Null);
            if entry.is_null() {
                *entry = empty;
            }
        }
    }
    v
}
