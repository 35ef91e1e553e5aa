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
/// blob durable. The compression never waits for the upload: members the request cannot
/// take yet are read back from the store's ingest file when it can (`ChannelSink`), so
/// while the registry is busy with bytes that were cheap to make (stored chunks), the
/// cores go on with the costly ones behind them.
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
    let (sink, body, ended_rx) = streamed_body(STREAM_QUEUE);
    let producing = tokio::task::spawn_blocking(move || produce(Box::new(sink)));
    let counted = bar.clone();
    let pieces = futures_util::stream::unfold(body, |mut body| async move {
        body.next().await.map(|piece| (piece, body))
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

/// How many members of a streamed blob wait in memory for the connection; a member
/// that finds the queue full, and every one after it, is read back from the file.
const STREAM_QUEUE: usize = 16;

/// The sink a producer writes a streamed blob to, the request body that sends it (at
/// most `queue` members held in memory), and where the sink's `whole` (or drop) says
/// what the body was.
fn streamed_body(queue: usize) -> (ChannelSink, BodyPieces, Ended) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(queue);
    let (filed_tx, filed_rx) = tokio::sync::watch::channel(Filed::default());
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let sink = ChannelSink {
        queue: Some(tx),
        filed: filed_tx,
        size: 0,
        is_gone: false,
        ended: Some(ended_tx),
    };
    let body = BodyPieces {
        queue: Some(rx),
        filed: filed_rx,
        at: None,
    };
    (sink, body, ended_rx)
}

/// The digest and size of a whole streamed body, `None` for a short one.
type Ended = tokio::sync::oneshot::Receiver<Option<(Digest, u64)>>;

/// The most bytes of a streamed blob read back from its file at once (one body piece).
const READ_BACK: u64 = 1 << 20;

/// What the producer of a streamed blob has put in the store's ingest file, shared with
/// the request body (`BodyPieces`).
#[derive(Clone, Default)]
struct Filed {
    /// A read handle on the ingest file (`GzipCopy::file`).
    file: Option<Arc<std::fs::File>>,
    /// Bytes of the blob in the file (counted from the point the body reads it back).
    written: u64,
    /// Set when the queue was once full: the body goes on from the file at this offset.
    from: Option<u64>,
    /// No more bytes come: the sink got `whole` or was dropped.
    done: bool,
}

/// The sink `upload_streamed` hands its producer. Each gzip member, already in the
/// store's ingest file, becomes the next piece of the request body through a bounded
/// queue, shared with the store's buffer (no copy) while the request keeps up. When the
/// queue is full the member is not waited on: from then on the body reads the bytes back
/// from the file (`Filed`), and the sink only counts them. Once the request is gone (it
/// failed or was answered), members still succeed and go nowhere (`is_gone`): the copy is
/// short. `whole` ends the body and reports the digest and size it is told when the body
/// is whole (nothing lost, as many bytes as told, not empty); dropping it without `whole`
/// ends the body as short.
struct ChannelSink {
    /// Until the queue is full once (or the request is gone).
    queue: Option<tokio::sync::mpsc::Sender<Bytes>>,
    filed: tokio::sync::watch::Sender<Filed>,
    size: u64,
    is_gone: bool,
    ended: Option<tokio::sync::oneshot::Sender<Option<(Digest, u64)>>>,
}

/// A member shared between the store's writer and the request body.
struct SharedMember(Arc<Member>);

impl AsRef<[u8]> for SharedMember {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl GzipCopy for ChannelSink {
    fn file(&mut self, file: std::fs::File) {
        let file = Arc::new(file);
        self.filed.send_modify(|f| f.file = Some(file));
    }

    fn member(&mut self, member: Arc<Member>) -> std::io::Result<()> {
        use tokio::sync::mpsc::error::TrySendError;
        if self.is_gone {
            return Ok(());
        }
        let at = self.size;
        self.size += member.len() as u64;
        if let Some(queue) = &self.queue {
            match queue.try_send(Bytes::from_owner(SharedMember(member))) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => {
                    self.queue = None;
                    self.is_gone = true;
                    return Ok(());
                }
                Err(TrySendError::Full(_)) => {
                    // Say where the file takes over before the queue closes behind it.
                    let size = self.size;
                    self.filed.send_modify(|f| {
                        f.from = Some(at);
                        f.written = size;
                    });
                    self.queue = None;
                    return Ok(());
                }
            }
        }
        if self.filed.is_closed() {
            self.is_gone = true; // the body was dropped: the request is gone
            return Ok(());
        }
        let size = self.size;
        self.filed.send_modify(|f| f.written = size);
        Ok(())
    }

    fn whole(&mut self, digest: &Digest, size: u64) {
        let is_whole = !self.is_gone && !self.filed.is_closed() && self.size == size && size > 0;
        // Ends the body before the digest is reported.
        self.queue.take();
        self.filed.send_modify(|f| f.done = true);
        if let Some(ended) = self.ended.take() {
            // The upload may be gone already: then nobody waits for the digest.
            let _ = ended.send(is_whole.then(|| (digest.clone(), size)));
        }
    }
}

impl Drop for ChannelSink {
    fn drop(&mut self) {
        self.queue.take();
        self.filed.send_modify(|f| f.done = true);
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(None);
        }
    }
}

/// The request body of `upload_streamed`: the queued members, then (when the queue was
/// full once) the rest of the blob read back from the ingest file as it is written.
struct BodyPieces {
    queue: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    filed: tokio::sync::watch::Receiver<Filed>,
    /// Where the next read from the file starts, once the queue is drained.
    at: Option<u64>,
}

impl BodyPieces {
    /// The next piece of the body; `None` at its end.
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if let Some(queue) = &mut self.queue {
            if let Some(piece) = queue.recv().await {
                return Some(Ok(piece));
            }
            // The sink set `from` before it closed the queue, if it did so to go on
            // from the file.
            self.queue = None;
            self.at = self.filed.borrow().from;
        }
        loop {
            let at = self.at?;
            let (file, written, done) = {
                let f = self.filed.borrow_and_update();
                (f.file.clone(), f.written, f.done)
            };
            if at < written {
                let len = (written - at).min(READ_BACK);
                let piece = read_back(file, at, len).await;
                self.at = piece.is_ok().then_some(at + len);
                return Some(piece);
            }
            if done || self.filed.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// `len` bytes of the ingest file from `at` (written and flushed before they were
/// counted, so a short read is an error).
async fn read_back(file: Option<Arc<std::fs::File>>, at: u64, len: u64) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let file = file.ok_or_else(|| std::io::Error::other("the streamed blob has no file"))?;
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, at)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

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

    async fn read_all(mut body: BodyPieces) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece?);
        }
        Ok(all)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A body that takes nothing while the layer is made (nobody reads it) gets the
    /// members its queue holds and the rest from the file, and one whose queue never
    /// fills gets them all from memory: either way the stored blob's bytes, and a whole
    /// body with its digest.
    #[test]
    fn a_body_that_falls_behind_reads_the_rest_from_the_file() {
        let rt = runtime();
        for (queue, is_read_back) in [(1, true), (64, false)] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let st = Store::open(tmp.path()).expect("store");
            let lease = st.lease(std::time::Duration::from_secs(60)).expect("lease");
            let layer = plain_layer(&st, &lease);
            let (sink, body, ended) = streamed_body(queue);
            let (gz, wrote) = st
                .compressed_layer_copied(&lease, &layer, sink)
                .expect("compress");
            assert!(wrote, "queue {queue}");
            assert_eq!(
                body.filed.borrow().from.is_some(),
                is_read_back,
                "queue {queue}"
            );
            let sent = rt.block_on(read_all(body)).expect("body");
            let stored = std::fs::read(st.blob_path(&gz.blob.digest)).expect("blob");
            assert!(sent == stored, "queue {queue}: the body is the blob");
            assert_eq!(
                rt.block_on(ended).expect("ended"),
                Some((gz.blob.digest.clone(), gz.blob.size)),
                "queue {queue}"
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
        fn file(&mut self, file: std::fs::File) {
            self.sink.file(file)
        }

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

    /// A body gone before the last member (its request failed), whether its members went
    /// through the queue or were being read back from the file, is short: `whole` reports
    /// no digest, so nothing is `PUT`, and the layer is still compressed and stored.
    #[test]
    fn a_body_dropped_midway_is_short() {
        let rt = runtime();
        for (queue, after) in [(64, 2), (1, 3)] {
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
