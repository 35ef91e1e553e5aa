//! A fault-injecting HTTP proxy between strata and a registry. On a random share of
//! requests it answers 503, answers 429 with `Retry-After: 1`, resets the connection,
//! or forwards the request and cuts the response body short. Every connection carries
//! one request (the proxy adds `Connection: close` both ways), so it only has to parse
//! request and response heads.
//!
//! [`FaultProxy::hostile`] instead forwards everything faithfully except manifests, which
//! it answers with a [`Hostile`] lie: a registry built to hurt the client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicUsize,
    pub unavailable: AtomicUsize,
    pub too_many: AtomicUsize,
    pub resets: AtomicUsize,
    pub short_bodies: AtomicUsize,
    /// GETs of `/v2/…/manifests/…` and `/v2/…/blobs/…`.
    pub manifest_gets: AtomicUsize,
    pub blob_gets: AtomicUsize,
    /// Body bytes of hostile answers that the client accepted.
    pub hostile_bytes: AtomicU64,
}

/// A manifest answer that lies to the client.
#[derive(Debug, Clone, Copy)]
pub enum Hostile {
    /// Every manifest GET gets a JSON body of this many bytes and no Content-Length.
    HugeManifest(u64),
    /// Each layer descriptor claims this many bytes more than the layer has.
    LayersOverstated(u64),
    /// Each layer descriptor claims exactly this many bytes.
    LayerSize(u64),
}

pub struct FaultProxy {
    /// `127.0.0.1:port` to use in references instead of the registry's address.
    pub addr: String,
    pub counts: Arc<Counts>,
    pub seed: u64,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Proxies to `upstream`, breaking `percent`% of the requests.
    pub fn start(upstream: &str, percent: u64) -> FaultProxy {
        FaultProxy::start_with(upstream, percent, None)
    }

    /// Proxies to `upstream` without random faults, answering manifests with `lie`.
    pub fn hostile(upstream: &str, lie: Hostile) -> FaultProxy {
        eprintln!("hostile proxy: {lie:?}");
        FaultProxy::start_with(upstream, 0, Some(lie))
    }

    fn start_with(upstream: &str, percent: u64, lie: Option<Hostile>) -> FaultProxy {
        let seed = std::env::var("STRATA_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        if lie.is_none() {
            eprintln!(
                "fault proxy: {percent}% faults, seed {seed} (STRATA_FAULT_SEED={seed} to repeat)"
            );
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let rng = Arc::new(AtomicU64::new(seed | 1));
        let (c2, s2, up) = (counts.clone(), stop.clone(), upstream.to_string());
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (c3, up2, rng2) = (c2.clone(), up.clone(), rng.clone());
                        std::thread::spawn(move || handle(client, &up2, percent, lie, &c3, &rng2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FaultProxy {
            addr,
            counts,
            seed,
            stop,
        }
    }

    pub fn faults(&self) -> usize {
        let c = &self.counts;
        c.unavailable.load(Ordering::Relaxed)
            + c.too_many.load(Ordering::Relaxed)
            + c.resets.load(Ordering::Relaxed)
            + c.short_bodies.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{} requests: {} x 503, {} x 429, {} resets, {} short bodies (seed {})",
            c.requests.load(Ordering::Relaxed),
            c.unavailable.load(Ordering::Relaxed),
            c.too_many.load(Ordering::Relaxed),
            c.resets.load(Ordering::Relaxed),
            c.short_bodies.load(Ordering::Relaxed),
            self.seed
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn next(rng: &AtomicU64) -> u64 {
    let mut x = rng.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        match rng.compare_exchange(x, y, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return y,
            Err(cur) => x = cur,
        }
    }
}

/// Reads until the end of an HTTP head; returns (head, bytes read past it).
fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with `Connection: close` instead of whatever it had.
fn close_head(head: &str) -> String {
    let mut out = String::new();
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // A clone of this socket may still be held by the request-body copier: shut both
    // directions down so the peer sees the cut now, not when the last fd closes.
    let _ = s.shutdown(Shutdown::Both);
    drop(s); // closing with linger 0 sends RST
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    percent: u64,
    lie: Option<Hostile>,
    counts: &Counts,
    rng: &AtomicU64,
) {
    let _ = client.set_nonblocking(false);
    // A TLS ClientHello (a client probing https first): this proxy speaks plain http.
    let mut first = [0u8; 1];
    if client
        .peek(&mut first)
        .map(|n| n == 1 && first[0] == 0x16)
        .unwrap_or(true)
    {
        reset(client);
        return;
    }
    let Some((head, early_body)) = read_head(&mut client) else {
        return;
    };
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let method = head.split_whitespace().next().unwrap_or("").to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let is_manifest_get = method == "GET" && path.contains("/manifests/");
    if is_manifest_get {
        counts.manifest_gets.fetch_add(1, Ordering::Relaxed);
    }
    if method == "GET" && path.contains("/blobs/sha256:") {
        counts.blob_gets.fetch_add(1, Ordering::Relaxed);
    }
    if let (Some(lie), true) = (lie, is_manifest_get) {
        serve_lie(client, &head, upstream, lie, counts);
        return;
    }
    let roll = next(rng) % 100;
    let fault = if roll < percent {
        Some(next(rng) % 4)
    } else {
        None
    };
    match fault {
        Some(0) => {
            counts.unavailable.fetch_add(1, Ordering::Relaxed);
            let _ = client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = client.shutdown(Shutdown::Write);
            return;
        }
        Some(1) => {
            counts.too_many.fetch_add(1, Ordering::Relaxed);
            let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            let _ = write!(client, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = client.shutdown(Shutdown::Write);
            return;
        }
        Some(2) => {
            counts.resets.fetch_add(1, Ordering::Relaxed);
            reset(client);
            return;
        }
        _ => {}
    }
    // Cut only responses that have a body worth cutting (decided once the head is in).
    let want_short = fault == Some(3) && method != "HEAD";
    let Ok(mut up) = TcpStream::connect(upstream) else {
        reset(client);
        return;
    };
    if up.write_all(close_head(&head).as_bytes()).is_err() || up.write_all(&early_body).is_err() {
        return;
    }
    // Request body: copy client → upstream in the background.
    let (mut c_read, mut u_write) = match (client.try_clone(), up.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
    });
    let Some((resp_head, resp_early)) = read_head(&mut up) else {
        reset(client);
        return;
    };
    let length: Option<u64> = header(&resp_head, "content-length").and_then(|v| v.parse().ok());
    let cut = match length {
        Some(n) if want_short && n >= 2 => Some(n / 2),
        _ => None,
    };
    if client.write_all(close_head(&resp_head).as_bytes()).is_err() {
        return;
    }
    match cut {
        None => {
            let _ = client.write_all(&resp_early);
            let _ = std::io::copy(&mut up, &mut client);
            let _ = client.shutdown(Shutdown::Write);
        }
        Some(limit) => {
            counts.short_bodies.fetch_add(1, Ordering::Relaxed);
            let mut sent = 0u64;
            let first = &resp_early[..resp_early.len().min(limit as usize)];
            let _ = client.write_all(first);
            sent += first.len() as u64;
            let mut buf = [0u8; 65536];
            while sent < limit {
                let n = match up.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let take = (n as u64).min(limit - sent) as usize;
                if client.write_all(&buf[..take]).is_err() {
                    break;
                }
                sent += take as u64;
            }
            let _ = client.flush();
            reset(client);
        }
    }
}

/// Answers a manifest GET with `lie`: a huge body, or the upstream manifest with its
/// layer sizes rewritten (and no Docker-Content-Digest, which would give the lie away).
fn serve_lie(mut client: TcpStream, head: &str, upstream: &str, lie: Hostile, counts: &Counts) {
    if let Hostile::HugeManifest(size) = lie {
        let start = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","pad":""#;
        let _ = client.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n");
        let _ = client.write_all(start);
        let mut sent = start.len() as u64;
        let pad = [b'a'; 65536];
        while sent < size {
            let n = (size - sent).min(pad.len() as u64) as usize;
            if client.write_all(&pad[..n]).is_err() {
                break;
            }
            sent += n as u64;
            counts.hostile_bytes.store(sent, Ordering::Relaxed);
        }
        let _ = client.shutdown(Shutdown::Write);
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream) else {
        reset(client);
        return;
    };
    if up.write_all(close_head(head).as_bytes()).is_err() {
        return;
    }
    let Some((resp_head, mut body)) = read_head(&mut up) else {
        reset(client);
        return;
    };
    if up.read_to_end(&mut body).is_err() {
        reset(client);
        return;
    }
    let mut manifest: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) if resp_head.contains(" 200 ") => v,
        _ => {
            let _ = client.write_all(close_head(&resp_head).as_bytes());
            let _ = client.write_all(&body);
            return;
        }
    };
    if let Some(layers) = manifest["layers"].as_array_mut() {
        for l in layers {
            let real = l["size"].as_u64().unwrap_or(0);
            l["size"] = match lie {
                Hostile::LayersOverstated(extra) => real + extra,
                Hostile::LayerSize(n) => n,
                Hostile::HugeManifest(_) => unreachable!("answered above"),
            }
            .into();
        }
    }
    let body = serde_json::to_vec(&manifest).expect("manifest JSON");
    let content_type = header(&resp_head, "content-type").unwrap_or_default();
    let _ = write!(
        client,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(&body);
    let _ = client.shutdown(Shutdown::Write);
}
