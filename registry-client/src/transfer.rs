//! Moving one blob: download straight into the store's ingest (hashing while writing,
//! resuming by `Range` after a cut), and upload from a committed blob file (HEAD first,
//! cross-repository mount, monolithic or chunked, restarting or resuming after a
//! failure), or while it is being made (`upload_streamed`: a layer compressed for its
//! first push). Which blobs move at once is the caller's (pull.rs / push.rs, bounded by
//! [`limit`]); [`join_all`] collects them, stopping at the first failure.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use store::archive::gzip::Member;
use store::compressed::GzipCopy;
use store::{Descriptor, Digest, Lease, Store};
use tokio::task::JoinSet;

use crate::error::{RegistryError, Result};
use crate::progress::Bar;
use crate::retry;
use crate::session::{Body, ProgressFn, Request, Session};

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// `POST` then one `PUT ?digest=` carrying the whole blob (fewest round trips).
    Monolithic,
    /// `POST`, then `PATCH` chunks of this many bytes, then `PUT ?digest=`. A failed
    /// chunk resumes from the offset the registry reports.
    Chunked(u64),
}

/// What happened to one blob during a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry already had it (HEAD answered 200).
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted { from: String },
    /// Uploaded.
    Pushed,
}

/// The semaphore that bounds one command's parallel transfers
/// (`ClientOptions::max_concurrent_transfers`, at least 1).
pub(crate) fn limit(max: usize) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(max.max(1)))
}

/// Waits for every task and returns their results in completion order. The first
/// error aborts the tasks still running and is returned once they are gone (their
/// temp files dropped); a panic in a task is resumed here.
pub(crate) async fn join_all<T: 'static>(mut tasks: JoinSet<Result<T>>) -> Result<Vec<T>> {
    let mut done = Vec::with_capacity(tasks.len());
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        let result = match joined {
            Ok(r) => r,
            // Siblings aborted after the first failure.
            Err(e) if e.is_cancelled() => continue,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match result {
            Ok(t) => done.push(t),
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    tasks.abort_all();
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

fn blob_url(base: &str, repository: &str, digest: &Digest) -> String {
    format!("{base}/v2/{repository}/blobs/{digest}")
}

/// Downloads `desc` from `repository` into the store unless it is already there.
/// Returns `None` when it was already present. `lease` covers it from before the
/// check (the caller usually leased it already, which costs nothing more). The blob is committed only after its size
/// and digest match `desc`; a connection cut mid-body resumes with `Range` (or restarts
/// when the registry ignores it). Nothing half-written ever becomes visible.
pub async fn download(
    session: &Session,
    store: &Store,
    lease: &Lease,
    repository: &str,
    desc: &Descriptor,
    scopes: &[String],
    bar: &Bar,
) -> Result<Option<Descriptor>> {
    {
        let (lease, digest) = (lease.clone(), desc.digest.clone());
        tokio::task::spawn_blocking(move || lease.add_digest(&digest))
            .await
            .expect("the lease task does not panic")?;
    }
    if store.has_blob(&desc.digest) {
        return Ok(None);
    }
    let base = session.base().await?.to_string();
    let url = blob_url(&base, repository, &desc.digest);
    let mut writer = store.writer(lease)?.with_media_type(&desc.media_type);
    let mut cuts = 0u32;
    loop {
        let written = writer.written();
        let mut req = Request::new(Method::GET, &url, scopes);
        if written > 0 {
            req = req.header(RANGE, &format!("bytes={written}-"));
        }
        let resp = session.send(&req).await?;
        let resp = match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => resp,
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::BlobUnknown {
                    registry: session.registry.clone(),
                    repository: repository.to_string(),
                    digest: desc.digest.clone(),
                })
            }
            _ => {
                session
                    .check(&req, resp, &[StatusCode::OK], repository)
                    .await?;
                unreachable!("check returns Err for a status it was not given")
            }
        };
        let resumed = resp.status() == StatusCode::PARTIAL_CONTENT
            && content_range_start(resp.headers()) == Some(written);
        if written > 0 && !resumed {
            // The registry sent the whole blob (or a range we did not ask for): start over.
            writer = store.writer(lease)?.with_media_type(&desc.media_type);
            bar.set_position(0);
        }
        // A body announced larger than the descriptor is refused before it is read.
        if let Some(len) = resp.content_length() {
            let total = writer.written().saturating_add(len);
            if total > desc.size {
                return Err(RegistryError::SizeMismatch {
                    digest: desc.digest.clone(),
                    expected: desc.size,
                    actual: total,
                });
            }
        }
        match stream_into(resp, &mut writer, desc, bar).await? {
            None => break,
            Some(err) => {
                cuts += 1;
                if cuts >= session.retry.max_attempts {
                    return Err(RegistryError::RetriesExhausted {
                        method: "GET".into(),
                        url,
                        attempts: cuts,
                        last: err,
                    });
                }
                tokio::time::sleep(session.retry.delay(cuts, None)).await;
            }
        }
    }
    let (size, digest) = (desc.size, desc.digest.clone());
    let committed =
        tokio::task::spawn_blocking(move || writer.commit_unrecorded(Some(size), Some(&digest)))
            .await
            .expect("the commit task does not panic")
            .map_err(|e| match e {
                store::StoreError::DigestMismatch {
                    expected, actual, ..
                } => RegistryError::DigestMismatch {
                    what: format!("blob from {}/{repository}", session.registry),
                    expected,
                    actual,
                },
                other => other.into(),
            })?;
    Ok(Some(committed))
}

/// Copies a response body into the writer. Ok(None) when the body arrived whole,
/// Ok(Some(reason)) when the connection was cut (retry with Range), Err when it can
/// never succeed: more bytes than the descriptor says, or a body that ends cleanly
/// before the descriptor's size.
async fn stream_into(
    mut resp: reqwest::Response,
    writer: &mut store::BlobWriter,
    desc: &Descriptor,
    bar: &Bar,
) -> Result<Option<String>> {
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let total = writer.written() + chunk.len() as u64;
                if total > desc.size {
                    return Err(RegistryError::SizeMismatch {
                        digest: desc.digest.clone(),
                        expected: desc.size,
                        actual: total,
                    });
                }
                writer
                    .write_all(&chunk)
                    .map_err(|source| RegistryError::Config {
                        action: "writing",
                        path: writer.ingest_path().to_path_buf(),
                        source,
                    })?;
                bar.inc(chunk.len() as u64);
            }
            // The body ended cleanly (a cut connection is an error below): the registry's
            // blob is shorter than the descriptor, and asking again cannot change that.
            Ok(None) if writer.written() < desc.size => {
                return Err(RegistryError::BlobShorter {
                    digest: desc.digest.clone(),
                    expected: desc.size,
                    actual: writer.written(),
                })
            }
            Ok(None) => return Ok(None),
            Err(e) if retry::is_retryable_error(&e) => return Ok(Some(retry::chain_text(&e))),
            Err(e) => {
                return Err(RegistryError::Transport {
                    method: "GET".into(),
                    url: e.url().map(|u| u.to_string()).unwrap_or_default(),
                    source: e,
                })
            }
        }
    }
}

fn content_range_start(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    // "bytes 100-199/200"
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// Where one upload stands.
pub(crate) struct UploadSession {
    pub(crate) location: String,
}

/// Pushes one committed blob to `repository`: HEAD, then mount from `mount_from` (same
/// registry), then upload. Retries restart the upload session (monolithic) or resume
/// from the registry's reported offset (chunked).
#[allow(clippy::too_many_arguments)] // each is a distinct input of the protocol step
pub async fn upload(
    session: &Session,
    store: &Store,
    repository: &str,
    desc: &Descriptor,
    mount_from: &[String],
    mode: UploadMode,
    scopes: &[String],
    bar: &Bar,
) -> Result<BlobOutcome> {
    let base = session.base().await?.to_string();
    let head = Request::new(
        Method::HEAD,
        blob_url(&base, repository, &desc.digest),
        scopes,
    );
    let resp = session.send(&head).await?;
    if resp.status() == StatusCode::OK {
        return Ok(BlobOutcome::Exists);
    }
    let mut preset: Option<UploadSession> = None;
    for from in mount_from.iter().filter(|f| f.as_str() != repository) {
        let url = format!(
            "{base}/v2/{repository}/blobs/uploads/?mount={}&from={from}",
            desc.digest
        );
        let req = Request::new(Method::POST, url, scopes);
        let resp = session.send(&req).await?;
        match resp.status() {
            StatusCode::CREATED => return Ok(BlobOutcome::Mounted { from: from.clone() }),
            // 202: the registry could not mount (no access, or not there) and opened an
            // ordinary upload session instead; oci-client treats this as an error.
            StatusCode::ACCEPTED => {
                if let Some(loc) = location(&resp) {
                    preset = Some(UploadSession {
                        location: session.absolute(&loc).await?,
                    });
                    break;
                }
            }
            _ => {} // not fatal: fall back to a plain upload
        }
    }
    let path = store.blob_path(&desc.digest);
    if !path.exists() {
        return Err(store::StoreError::BlobMissing {
            digest: desc.digest.clone(),
            root: store.root().to_path_buf(),
        }
        .into());
    }
    let progress: ProgressFn = {
        let bar = bar.clone();
        Arc::new(move |n| bar.inc(n))
    };
    let mut failures = 0u32;
    loop {
        let up = match preset.take() {
            Some(s) => s,
            None => start_upload(session, &base, repository, scopes).await?,
        };
        bar.set_position(0);
        let result = match mode {
            UploadMode::Monolithic => put_whole(session, &up, desc, &path, scopes, &progress).await,
            UploadMode::Chunked(chunk) => {
                put_chunks(
                    session,
                    up,
                    desc,
                    &path,
                    chunk.max(1),
                    scopes,
                    &progress,
                    bar,
                )
                .await
            }
        };
        match result {
            Ok(()) => return Ok(BlobOutcome::Pushed),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry { reason, wait }) => {
                failures += 1;
                if failures >= session.retry.max_attempts {
                    return Err(RegistryError::RetriesExhausted {
                        method: "PUT".into(),
                        url: blob_url(&base, repository, &desc.digest),
                        attempts: failures,
                        last: reason,
                    });
                }
                tokio::time::sleep(session.retry.delay(failures, wait)).await;
            }
        }
    }
}

/// Starts pushing a blob that is being made while it is sent: `POST`, one `PATCH` whose
/// chunked body is what `produce` writes to its sink (on a blocking thread), then
/// `PUT ?digest=` with the digest the store hashed while writing the same bytes (one
/// hash, not two). So a layer compressed for its first push costs about the longer of
/// compressing and uploading, not their sum, and the `PUT` overlaps the store making the
/// blob durable. The compression runs ahead of the upload by at most `STREAM_BUDGET`
/// bytes of members held in memory (`ChannelSink`): while the registry is busy with
/// bytes that were cheap to make (stored chunks), the cores go on with the costly ones
/// behind them, and a registry slower than the compression paces it.
///
/// `produce` calls `GzipCopy::whole` after the last byte and then drops the sink (see
/// `Store::compressed_layer_copied`): only that ends a whole body; a sink dropped without
/// it, one that saw no bytes, or one whose byte count is not the size it is told, is
/// never `PUT`. `produce` returns the blob
/// (committed to the store) and whether it wrote all of it to the sink. Returns that
/// descriptor and whether the registry now has the blob; when it has not (`produce`
/// wrote nothing, the connection failed, the registry refused the stream or its digest,
/// or the bytes sent are not the blob's) the caller pushes the stored blob with
/// [`upload`], which retries. No HEAD or mount first: the digest is not known until the
/// blob is made.
pub async fn upload_streamed<F>(
    session: &Session,
    repository: &str,
    scopes: &[String],
    bar: &Bar,
    produce: F,
) -> Result<(Descriptor, bool)>
where
    F: FnOnce(Box<dyn GzipCopy + Send>) -> store::Result<(Descriptor, bool)> + Send + 'static,
{
    let base = session.base().await?.to_string();
    let up = start_upload(session, &base, repository, scopes).await?;
    let (sink, body, ended_rx) = streamed_body(STREAM_BUDGET);
    let producing = tokio::task::spawn_blocking(move || produce(Box::new(sink)));
    let counted = bar.clone();
    let pieces = futures_util::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|piece| (Ok::<_, std::io::Error>(piece), body))
    })
    .inspect(move |b| {
        if let Ok(b) = b {
            counted.inc(b.len() as u64);
        }
    });
    let mut req = Request::new(Method::PATCH, &up.location, scopes)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(Body::Stream(Arc::new(std::sync::Mutex::new(Some(
            reqwest::Body::wrap_stream(pieces),
        )))));
    req.retry_transport = false;
    // The PATCH ends when the sink is dropped; the PUT goes out while `produce` still
    // commits the blob to the store.
    let uploading = async {
        let sent = session.send(&req).await;
        let Ok(Some(sent_blob)) = ended_rx.await else {
            return Ok(None);
        };
        let Ok(resp) = outcome(session, &req, sent, StatusCode::ACCEPTED).await else {
            return Ok(None);
        };
        let location = match location(&resp) {
            Some(loc) => session.absolute(&loc).await?,
            None => up.location.clone(),
        };
        let put = Request::new(Method::PUT, with_digest(&location, &sent_blob.0), scopes);
        let sent = session.send(&put).await;
        let is_pushed = outcome(session, &put, sent, StatusCode::CREATED)
            .await
            .is_ok();
        Ok::<_, RegistryError>(Some((sent_blob, is_pushed)))
    };
    let (uploaded, produced) = tokio::join!(uploading, producing);
    let (desc, wrote) = produced.expect("the producing task does not panic")?;
    match uploaded? {
        Some(((digest, size), is_pushed))
            if wrote && digest == desc.digest && size == desc.size =>
        {
            Ok((desc, is_pushed))
        }
        _ => Ok((desc, false)),
    }
}

/// Bytes of a streamed blob that may wait in memory for the connection: the producer
/// waits beyond that (`ChannelSink`). Enough for 16 stored 4 MiB members, or a great
/// many small deflated ones, so the compression runs well ahead where its members are
/// small and costly to make.
const STREAM_BUDGET: usize = 64 << 20;

/// The sink a producer writes a streamed blob to, the request body that sends it (at
/// most `budget` bytes held in memory, though always at least one member), and where
/// the sink's `whole` (or drop) says what the body was.
fn streamed_body(budget: usize) -> (ChannelSink, BodyPieces, Ended) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let sink = ChannelSink {
        queue: Some(tx),
        budget: Arc::new(Budget {
            limit: budget,
            ..Budget::default()
        }),
        size: 0,
        ended: Some(ended_tx),
    };
    (sink, rx, ended_rx)
}

/// The digest and size of a whole streamed body, `None` for a short one.
type Ended = tokio::sync::oneshot::Receiver<Option<(Digest, u64)>>;

/// The bytes queued for a request body and not yet sent, shared by the sink that waits
/// on them and the members that give theirs back once sent (or dropped).
#[derive(Default)]
struct Budget {
    limit: usize,
    held: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    /// How many times `take` had to wait (for tests).
    #[cfg(test)]
    waits: std::sync::atomic::AtomicUsize,
}

impl Budget {
    /// Waits until `n` more bytes fit (or nothing is held), then holds them.
    fn take(&self, n: usize) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held > 0 && *held + n > self.limit {
            #[cfg(test)]
            self.waits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held += n;
    }

    fn give(&self, n: usize) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *held = held.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// The sink `upload_streamed` hands its producer. Each gzip member becomes the next
/// piece of the request body, shared with the store's buffer (no copy). While more than
/// the budget is queued, the producer waits: the upload paces the compression, which
/// never runs more than the budget ahead. Once the request is gone (it failed or was
/// answered), its queued members are dropped, which frees the budget, and members still
/// succeed and go nowhere: the copy is short. `whole` ends the body and reports the
/// digest and size it is told when the body is whole (nothing lost, as many bytes as
/// told, not empty); dropping it without `whole` ends the body as short.
struct ChannelSink {
    /// Until the request is gone or the body ends.
    queue: Option<tokio::sync::mpsc::UnboundedSender<Bytes>>,
    budget: Arc<Budget>,
    size: u64,
    ended: Option<tokio::sync::oneshot::Sender<Option<(Digest, u64)>>>,
}

/// A member shared between the store's writer and the request body; its bytes are
/// given back to the budget when the body is done with it.
struct SharedMember(Arc<Member>, Arc<Budget>);

impl AsRef<[u8]> for SharedMember {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SharedMember {
    fn drop(&mut self) {
        self.1.give(self.0.len());
    }
}

impl GzipCopy for ChannelSink {
    fn member(&mut self, member: Arc<Member>) -> std::io::Result<()> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        self.size += member.len() as u64;
        if queue.is_closed() {
            self.queue = None; // the body was dropped: the request is gone
            return Ok(());
        }
        self.budget.take(member.len());
        let piece = Bytes::from_owner(SharedMember(member, self.budget.clone()));
        if queue.send(piece).is_err() {
            self.queue = None;
        }
        Ok(())
    }

    fn whole(&mut self, digest: &Digest, size: u64) {
        let is_whole =
            self.queue.take().is_some_and(|q| !q.is_closed()) && self.size == size && size > 0;
        if let Some(ended) = self.ended.take() {
            // The upload may be gone already: then nobody waits for the digest.
            let _ = ended.send(is_whole.then(|| (digest.clone(), size)));
        }
    }
}

impl Drop for ChannelSink {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(None);
        }
    }
}

/// The request body of `upload_streamed`: the queued members, in order, until the sink
/// ends the body.
type BodyPieces = tokio::sync::mpsc::UnboundedReceiver<Bytes>;

enum Attempt {
    Retry {
        reason: String,
        wait: Option<std::time::Duration>,
    },
    Fatal(RegistryError),
}

impl From<RegistryError> for Attempt {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::RetriesExhausted { last, .. } => Attempt::Retry {
                reason: last,
                wait: None,
            },
            other => Attempt::Fatal(other),
        }
    }
}

pub(crate) fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) async fn start_upload(
    session: &Session,
    base: &str,
    repository: &str,
    scopes: &[String],
) -> Result<UploadSession> {
    let req = Request::new(
        Method::POST,
        format!("{base}/v2/{repository}/blobs/uploads/"),
        scopes,
    );
    let resp = session.send(&req).await?;
    let resp = session
        .check(&req, resp, &[StatusCode::ACCEPTED], repository)
        .await?;
    let loc = location(&resp).ok_or_else(|| RegistryError::Status {
        method: "POST".into(),
        url: req.url.clone(),
        status: 202,
        code: None,
        message: "upload session answer has no Location header".into(),
    })?;
    Ok(UploadSession {
        location: session.absolute(&loc).await?,
    })
}

pub(crate) fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// Classifies the answer to a data-bearing request: success, retry (new session or
/// resume), or a failure no retry can fix.
async fn outcome(
    session: &Session,
    req: &Request,
    sent: Result<reqwest::Response>,
    ok: StatusCode,
) -> std::result::Result<reqwest::Response, Attempt> {
    let resp = match sent {
        Ok(r) => r,
        Err(RegistryError::Transport { source, .. }) if retry::is_retryable_error(&source) => {
            return Err(Attempt::Retry {
                reason: retry::chain_text(&source),
                wait: None,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let status = resp.status();
    if status == ok {
        return Ok(resp);
    }
    if retry::is_retryable_status(status) {
        return Err(Attempt::Retry {
            reason: format!("status {status}"),
            wait: retry::retry_after(resp.headers()),
        });
    }
    // 400 DIGEST_INVALID / BLOB_UPLOAD_INVALID and 404 BLOB_UPLOAD_UNKNOWN mean the
    // session got a partial body from an earlier cut: start a new one.
    if status == StatusCode::BAD_REQUEST
        || status == StatusCode::NOT_FOUND
        || status == StatusCode::RANGE_NOT_SATISFIABLE
    {
        let err = session.check(req, resp, &[ok], "").await.err();
        return Err(Attempt::Retry {
            reason: err.map(|e| e.to_string()).unwrap_or_default(),
            wait: None,
        });
    }
    Err(Attempt::Fatal(
        session
            .check(req, resp, &[ok], "")
            .await
            .err()
            .unwrap_or_else(|| RegistryError::Status {
                method: req.method.to_string(),
                url: req.url.clone(),
                status: status.as_u16(),
                code: None,
                message: String::new(),
            }),
    ))
}

async fn put_whole(
    session: &Session,
    up: &UploadSession,
    desc: &Descriptor,
    path: &std::path::Path,
    scopes: &[String],
    progress: &ProgressFn,
) -> std::result::Result<(), Attempt> {
    let mut req = Request::new(Method::PUT, with_digest(&up.location, &desc.digest), scopes)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(Body::File {
            path: path.to_path_buf(),
            offset: 0,
            len: desc.size,
            progress: Some(progress.clone()),
        });
    req.retry_transport = false;
    let sent = session.send(&req).await;
    outcome(session, &req, sent, StatusCode::CREATED).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn put_chunks(
    session: &Session,
    mut up: UploadSession,
    desc: &Descriptor,
    path: &std::path::Path,
    chunk: u64,
    scopes: &[String],
    progress: &ProgressFn,
    bar: &Bar,
) -> std::result::Result<(), Attempt> {
    let mut offset = 0u64;
    let mut stalls = 0u32;
    while offset < desc.size {
        let len = chunk.min(desc.size - offset);
        let mut req = Request::new(Method::PATCH, &up.location, scopes)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_RANGE, &format!("{}-{}", offset, offset + len - 1))
            .body(Body::File {
                path: path.to_path_buf(),
                offset,
                len,
                progress: Some(progress.clone()),
            });
        req.retry_transport = false;
        let sent = session.send(&req).await;
        match outcome(session, &req, sent, StatusCode::ACCEPTED).await {
            Ok(resp) => {
                if let Some(loc) = location(&resp) {
                    up.location = session.absolute(&loc).await.map_err(Attempt::Fatal)?;
                }
                offset += len;
                stalls = 0;
            }
            Err(Attempt::Retry { reason, wait }) => {
                // Ask the registry how much it kept and resume from there.
                stalls += 1;
                if stalls >= session.retry.max_attempts {
                    return Err(Attempt::Retry { reason, wait });
                }
                tokio::time::sleep(session.retry.delay(stalls, wait)).await;
                match upload_offset(session, &up, scopes).await {
                    Some((received, loc)) if received <= desc.size => {
                        up.location = loc;
                        offset = received;
                        bar.set_position(received);
                    }
                    _ => return Err(Attempt::Retry { reason, wait: None }),
                }
            }
            Err(fatal) => return Err(fatal),
        }
    }
    let req = Request::new(Method::PUT, with_digest(&up.location, &desc.digest), scopes);
    let sent = session.send(&req).await;
    outcome(session, &req, sent, StatusCode::CREATED).await?;
    Ok(())
}

/// `GET` on an upload session: 204 with `Range: 0-N` says N+1 bytes arrived.
async fn upload_offset(
    session: &Session,
    up: &UploadSession,
    scopes: &[String],
) -> Option<(u64, String)> {
    let req = Request::new(Method::GET, &up.location, scopes);
    let resp = session.send(&req).await.ok()?;
    if resp.status() != StatusCode::NO_CONTENT {
        return None;
    }
    let loc = match location(&resp) {
        Some(l) => session.absolute(&l).await.ok()?,
        None => up.location.clone(),
    };
    let range = resp.headers().get(RANGE)?.to_str().ok()?.to_string();
    let end: u64 = range.trim().rsplit('-').next()?.parse().ok()?;
    // "0-0" is what distribution sends for an empty session.
    let received = if range.trim() == "0-0" { 0 } else { end + 1 };
    Some((received, loc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{media_types, LayerRef, Store};

    /// xorshift bytes: stored, not deflated, by the gzip writer.
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A plain layer of five gzip members and a bit (random, then text).
    fn plain_layer(st: &Store, lease: &Lease) -> LayerRef {
        let chunk = store::archive::gzip::CHUNK;
        let mut tar = random(3 * chunk, 5);
        tar.extend(
            b"some text, many times\n"
                .iter()
                .cycle()
                .take(2 * chunk + 999),
        );
        let blob = st
            .put_blob(lease, &tar, media_types::OCI_LAYER_TAR)
            .expect("put");
        LayerRef {
            diff_id: blob.digest.clone(),
            blob,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A body read while the layer is made gets the stored blob's bytes and its digest,
    /// whether its budget holds the whole layer or less than one member. With the
    /// latter, the producer queues one member and then waits for it to be sent before it
    /// queues the next: until the body is read, one member is queued, not the layer.
    #[test]
    fn a_body_paces_the_producer_within_its_budget() {
        use std::sync::atomic::Ordering;
        let rt = runtime();
        for budget in [1, STREAM_BUDGET] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let st = Store::open(tmp.path()).expect("store");
            let lease = st.lease(std::time::Duration::from_secs(60)).expect("lease");
            let layer = plain_layer(&st, &lease);
            let (sink, mut body, ended) = streamed_body(budget);
            let waits = sink.budget.clone();
            let (sent, (gz, wrote)) = std::thread::scope(|scope| {
                let producing = scope.spawn(|| {
                    st.compressed_layer_copied(&lease, &layer, sink)
                        .expect("compress")
                });
                if budget == 1 {
                    // Nothing reads the body yet: the producer must come to wait.
                    while waits.waits.load(Ordering::SeqCst) == 0 && !producing.is_finished() {
                        std::thread::yield_now();
                    }
                    assert_eq!(body.len(), 1, "one member queued, then a wait");
                }
                let sent = rt.block_on(async {
                    let mut all = Vec::new();
                    while let Some(piece) = body.recv().await {
                        all.extend_from_slice(&piece);
                    }
                    all
                });
                (sent, producing.join().expect("producer"))
            });
            assert!(wrote, "budget {budget}");
            let stored = std::fs::read(st.blob_path(&gz.blob.digest)).expect("blob");
            assert!(sent == stored, "budget {budget}: the body is the blob");
            assert_eq!(
                rt.block_on(ended).expect("ended"),
                Some((gz.blob.digest.clone(), gz.blob.size)),
                "budget {budget}"
            );
        }
    }

    /// Drops the request body after `after` members, as a failed request does.
    struct DropsBody {
        sink: ChannelSink,
        body: Option<BodyPieces>,
        after: usize,
    }

    impl GzipCopy for DropsBody {
        fn member(&mut self, member: Arc<Member>) -> std::io::Result<()> {
            self.sink.member(member)?;
            self.after = self.after.saturating_sub(1);
            if self.after == 0 {
                self.body = None;
            }
            Ok(())
        }

        fn whole(&mut self, digest: &Digest, size: u64) {
            self.sink.whole(digest, size)
        }
    }

    /// A body gone before the last member (its request failed), with members still
    /// queued or with the producer at its budget, is short: `whole` reports no digest,
    /// so nothing is `PUT`, and the layer is still compressed and stored (the dropped
    /// members free the budget: the producer does not wait for a body that is gone).
    #[test]
    fn a_body_dropped_midway_is_short() {
        let rt = runtime();
        for (queue, after) in [(STREAM_BUDGET, 2), (1, 1)] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let st = Store::open(tmp.path()).expect("store");
            let lease = st.lease(std::time::Duration::from_secs(60)).expect("lease");
            let layer = plain_layer(&st, &lease);
            let (sink, body, ended) = streamed_body(queue);
            let copy = DropsBody {
                sink,
                body: Some(body),
                after,
            };
            let (gz, _) = st
                .compressed_layer_copied(&lease, &layer, copy)
                .expect("compress");
            assert!(st.has_blob(&gz.blob.digest));
            assert_eq!(rt.block_on(ended).expect("ended"), None, "queue {queue}");
        }
    }
}
