//! `push`: HEAD each blob and skip what the registry has, mount what another repository
//! of the same registry has, upload the rest (bounded parallel), then PUT the manifest —
//! config and layers always land before the manifest that names them.

use std::sync::Arc;

use bytes::Bytes;
use oci_client::manifest::OciImageManifest;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use store::media_types;
use store::{Descriptor, Digest, Reference, Store};

use crate::error::{RegistryError, Result};
use crate::progress::Bar;
use crate::pull::short;
use crate::session::{Body, Request, Session};
use crate::transfer::{self, BlobOutcome, UploadMode};
use crate::Client;

/// Options of one push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Other repositories of the same registry that may hold these blobs, tried as
    /// cross-repository mount sources (`?mount=&from=`). Other local tags of the image in
    /// the same registry are added automatically.
    pub mount_from: Vec<String>,
    pub upload: UploadMode,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            mount_from: Vec::new(),
            upload: UploadMode::Monolithic,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub reference: Reference,
    /// The pushed manifest's digest and size (docker's `latest: digest: … size: …`).
    pub digest: Digest,
    pub size: u64,
    pub pushed: usize,
    pub existed: usize,
    pub mounted: usize,
}

/// The manifest media type of stored manifest bytes (OCI when the field is absent).
pub(crate) fn manifest_media_type(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string())
}

pub(crate) async fn push(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PushOptions,
) -> Result<PushReport> {
    let display = reference.familiar();
    let manifest_digest = {
        let (store, r) = (store.clone(), reference.clone());
        tokio::task::spawn_blocking(move || store.resolve(&r))
            .await
            .expect("the resolve task does not panic")?
    };
    let bytes = Bytes::from(store.read_blob(&manifest_digest)?);
    let media_type = manifest_media_type(&bytes);
    if !media_types::is_manifest(&media_type) {
        return Err(RegistryError::UnsupportedMediaType {
            reference: display,
            media_type,
        });
    }
    let parsed: OciImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidManifest {
            reference: display.clone(),
            reason: e.to_string(),
        })?;
    let mut blobs = Vec::new();
    for d in parsed
        .layers
        .iter()
        .rev()
        .chain(std::iter::once(&parsed.config))
    {
        blobs.push(Descriptor {
            media_type: d.media_type.clone(),
            digest: d
                .digest
                .parse()
                .map_err(|e| RegistryError::InvalidManifest {
                    reference: display.clone(),
                    reason: format!("bad digest {:?}: {e}", d.digest),
                })?,
            size: d.size.max(0) as u64,
        });
    }
    // Other local tags of this image in the same registry are likely mount sources
    // (pulled from `a/x`, tagged `b/y`, pushed: the registry already has every blob).
    let mut opts = opts.clone();
    if let Ok(image) = store.image(&manifest_digest) {
        for t in image.tags {
            if t.registry == reference.registry
                && t.repository != reference.repository
                && !opts.mount_from.contains(&t.repository)
            {
                opts.mount_from.push(t.repository);
            }
        }
    }
    push_manifest(client, store, reference, &blobs, bytes, &media_type, &opts).await
}

/// Pushes `blobs` (already in the store) and then the manifest `bytes` under
/// `reference`'s tag (or digest). This is the hook `build --push` and `--cache-to
/// type=registry` use for manifests they compose themselves.
pub async fn push_manifest(
    client: &Client,
    store: &Store,
    reference: &Reference,
    blobs: &[Descriptor],
    bytes: Bytes,
    media_type: &str,
    opts: &PushOptions,
) -> Result<PushReport> {
    let progress = client.progress();
    let session = client.session(&reference.registry)?;
    let repo = reference.repository.clone();
    progress.line(&format!(
        "The push refers to repository [{}]",
        reference.name()
    ));
    let sources: Vec<String> = opts
        .mount_from
        .iter()
        .filter(|r| **r != repo)
        .cloned()
        .collect();
    let mut scopes = vec![format!("repository:{repo}:pull,push")];
    scopes.extend(sources.iter().map(|s| format!("repository:{s}:pull")));

    let limit = Arc::new(tokio::sync::Semaphore::new(
        client.options().max_concurrent_transfers.max(1),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, desc) in blobs.iter().enumerate() {
        let is_config = desc.digest.to_string() == config_digest(&bytes).unwrap_or_default();
        let bar = if is_config {
            Bar::hidden()
        } else {
            progress.bar(short(&desc.digest), desc.size, "Preparing")
        };
        let (session, store, repo, scopes, desc, limit, sources) = (
            session.clone(),
            store.clone(),
            repo.clone(),
            scopes.clone(),
            desc.clone(),
            limit.clone(),
            sources.clone(),
        );
        let mode = opts.upload;
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            bar.status("Pushing");
            let outcome = transfer::upload(
                &session, &store, &repo, &desc, &sources, mode, &scopes, &bar,
            )
            .await?;
            bar.finish(&match &outcome {
                BlobOutcome::Exists => "Layer already exists".to_string(),
                BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
                BlobOutcome::Pushed => "Pushed".to_string(),
            });
            Ok::<_, RegistryError>((i, outcome))
        });
    }
    let (mut pushed, mut existed, mut mounted) = (0, 0, 0);
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        let result = match joined {
            Ok(r) => r,
            // Siblings aborted after the first failure.
            Err(e) if e.is_cancelled() => continue,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match result {
            Ok((_, BlobOutcome::Pushed)) => pushed += 1,
            Ok((_, BlobOutcome::Exists)) => existed += 1,
            Ok((_, BlobOutcome::Mounted { .. })) => mounted += 1,
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    tasks.abort_all();
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    let digest = Digest::sha256_of(&bytes);
    let size = bytes.len() as u64;
    let tag = reference.tag.clone().unwrap_or_else(|| digest.to_string());
    put_manifest(&session, &repo, &tag, bytes, media_type, &scopes).await?;
    progress.line(&format!("{tag}: digest: {digest} size: {size}"));
    Ok(PushReport {
        reference: reference.clone(),
        digest,
        size,
        pushed,
        existed,
        mounted,
    })
}

fn config_digest(manifest: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    v.get("config")?.get("digest")?.as_str().map(str::to_string)
}

async fn put_manifest(
    session: &Session,
    repo: &str,
    tag: &str,
    bytes: Bytes,
    media_type: &str,
    scopes: &[String],
) -> Result<()> {
    let base = session.base().await?;
    let req = Request::new(
        Method::PUT,
        format!("{base}/v2/{repo}/manifests/{tag}"),
        scopes,
    )
    .header(CONTENT_TYPE, media_type)
    .body(Body::Bytes(bytes));
    let resp = session.send(&req).await?;
    session
        .check(&req, resp, &[StatusCode::CREATED, StatusCode::OK], repo)
        .await?;
    Ok(())
}
