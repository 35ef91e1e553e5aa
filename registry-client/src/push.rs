//! `push`: HEAD each blob and skip what the registry has, mount what another repository
//! of the same registry has, upload the rest (bounded parallel), then PUT the manifest —
//! config and layers always land before the manifest that names them.
//!
//! Built images keep their layers as plain tars (docs/design.md §4.4). A registry gets
//! gzip: `push` asks the store for each plain layer's gzip form (made on the first push,
//! recorded, reused after; `Store::compressed_layer`), uploading the gzip bytes of a
//! first push while they are written to the store, and pushes a manifest of the same
//! family naming those instead. Config and diff_ids are unchanged, so the image ID a
//! pull gives is the local one, while the pushed manifest digest is a new one; it is
//! not tagged locally (docker's containerd store does the same when it compresses on
//! push).

use bytes::Bytes;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use std::time::Duration;
use store::compressed::gzip_media_type;
use store::{media_types, LayerRef};

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
    /// Of `pushed`: layers compressed for this push and uploaded while they were
    /// written to the store (`transfer::upload_streamed`).
    pub streamed: usize,
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

/// One blob to send: already in the store as it will be pushed, or a plain layer to
/// compress first (the descriptor then comes from `Store::compressed_layer`).
#[derive(Debug, Clone)]
enum Outgoing {
    Stored(Descriptor),
    Plain {
        layer: LayerRef,
        /// The gzip layer type of the manifest's family.
        gzip_type: &'static str,
    },
}

impl Outgoing {
    /// docker labels a layer by its diff_id; for a stored blob we know only its digest.
    fn label(&self) -> &Digest {
        match self {
            Outgoing::Stored(d) => &d.digest,
            Outgoing::Plain { layer, .. } => &layer.diff_id,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Outgoing::Stored(d) => d.size,
            Outgoing::Plain { layer, .. } => layer.blob.size,
        }
    }
}

pub(crate) async fn push(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PushOptions,
) -> Result<PushReport> {
    let display = reference.familiar();
    let (manifest_digest, image) = {
        let (store, r) = (store.clone(), reference.clone());
        tokio::task::spawn_blocking(move || {
            let d = store.resolve(&r)?;
            let image = store.image(&d).ok();
            Ok::<_, store::StoreError>((d, image))
        })
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
    let recorded = image.as_ref().map(|i| &i.layers[..]).unwrap_or(&[]);
    let layers = outgoing_layers(&parsed, &media_type, recorded, &display)?;
    let config = descriptor(&parsed.config, &display)?;

    // Other local tags of this image in the same registry are likely mount sources
    // (pulled from `a/x`, tagged `b/y`, pushed: the registry already has every blob).
    let mut opts = opts.clone();
    for t in image.iter().flat_map(|i| &i.tags) {
        if t.registry == reference.registry
            && t.repository != reference.repository
            && !opts.mount_from.contains(&t.repository)
        {
            opts.mount_from.push(t.repository.clone());
        }
    }
    let target = Target::new(client, reference, &opts)?;
    let any_plain = layers.iter().any(|l| matches!(l, Outgoing::Plain { .. }));
    // Top layer first, as docker lists them; the config last, without a line.
    let n = layers.len();
    let mut blobs: Vec<Outgoing> = layers.into_iter().rev().collect();
    blobs.push(Outgoing::Stored(config));
    let (mut sent, counts) = target.send(client, store, blobs, Some(n)).await?;
    sent.truncate(n);
    sent.reverse();
    let bytes = if any_plain {
        with_layers(&bytes, &sent, &display)?
    } else {
        bytes
    };
    target.put(client, bytes, &media_type, counts).await
}

fn descriptor(d: &OciDescriptor, display: &str) -> Result<Descriptor> {
    Ok(Descriptor {
        media_type: d.media_type.clone(),
        digest: d
            .digest
            .parse()
            .map_err(|e| RegistryError::InvalidManifest {
                reference: display.to_string(),
                reason: format!("bad digest {:?}: {e}", d.digest),
            })?,
        size: d.size.max(0) as u64,
    })
}

/// The manifest's layers, bottom first: a plain tar the image record knows (with its
/// diff_id) is to be compressed into the gzip type of the manifest's family (OCI
/// manifest → OCI gzip, docker schema2 → docker gzip); any other layer goes as stored.
fn outgoing_layers(
    parsed: &OciImageManifest,
    manifest_type: &str,
    recorded: &[LayerRef],
    display: &str,
) -> Result<Vec<Outgoing>> {
    let gzip_type = match manifest_type {
        media_types::DOCKER_MANIFEST => media_types::DOCKER_LAYER_GZIP,
        _ => media_types::OCI_LAYER_GZIP,
    };
    let mut layers = Vec::with_capacity(parsed.layers.len());
    for (i, l) in parsed.layers.iter().enumerate() {
        let desc = descriptor(l, display)?;
        let diff_id = recorded
            .get(i)
            .filter(|r| r.blob.digest == desc.digest)
            .filter(|_| gzip_media_type(&desc.media_type).is_some())
            .map(|r| r.diff_id.clone());
        layers.push(match diff_id {
            Some(diff_id) => Outgoing::Plain {
                layer: LayerRef {
                    blob: desc,
                    diff_id,
                },
                gzip_type,
            },
            None => Outgoing::Stored(desc),
        });
    }
    Ok(layers)
}

/// `manifest` with its layer descriptors' media type, digest and size replaced by
/// `layers` (same count, same order); every other field (annotations, urls, subject)
/// is kept.
fn with_layers(manifest: &[u8], layers: &[Descriptor], display: &str) -> Result<Bytes> {
    let invalid = |reason: String| RegistryError::InvalidManifest {
        reference: display.to_string(),
        reason,
    };
    let mut v: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| invalid(e.to_string()))?;
    let entries = v
        .get_mut("layers")
        .and_then(|l| l.as_array_mut())
        .filter(|l| l.len() == layers.len())
        .ok_or_else(|| invalid(format!("expected {} layers", layers.len())))?;
    for (entry, d) in entries.iter_mut().zip(layers) {
        entry["mediaType"] = d.media_type.clone().into();
        entry["digest"] = d.digest.to_string().into();
        entry["size"] = d.size.into();
    }
    Ok(Bytes::from(
        serde_json::to_vec(&v).expect("a manifest value serializes"),
    ))
}

/// Pushes `blobs` (already in the store) and then the manifest `bytes` under
/// `reference`'s tag (or digest). This is the hook `build --push` and `--cache-to
/// type=registry` use for manifests they compose themselves. Blobs go as they are:
/// compress plain layers first with `Store::compressed_layer`.
pub async fn push_manifest(
    client: &Client,
    store: &Store,
    reference: &Reference,
    blobs: &[Descriptor],
    bytes: Bytes,
    media_type: &str,
    opts: &PushOptions,
) -> Result<PushReport> {
    let target = Target::new(client, reference, opts)?;
    let config = config_digest(&bytes);
    let hidden = blobs
        .iter()
        .position(|b| Some(&b.digest) == config.as_ref());
    let blobs = blobs.iter().cloned().map(Outgoing::Stored).collect();
    let (_, counts) = target.send(client, store, blobs, hidden).await?;
    target.put(client, bytes, media_type, counts).await
}

fn config_digest(manifest: &[u8]) -> Option<Digest> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    v.get("config")?.get("digest")?.as_str()?.parse().ok()
}

/// How many blobs a push uploaded, found, or mounted.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pushed: usize,
    existed: usize,
    mounted: usize,
    streamed: usize,
}

/// Where one push goes: the session, repository, token scopes and mount sources.
struct Target {
    reference: Reference,
    session: std::sync::Arc<Session>,
    repo: String,
    scopes: Vec<String>,
    sources: Vec<String>,
    mode: UploadMode,
}

impl Target {
    fn new(client: &Client, reference: &Reference, opts: &PushOptions) -> Result<Target> {
        let session = client.session(&reference.registry)?;
        let repo = reference.repository.clone();
        client.progress().line(&format!(
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
        Ok(Target {
            reference: reference.clone(),
            session,
            repo,
            scopes,
            sources,
            mode: opts.upload,
        })
    }

    /// Sends `blobs`, each in its own task, at most `max_concurrent_transfers` at once,
    /// with progress lines in this order except for `hidden` (the config). A plain layer
    /// without a stored gzip form is compressed (on a blocking thread) while its gzip
    /// bytes are uploaded (monolithic mode; chunked mode compresses, then uploads). Returns
    /// the descriptors as pushed, in the order of `blobs`.
    async fn send(
        &self,
        client: &Client,
        store: &Store,
        blobs: Vec<Outgoing>,
        hidden: Option<usize>,
    ) -> Result<(Vec<Descriptor>, Counts)> {
        // Reach the registry before the first layer line: an unreachable one fails with
        // docker's one error, not a `Preparing`/`Pushing` line per layer first.
        self.session.base().await?;
        let progress = client.progress();
        let limit = transfer::limit(client.options().max_concurrent_transfers);
        // Covers the gzip forms made below from before they are written until the push
        // ends (the layer's record keeps them after that).
        let lease = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.lease(Duration::from_secs(6 * 3600)))
                .await
                .expect("the lease task does not panic")?
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (i, blob) in blobs.into_iter().enumerate() {
            let bar = if Some(i) == hidden {
                Bar::hidden()
            } else {
                progress.bar(short(blob.label()), blob.size(), "Preparing")
            };
            let (session, store, lease, repo, scopes, limit, sources) = (
                self.session.clone(),
                store.clone(),
                lease.clone(),
                self.repo.clone(),
                self.scopes.clone(),
                limit.clone(),
                self.sources.clone(),
            );
            let mode = self.mode;
            tasks.spawn(async move {
                let _permit = limit
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let (desc, is_streamed) = match blob {
                    Outgoing::Stored(d) => (d, false),
                    Outgoing::Plain { layer, gzip_type } if mode == UploadMode::Monolithic => {
                        // Compressed on a blocking thread while the gzip bytes are sent.
                        bar.status("Pushing");
                        let store = store.clone();
                        let (mut gz, is_pushed) = transfer::upload_streamed(
                            &session,
                            &repo,
                            &scopes,
                            &bar,
                            move |sink| {
                                store
                                    .compressed_layer_copied(&lease, &layer, sink)
                                    .map(|(gz, wrote)| (gz.blob, wrote))
                            },
                        )
                        .await?;
                        gz.media_type = gzip_type.to_string();
                        bar.set_length(gz.size);
                        (gz, is_pushed)
                    }
                    Outgoing::Plain { layer, gzip_type } => {
                        let store = store.clone();
                        let mut gz = tokio::task::spawn_blocking(move || {
                            store.compressed_layer(&lease, &layer)
                        })
                        .await
                        .expect("the compression task does not panic")?
                        .blob;
                        gz.media_type = gzip_type.to_string();
                        bar.set_length(gz.size);
                        (gz, false)
                    }
                };
                bar.status("Pushing");
                let outcome = if is_streamed {
                    BlobOutcome::Pushed
                } else {
                    transfer::upload(
                        &session, &store, &repo, &desc, &sources, mode, &scopes, &bar,
                    )
                    .await?
                };
                bar.finish(&match &outcome {
                    BlobOutcome::Exists => "Layer already exists".to_string(),
                    BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
                    BlobOutcome::Pushed => "Pushed".to_string(),
                });
                Ok::<_, RegistryError>((i, desc, outcome, is_streamed))
            });
        }
        let mut done = transfer::join_all(tasks).await?;
        done.sort_by_key(|(i, _, _, _)| *i);
        let mut counts = Counts::default();
        for (_, _, outcome, is_streamed) in &done {
            counts.streamed += usize::from(*is_streamed);
            match outcome {
                BlobOutcome::Pushed => counts.pushed += 1,
                BlobOutcome::Exists => counts.existed += 1,
                BlobOutcome::Mounted { .. } => counts.mounted += 1,
            }
        }
        Ok((done.into_iter().map(|(_, d, _, _)| d).collect(), counts))
    }

    /// PUTs the manifest under the tag (or its digest) and prints docker's last line.
    async fn put(
        &self,
        client: &Client,
        bytes: Bytes,
        media_type: &str,
        counts: Counts,
    ) -> Result<PushReport> {
        let digest = Digest::sha256_of(&bytes);
        let size = bytes.len() as u64;
        let tag = self
            .reference
            .tag
            .clone()
            .unwrap_or_else(|| digest.to_string());
        put_manifest(
            &self.session,
            &self.repo,
            &tag,
            bytes,
            media_type,
            &self.scopes,
        )
        .await?;
        client
            .progress()
            .line(&format!("{tag}: digest: {digest} size: {size}"));
        Ok(PushReport {
            reference: self.reference.clone(),
            digest,
            size,
            pushed: counts.pushed,
            existed: counts.existed,
            mounted: counts.mounted,
            streamed: counts.streamed,
        })
    }
}

pub(crate) async fn put_manifest(
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
