//! `pull`: tag → manifest (an index / manifest list picks the platform) → config and
//! layers in parallel, streamed into ingest and verified → manifest blob → tag.
//!
//! The tag moves only after every blob is committed, so an interrupted pull leaves
//! either the old image or unreferenced blobs (a lease protects them from a concurrent
//! GC until the tag exists), never a tag pointing at missing content.

use std::time::Duration;

use oci_client::manifest::{OciImageIndex, OciImageManifest};
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use store::media_types;
use store::{Descriptor, Digest, Reference, Store};

use crate::error::{RegistryError, Result};
use crate::limits::{self, BodyError};
use crate::platform::{self, Platform};
use crate::session::{Request, Session};
use crate::transfer;
use crate::Client;

/// Options of one pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from an index; None means the host's (docker's default).
    pub platform: Option<Platform>,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub reference: Reference,
    /// The digest the reference resolved to in the registry (an index's, for a
    /// multi-platform image): what docker prints as `Digest:`.
    pub digest: Digest,
    /// The single-platform manifest stored and tagged locally.
    pub manifest: Digest,
    /// Blobs downloaded / already in the store.
    pub downloaded: usize,
    pub existed: usize,
    /// The tag already pointed at this manifest.
    pub up_to_date: bool,
}

pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest as the registry sent it.
pub(crate) struct FetchedManifest {
    pub bytes: bytes::Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// GETs `/v2/REPO/manifests/REF` and verifies the bytes against the digest asked for
/// (by-digest references) or the one the registry announced.
pub(crate) async fn fetch_manifest(
    session: &Session,
    repository: &str,
    reference: &str,
    expected: Option<&Digest>,
    scopes: &[String],
    display: &str,
) -> Result<FetchedManifest> {
    let base = session.base().await?;
    let req = Request::new(
        Method::GET,
        format!("{base}/v2/{repository}/manifests/{reference}"),
        scopes,
    )
    .header(ACCEPT, MANIFEST_ACCEPT);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = session.send(&req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestUnknown {
                reference: display.to_string(),
            });
        }
        let resp = session
            .check(&req, resp, &[StatusCode::OK], repository)
            .await?;
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok());
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let bytes = match limits::read_bounded(resp, limits::MAX_MANIFEST_SIZE).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { limit }) => {
                return Err(RegistryError::ManifestTooLarge {
                    reference: display.to_string(),
                    limit: limits::show_size(limit),
                })
            }
            Err(BodyError::Transport(_)) if attempt < session.retry.max_attempts => {
                tokio::time::sleep(session.retry.delay(attempt, None)).await;
                continue;
            }
            Err(BodyError::Transport(source)) => {
                return Err(RegistryError::Transport {
                    method: "GET".into(),
                    url: req.url.clone(),
                    source,
                })
            }
        };
        let actual = Digest::sha256_of(&bytes);
        if let Some(want) = expected.or(header_digest.as_ref()) {
            if *want != actual {
                if expected.is_none() && attempt < session.retry.max_attempts {
                    // A body cut short still parses as bytes: fetch again.
                    tokio::time::sleep(session.retry.delay(attempt, None)).await;
                    continue;
                }
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {display}"),
                    expected: want.clone(),
                    actual,
                });
            }
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .or(content_type)
            .unwrap_or_default();
        return Ok(FetchedManifest {
            bytes,
            media_type,
            digest: actual,
        });
    }
}

pub(crate) fn parse_digest(s: &str, display: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|e| RegistryError::InvalidManifest {
            reference: display.to_string(),
            reason: format!("bad digest {s:?}: {e}"),
        })
}

/// A manifest's blob descriptor, refused when its size is negative or beyond
/// [`limits::MAX_BLOB_SIZE`] (before anything is downloaded).
pub(crate) fn descriptor(
    d: &oci_client::manifest::OciDescriptor,
    display: &str,
) -> Result<Descriptor> {
    let invalid = |reason: String| RegistryError::InvalidManifest {
        reference: display.to_string(),
        reason,
    };
    let size =
        u64::try_from(d.size).map_err(|_| invalid(format!("negative size for {}", d.digest)))?;
    if size > limits::MAX_BLOB_SIZE {
        return Err(invalid(format!(
            "blob {} claims {size} bytes, beyond the {} a blob may have",
            d.digest,
            limits::show_size(limits::MAX_BLOB_SIZE)
        )));
    }
    Ok(Descriptor {
        media_type: d.media_type.clone(),
        digest: parse_digest(&d.digest, display)?,
        size,
    })
}

pub(crate) async fn pull(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
) -> Result<PullReport> {
    let session = client.session(&reference.registry)?;
    let repo = reference.repository.clone();
    let scopes = vec![format!("repository:{repo}:pull")];
    let display = reference.familiar();
    let tag_or_digest = manifest_ref(reference);
    // docker reaches the registry before `Pulling from`: an unreachable one prints only
    // its error.
    session.base().await?;
    let progress = client.progress();
    progress.line(&format!(
        "{tag_or_digest}: Pulling from {}",
        path_familiar(reference)
    ));

    let top = fetch_manifest(
        &session,
        &repo,
        &tag_or_digest,
        reference.digest.as_ref(),
        &scopes,
        &display,
    )
    .await?;
    let manifest = if media_types::is_index(&top.media_type) {
        let index: OciImageIndex =
            serde_json::from_slice(&top.bytes).map_err(|e| RegistryError::InvalidManifest {
                reference: display.clone(),
                reason: e.to_string(),
            })?;
        let want = opts.platform.clone().unwrap_or_else(Platform::host);
        let entry = platform::choose(&index, &want, &display)?;
        let d = parse_digest(&entry.digest, &display)?;
        fetch_manifest(&session, &repo, d.as_str(), Some(&d), &scopes, &display).await?
    } else {
        top.clone_shallow()
    };
    if !media_types::is_manifest(&manifest.media_type) {
        return Err(RegistryError::UnsupportedMediaType {
            reference: display,
            media_type: manifest.media_type,
        });
    }
    let parsed: OciImageManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| RegistryError::InvalidManifest {
            reference: display.clone(),
            reason: e.to_string(),
        })?;
    let config = descriptor(&parsed.config, &display)?;
    let mut blobs = vec![config.clone()];
    for l in &parsed.layers {
        blobs.push(descriptor(l, &display)?);
    }

    // Protect what we write from a concurrent GC until the tag exists.
    let lease = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.lease(Duration::from_secs(6 * 3600)))
            .await
            .expect("the lease task does not panic")?
    };
    for b in &blobs {
        lease.add_digest(&b.digest)?;
    }
    lease.add_digest(&manifest.digest)?;

    // A single-platform image says its platform in its config only: with `--platform`,
    // read the config before any layer and refuse an image of another platform.
    let mut config_committed = None;
    if let (Some(want), false) = (&opts.platform, media_types::is_index(&top.media_type)) {
        if !store.has_blob(&config.digest) {
            let bar = crate::progress::Bar::hidden();
            config_committed =
                transfer::download(&session, store, &lease, &repo, &config, &scopes, &bar).await?;
        }
        check_config_platform(&store.read_blob(&config.digest)?, want, &display)?;
    }

    let limit = transfer::limit(client.options().max_concurrent_transfers);
    let mut tasks = tokio::task::JoinSet::new();
    // Layers first in display order, config last (docker shows only layers).
    for (i, desc) in blobs.iter().enumerate() {
        let is_config = i == 0;
        if store.has_blob(&desc.digest) {
            if !is_config {
                progress.done(short(&desc.digest), "Already exists");
            }
            continue;
        }
        let bar = if is_config {
            crate::progress::Bar::hidden()
        } else {
            progress.bar(short(&desc.digest), desc.size, "Pulling fs layer")
        };
        let (session, store, lease, repo, scopes, desc, limit) = (
            session.clone(),
            store.clone(),
            lease.clone(),
            repo.clone(),
            scopes.clone(),
            desc.clone(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            if store.has_blob(&desc.digest) {
                bar.finish("Already exists");
                return Ok(None);
            }
            bar.status("Downloading");
            let got =
                transfer::download(&session, &store, &lease, &repo, &desc, &scopes, &bar).await?;
            if !is_config {
                bar.finish("Pull complete");
            }
            Ok::<_, RegistryError>(got)
        });
    }
    let committed: Vec<Descriptor> = transfer::join_all(tasks)
        .await?
        .into_iter()
        .flatten()
        .chain(config_committed)
        .collect();
    let downloaded = committed.len();
    let existed = blobs.len() - downloaded;

    let store2 = store.clone();
    let reference2 = reference.clone();
    let manifest_bytes = manifest.bytes.clone();
    let manifest_mt = manifest.media_type.clone();
    let manifest_digest = manifest.digest.clone();
    let lease2 = lease.clone();
    let up_to_date = tokio::task::spawn_blocking(move || -> Result<bool> {
        store2.record_blobs(&committed)?;
        let stored = store2.put_blob(&lease2, &manifest_bytes, &manifest_mt)?;
        if stored.digest != manifest_digest {
            return Err(RegistryError::DigestMismatch {
                what: "stored manifest".into(),
                expected: manifest_digest,
                actual: stored.digest,
            });
        }
        let tag = reference2.tag.as_ref().map(|_| &reference2);
        let before = match tag {
            Some(r) => store2.resolve(r).ok(),
            None => None,
        };
        store2.add_image(&stored.digest, tag)?;
        Ok(before.as_ref() == Some(&stored.digest))
    })
    .await
    .expect("the tagging task does not panic")?;
    drop(lease);

    progress.line(&format!("Digest: {}", top.digest));
    if up_to_date {
        progress.line(&format!("Status: Image is up to date for {display}"));
    } else {
        progress.line(&format!("Status: Downloaded newer image for {display}"));
    }
    Ok(PullReport {
        reference: reference.clone(),
        digest: top.digest,
        manifest: manifest.digest,
        downloaded,
        existed,
        up_to_date,
    })
}

impl FetchedManifest {
    fn clone_shallow(&self) -> FetchedManifest {
        FetchedManifest {
            bytes: self.bytes.clone(),
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
        }
    }
}

/// docker's `Pulling from` name: the repository path without the registry
/// (`library/busybox`, `a/b` for `localhost:5000/a/b`).
fn path_familiar(r: &Reference) -> &str {
    &r.repository
}

/// What `/v2/REPO/manifests/…` is asked for: the digest when the reference has one, else
/// its tag (`latest` when it names none).
pub(crate) fn manifest_ref(reference: &Reference) -> String {
    match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    }
}

/// docker's 12-hex-digit layer id.
pub(crate) fn short(d: &Digest) -> &str {
    let hex = d.hex();
    &hex[..hex.len().min(12)]
}

/// `PlatformMismatch` unless the image config `bytes` is of a platform `want` runs.
pub(crate) fn check_config_platform(bytes: &[u8], want: &Platform, display: &str) -> Result<()> {
    let config: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidManifest {
            reference: display.to_string(),
            reason: format!("image config: {e}"),
        })?;
    let text = |k: &str| config.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let variant = config.get("variant").and_then(|v| v.as_str());
    if want.matches(text("os"), text("architecture"), variant) {
        return Ok(());
    }
    let mut found = format!("{}/{}", text("os"), text("architecture"));
    if let Some(v) = variant.filter(|v| !v.is_empty()) {
        found = format!("{found}/{v}");
    }
    Err(RegistryError::PlatformMismatch {
        reference: display.to_string(),
        found,
        wanted: want.to_string(),
    })
}
