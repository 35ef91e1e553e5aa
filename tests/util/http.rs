//! A tiny HTTP server for tests that download (ADD of a URL, tarball build contexts).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// A one-thread HTTP/1.0 server on 127.0.0.1 serving `files` (path → body) with an ETag;
/// returns its port and a counter of GETs answered with a body.
pub fn serve(files: Vec<(String, Vec<u8>)>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_string();
            let target = text.split(' ').nth(1).unwrap_or("/");
            let path = target.split('?').next().unwrap_or(target).to_string();
            let reply = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(body)[..8]));
                    if text
                        .to_ascii_lowercase()
                        .contains(&format!("if-none-match: {etag}"))
                    {
                        format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n").into_bytes()
                    } else {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nLast-Modified: Tue, 03 Nov 2026 10:00:00 GMT\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = s.write_all(&reply);
        }
    });
    (port, hits)
}
