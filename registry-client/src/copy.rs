//! `copy`: an image from one registry (or repository) to another without a local store,
//! as `skopeo copy docker://A docker://B` and `crane copy A B` do.
//!
//! Order: every blob first, then every child manifest of an index (by digest), then the
//! manifest or index SRC names, under DST's tag. Manifests go byte for byte, so every
//! digest at DST is the one at SRC. With a platform, an index is resolved to that one
//! platform's manifest and only that is copied (crane's `--platform`, skopeo without
//! `--all`); without one the whole index goes, attestation manifests included.
//!
//! Each blob: `HEAD` at DST (there already: nothing to do); on the same registry, a
//! cross-repository mount (`POST ?mount=&from=`); else a `GET` from SRC whose body is the
//! body of the monolithic `PUT` at DST, chunk by chunk, never on disk. The `PUT` carries
//! the descriptor's size as `Content-Length` (some registries refuse a chunked upload), and
//! the last chunk is held back until the whole body has hashed to the descriptor's digest:
//! a source that sends other bytes never completes an upload. A cut on either side restarts
//! the blob (new `GET`, new upload session) under the retry policy.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use store::{media_types, Descriptor, Digest, Reference};

use crate::error::{RegistryError, Result};
use crate::limits;
use crate::platform::{self, Platform};
use crate::progress::Bar;
use crate::pull::{self, fetch_manifest, manifest_ref, short, FetchedManifest};
use crate::retry;
use crate::session::{Body, Request, Session};
use crate::transfer::{self, BlobOutcome};
use crate::Client;

/// Options of one copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Copy only this platform's manifest out of an index (and refuse a single-platform
    /// image of another platform). None copies what SRC names, whole.
    pub platform: Option<Platform>,
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// The digest and size of the manifest (or index) now under DST.
    pub digest: Digest,
    pub size: u64,
    /// Manifests written, the top one included (1 for a single image).
    pub manifests: usize,
    /// Blobs streamed from SRC, already at DST, mounted from SRC's repository.
    pub copied: usize,
    pub existed: usize,
    pub mounted: usize,
}

/// Nested indexes deeper than this are refused (a registry could loop them forever).
const MAX_INDEX_DEPTH: usize = 4;

/// The manifests to write, children before the index naming them, and the blobs they
/// need, each once.
#[derive(Default)]
struct Plan {
    manifests: Vec<FetchedManifest>,
    blobs: Vec<(Descriptor, bool)>,
}

impl Plan {
    fn add_blob(&mut self, desc: Descriptor, is_config: bool) {
        if !self.blobs.iter().any(|(d, _)| d.digest == desc.digest) {
            self.blobs.push((desc, is_config));
        }
    }
}

/// One side of a copy: the session, repository and token scopes.
#[derive(Clone)]
struct Side {
    session: Arc<Session>,
    repo: String,
    scopes: Vec<String>,
}

pub(crate) async fn copy(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let same_registry = src.registry == dst.registry;
    let from = Side {
        session: client.session(&src.registry)?,
        repo: src.repository.clone(),
        scopes: vec![format!("repository:{}:pull", src.repository)],
    };
    let mut to_scopes = vec![format!("repository:{}:pull,push", dst.repository)];
    if same_registry && src.repository != dst.repository {
        to_scopes.push(format!("repository:{}:pull", src.repository));
    }
    let to = Side {
        session: client.session(&dst.registry)?,
        repo: dst.repository.clone(),
        scopes: to_scopes,
    };
    // Both registries answer before the first line: an unreachable one prints only its error.
    from.session.base().await?;
    to.session.base().await?;
    let display = src.familiar();
    let top = fetch_manifest(
        &from.session,
        &from.repo,
        &manifest_ref(src),
        src.digest.as_ref(),
        &from.scopes,
        &display,
    )
    .await?;
    let top = match &opts.platform {
        Some(want) if media_types::is_index(&top.media_type) => {
            let index = parse_index(&top, &display)?;
            let entry = platform::choose(&index, want, &display)?;
            let d = pull::parse_digest(&entry.digest, &display)?;
            fetch_manifest(
                &from.session,
                &from.repo,
                d.as_str(),
                Some(&d),
                &from.scopes,
                &display,
            )
            .await?
        }
        _ => top,
    };
    let mut plan = Plan::default();
    collect(&from, top, &display, 0, &mut plan).await?;
    if let (Some(want), Some(top)) = (&opts.platform, plan.manifests.last()) {
        if media_types::is_manifest(&top.media_type) {
            let config = &parse_manifest(top, &display)?.config;
            let config = pull::descriptor(config, &display)?;
            let bytes = fetch_small_blob(&from, &config).await?;
            pull::check_config_platform(&bytes, want, &display)?;
        }
    }
    if let Some(want) = &dst.digest {
        let top = plan.manifests.last().map(|m| &m.digest);
        if top != Some(want) {
            return Err(RegistryError::DigestMismatch {
                what: format!("copy of {display} to {}", dst.familiar()),
                expected: want.clone(),
                actual: top.cloned().unwrap_or_else(|| want.clone()),
            });
        }
    }

    let progress = client.progress();
    progress.line(&format!("The push refers to repository [{}]", dst.name()));
    let limit = transfer::limit(client.options().max_concurrent_transfers);
    let mut tasks = tokio::task::JoinSet::new();
    for (desc, is_config) in plan.blobs {
        let bar = if is_config {
            Bar::hidden()
        } else {
            progress.bar(short(&desc.digest), desc.size, "Waiting")
        };
        let (from, to, limit) = (from.clone(), to.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let outcome = copy_blob(&from, &to, &desc, same_registry, &bar).await?;
            bar.finish(&match &outcome {
                BlobOutcome::Exists => "Layer already exists".to_string(),
                BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
                BlobOutcome::Pushed => "Pushed".to_string(),
            });
            Ok::<_, RegistryError>(outcome)
        });
    }
    let mut report = CopyReport {
        digest: Digest::sha256_of(b""),
        size: 0,
        manifests: plan.manifests.len(),
        copied: 0,
        existed: 0,
        mounted: 0,
    };
    for outcome in transfer::join_all(tasks).await? {
        match outcome {
            BlobOutcome::Pushed => report.copied += 1,
            BlobOutcome::Exists => report.existed += 1,
            BlobOutcome::Mounted { .. } => report.mounted += 1,
        }
    }

    let Some(top) = plan.manifests.pop() else {
        unreachable!("collect always plans the manifest it was given")
    };
    for child in &plan.manifests {
        crate::push::put_manifest(
            &to.session,
            &to.repo,
            child.digest.as_str(),
            child.bytes.clone(),
            &child.media_type,
            &to.scopes,
        )
        .await?;
    }
    let tag = dst
        .tag
        .clone()
        .filter(|_| dst.digest.is_none())
        .unwrap_or_else(|| top.digest.to_string());
    crate::push::put_manifest(
        &to.session,
        &to.repo,
        &tag,
        top.bytes.clone(),
        &top.media_type,
        &to.scopes,
    )
    .await?;
    report.digest = top.digest;
    report.size = top.bytes.len() as u64;
    progress.line(&format!(
        "{tag}: digest: {} size: {}",
        report.digest, report.size
    ));
    Ok(report)
}

fn parse_index(m: &FetchedManifest, display: &str) -> Result<OciImageIndex> {
    serde_json::from_slice(&m.bytes).map_err(|e| RegistryError::InvalidManifest {
        reference: display.to_string(),
        reason: e.to_string(),
    })
}

fn parse_manifest(m: &FetchedManifest, display: &str) -> Result<OciImageManifest> {
    serde_json::from_slice(&m.bytes).map_err(|e| RegistryError::InvalidManifest {
        reference: display.to_string(),
        reason: e.to_string(),
    })
}

/// Adds `m` to the plan after everything it names: an image manifest's config and
/// layers, an index's child manifests (fetched by digest, verified) and theirs.
fn collect<'a>(
    from: &'a Side,
    m: FetchedManifest,
    display: &'a str,
    depth: usize,
    plan: &'a mut Plan,
) -> futures_util::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if media_types::is_manifest(&m.media_type) {
            let parsed = parse_manifest(&m, display)?;
            plan.add_blob(pull::descriptor(&parsed.config, display)?, true);
            for l in &parsed.layers {
                plan.add_blob(pull::descriptor(l, display)?, false);
            }
        } else if media_types::is_index(&m.media_type) {
            if depth >= MAX_INDEX_DEPTH {
                return Err(RegistryError::InvalidManifest {
                    reference: display.to_string(),
                    reason: format!("indexes nested deeper than {MAX_INDEX_DEPTH}"),
                });
            }
            for entry in parse_index(&m, display)?.manifests {
                let d = pull::parse_digest(&entry.digest, display)?;
                if plan.manifests.iter().any(|p| p.digest == d) {
                    continue;
                }
                let child = fetch_manifest(
                    &from.session,
                    &from.repo,
                    d.as_str(),
                    Some(&d),
                    &from.scopes,
                    display,
                )
                .await?;
                collect(from, child, display, depth + 1, plan).await?;
            }
        } else {
            return Err(RegistryError::UnsupportedMediaType {
                reference: display.to_string(),
                media_type: m.media_type,
            });
        }
        plan.manifests.push(m);
        Ok(())
    })
}

/// An image config, read whole (bounded like a manifest) and verified.
async fn fetch_small_blob(from: &Side, desc: &Descriptor) -> Result<Bytes> {
    let base = from.session.base().await?;
    let req = Request::new(
        Method::GET,
        format!("{base}/v2/{}/blobs/{}", from.repo, desc.digest),
        &from.scopes,
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = from.session.send(&req).await?;
        let resp = from
            .session
            .check(&req, resp, &[StatusCode::OK], &from.repo)
            .await?;
        match limits::read_bounded(resp, limits::MAX_MANIFEST_SIZE).await {
            Ok(bytes) if Digest::sha256_of(&bytes) == desc.digest => return Ok(bytes),
            Ok(_) | Err(limits::BodyError::Transport(_))
                if attempt < from.session.retry.max_attempts =>
            {
                tokio::time::sleep(from.session.retry.delay(attempt, None)).await;
            }
            Ok(bytes) => {
                return Err(RegistryError::DigestMismatch {
                    what: format!("blob from {}/{}", from.session.registry, from.repo),
                    expected: desc.digest.clone(),
                    actual: Digest::sha256_of(&bytes),
                })
            }
            Err(limits::BodyError::TooLarge { limit }) => {
                return Err(RegistryError::ManifestTooLarge {
                    reference: desc.digest.to_string(),
                    limit: limits::show_size(limit),
                })
            }
            Err(limits::BodyError::Transport(source)) => {
                return Err(RegistryError::Transport {
                    method: "GET".into(),
                    url: req.url.clone(),
                    source,
                })
            }
        }
    }
}

/// What went wrong on the source side of one streamed attempt.
enum SourceFault {
    /// The connection was cut: worth another attempt.
    Cut(String),
    /// The registry sent other bytes than the descriptor names: no attempt can help.
    Bad(RegistryError),
}

/// Gets `desc` to `to`: there already, mounted from `from`'s repository (same registry),
/// or streamed from `from`.
async fn copy_blob(
    from: &Side,
    to: &Side,
    desc: &Descriptor,
    same_registry: bool,
    bar: &Bar,
) -> Result<BlobOutcome> {
    let base = to.session.base().await?.to_string();
    let blob_url = format!("{base}/v2/{}/blobs/{}", to.repo, desc.digest);
    let head = Request::new(Method::HEAD, &blob_url, &to.scopes);
    let resp = to.session.send(&head).await?;
    if resp.status() == StatusCode::OK {
        return Ok(BlobOutcome::Exists);
    }
    let mut preset = None;
    if same_registry && from.repo != to.repo {
        let url = format!(
            "{base}/v2/{}/blobs/uploads/?mount={}&from={}",
            to.repo, desc.digest, from.repo
        );
        let req = Request::new(Method::POST, url, &to.scopes);
        let resp = to.session.send(&req).await?;
        match resp.status() {
            StatusCode::CREATED => {
                return Ok(BlobOutcome::Mounted {
                    from: from.repo.clone(),
                })
            }
            // Not mountable here: the registry opened an ordinary upload session.
            StatusCode::ACCEPTED => {
                if let Some(loc) = transfer::location(&resp) {
                    preset = Some(to.session.absolute(&loc).await?);
                }
            }
            _ => {}
        }
    }
    bar.status("Pushing");
    let src_url = format!(
        "{}/v2/{}/blobs/{}",
        from.session.base().await?,
        from.repo,
        desc.digest
    );
    let mut failures = 0u32;
    loop {
        let location = match preset.take() {
            Some(l) => l,
            None => {
                transfer::start_upload(&to.session, &base, &to.repo, &to.scopes)
                    .await?
                    .location
            }
        };
        bar.set_position(0);
        let reason = match stream_once(from, to, desc, &src_url, &location, bar).await? {
            None => return Ok(BlobOutcome::Pushed),
            Some(reason) => reason,
        };
        failures += 1;
        if failures >= to.session.retry.max_attempts {
            return Err(RegistryError::RetriesExhausted {
                method: "PUT".into(),
                url: blob_url,
                attempts: failures,
                last: reason,
            });
        }
        tokio::time::sleep(to.session.retry.delay(failures, None)).await;
    }
}

/// One attempt: `GET` at the source, its body as the `PUT` at `location`. Ok(None) when
/// DST has the blob, Ok(Some(reason)) when another attempt may succeed.
async fn stream_once(
    from: &Side,
    to: &Side,
    desc: &Descriptor,
    src_url: &str,
    location: &str,
    bar: &Bar,
) -> Result<Option<String>> {
    let get = Request::new(Method::GET, src_url, &from.scopes);
    let resp = from.session.send(&get).await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Err(RegistryError::BlobUnknown {
            registry: from.session.registry.clone(),
            repository: from.repo.clone(),
            digest: desc.digest.clone(),
        });
    }
    let resp = from
        .session
        .check(&get, resp, &[StatusCode::OK], &from.repo)
        .await?;
    if let Some(len) = resp.content_length().filter(|l| *l != desc.size) {
        return Err(RegistryError::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: len,
        });
    }
    let fault = Arc::new(Mutex::new(None));
    let body = relay(resp, desc.clone(), bar.clone(), fault.clone());
    let mut put = Request::new(
        Method::PUT,
        transfer::with_digest(location, &desc.digest),
        &to.scopes,
    )
    .header(CONTENT_TYPE, "application/octet-stream")
    .header(CONTENT_LENGTH, &desc.size.to_string())
    .body(Body::Stream(Arc::new(Mutex::new(Some(body)))));
    put.retry_transport = false;
    let sent = to.session.send(&put).await;
    let source_fault = fault.lock().unwrap_or_else(|p| p.into_inner()).take();
    match source_fault {
        Some(SourceFault::Bad(e)) => return Err(e),
        Some(SourceFault::Cut(reason)) => return Ok(Some(reason)),
        None => {}
    }
    match sent {
        // A 5xx/429 the session wanted to answer by sending the body again.
        Err(RegistryError::BodyResent { .. }) => Ok(Some("registry asked again".into())),
        Err(RegistryError::Transport { source, .. }) if retry::is_retryable_error(&source) => {
            Ok(Some(retry::chain_text(&source)))
        }
        Err(e) => Err(e),
        Ok(resp) if resp.status() == StatusCode::CREATED => Ok(None),
        Ok(resp) if retry::is_retryable_status(resp.status()) => {
            Ok(Some(format!("status {}", resp.status())))
        }
        // A session that got part of an earlier body, or lost it: start a new one.
        Ok(resp)
            if matches!(
                resp.status(),
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::RANGE_NOT_SATISFIABLE
            ) =>
        {
            let err = to
                .session
                .check(&put, resp, &[StatusCode::CREATED], &to.repo)
                .await
                .err();
            Ok(Some(err.map(|e| e.to_string()).unwrap_or_default()))
        }
        Ok(resp) => Err(to
            .session
            .check(&put, resp, &[StatusCode::CREATED], &to.repo)
            .await
            .err()
            .unwrap_or_else(|| RegistryError::Status {
                method: "PUT".into(),
                url: put.url.clone(),
                status: 0,
                code: None,
                message: String::new(),
            })),
    }
}

/// The source's body as a request body: counted on `bar`, hashed, never more than the
/// descriptor's size, and one chunk behind, so the last chunk goes only once the whole
/// body matched the digest. A failure ends the body with an error (the upload fails) and
/// is recorded in `fault`.
fn relay(
    resp: reqwest::Response,
    desc: Descriptor,
    bar: Bar,
    fault: Arc<Mutex<Option<SourceFault>>>,
) -> reqwest::Body {
    struct State {
        resp: reqwest::Response,
        hasher: Sha256,
        seen: u64,
        held: Option<Bytes>,
        is_over: bool,
    }
    let state = State {
        resp,
        hasher: Sha256::new(),
        seen: 0,
        held: None,
        is_over: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut s| {
        let (desc, bar, fault) = (desc.clone(), bar.clone(), fault.clone());
        async move {
            let fail = |s: State, f: SourceFault| {
                *fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
                let e = std::io::Error::other("the source registry's body failed");
                Some((
                    Err::<Bytes, std::io::Error>(e),
                    State { is_over: true, ..s },
                ))
            };
            loop {
                if s.is_over {
                    return None;
                }
                match s.resp.chunk().await {
                    Ok(Some(chunk)) => {
                        s.seen += chunk.len() as u64;
                        if s.seen > desc.size {
                            let actual = s.seen;
                            return fail(
                                s,
                                SourceFault::Bad(RegistryError::SizeMismatch {
                                    digest: desc.digest.clone(),
                                    expected: desc.size,
                                    actual,
                                }),
                            );
                        }
                        s.hasher.update(&chunk);
                        bar.inc(chunk.len() as u64);
                        if let Some(out) = s.held.replace(chunk) {
                            return Some((Ok(out), s));
                        }
                    }
                    Ok(None) if s.seen < desc.size => {
                        let actual = s.seen;
                        return fail(
                            s,
                            SourceFault::Bad(RegistryError::BlobShorter {
                                digest: desc.digest.clone(),
                                expected: desc.size,
                                actual,
                            }),
                        );
                    }
                    Ok(None) => {
                        let actual =
                            Digest::from_sha256(std::mem::take(&mut s.hasher).finalize().into());
                        if actual != desc.digest {
                            return fail(
                                s,
                                SourceFault::Bad(RegistryError::DigestMismatch {
                                    what: format!("blob {}", desc.digest),
                                    expected: desc.digest.clone(),
                                    actual,
                                }),
                            );
                        }
                        s.is_over = true;
                        return s.held.take().map(|out| (Ok(out), s));
                    }
                    Err(e) => {
                        let reason = retry::chain_text(&e);
                        return fail(s, SourceFault::Cut(reason));
                    }
                }
            }
        }
    });
    reqwest::Body::wrap_stream(stream)
}

impl Client {
    /// Copies the image `src` names to `dst` (see the module doc). Nothing is stored
    /// locally.
    pub async fn copy(
        &self,
        src: &Reference,
        dst: &Reference,
        opts: &CopyOptions,
    ) -> Result<CopyReport> {
        copy(self, src, dst, opts).await
    }
}
