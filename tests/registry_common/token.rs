//! A token server like Docker Hub's auth service: `GET /token?service=&scope=…` with
//! optional Basic credentials answers `{"token": JWT}`. The JWT is RS256-signed by a key
//! whose certificate is the registry's `rootcertbundle`, found by `kid` (libtrust's key
//! id), so docker-registry's own `auth: token` verification accepts it. Anonymous
//! callers get pull access only; known users get what they ask for.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use sha2::{Digest as _, Sha256};

pub const SERVICE: &str = "strata-test-registry";
pub const ISSUER: &str = "strata-test-issuer";

pub struct TokenServer {
    addr: String,
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    /// Token requests answered (any status).
    pub requests: Arc<AtomicUsize>,
    /// Tokens issued with credentials.
    pub authenticated: Arc<AtomicUsize>,
}

struct State {
    users: HashMap<String, String>,
    key: jsonwebtoken::EncodingKey,
    kid: String,
    requests: Arc<AtomicUsize>,
    authenticated: Arc<AtomicUsize>,
    /// Lifetime of issued tokens, seconds.
    ttl: u64,
}

impl TokenServer {
    pub fn start(users: &[(&str, &str)]) -> TokenServer {
        Self::start_with_ttl(users, 300)
    }

    pub fn start_with_ttl(users: &[(&str, &str)], ttl: u64) -> TokenServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.pem");
        super::self_signed(&key, &cert, "/CN=token signer", &[]);
        let der = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .expect("openssl pkey");
        assert!(der.status.success(), "openssl pkey failed");
        let pem = std::fs::read(&key).expect("reading token key");
        let state = Arc::new(State {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            key: jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("RSA key"),
            kid: libtrust_key_id(&der.stdout),
            requests: Arc::new(AtomicUsize::new(0)),
            authenticated: Arc::new(AtomicUsize::new(0)),
            ttl,
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, state2) = (stop.clone(), state.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let st = state2.clone();
                        std::thread::spawn(move || serve(s, &st));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        TokenServer {
            addr,
            dir,
            stop,
            requests: state.requests.clone(),
            authenticated: state.authenticated.clone(),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("token.pem")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// libtrust's KeyID: sha256 of the DER public key, first 240 bits, base32, in
/// colon-separated groups of four.
fn libtrust_key_id(der: &[u8]) -> String {
    let sum = Sha256::digest(der);
    let b32 = base32(&sum[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":")
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in data {
        buffer = (buffer << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(mut s: TcpStream, status: &str, body: &str, extra: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

fn serve(stream: TcpStream, st: &State) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authz = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                authz = Some(v.trim().to_string());
            }
        }
    }
    st.requests.fetch_add(1, Ordering::Relaxed);
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "scope" => scopes.push(percent_decode(v)),
            "service" => service = percent_decode(v),
            _ => {}
        }
    }
    let user = match authz.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
        Some(b64) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded).into_owned();
            let (u, p) = text.split_once(':').unwrap_or((&text, ""));
            if st.users.get(u).map(|want| want == p) != Some(true) {
                return respond(
                    stream,
                    "401 Unauthorized",
                    r#"{"details":"incorrect username or password"}"#,
                    "",
                );
            }
            Some(u.to_string())
        }
        None => None,
    };
    if user.is_some() {
        st.authenticated.fetch_add(1, Ordering::Relaxed);
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let (typ, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| user.is_some() || *a == "pull")
                .collect();
            Some(serde_json::json!({"type": typ, "name": name, "actions": granted}))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": if service.is_empty() { SERVICE.to_string() } else { service },
        "exp": now + st.ttl,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", st.requests.load(Ordering::Relaxed)),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(st.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &st.key).expect("signing the token");
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": st.ttl})
        .to_string();
    respond(stream, "200 OK", &body, "");
}

#[cfg(test)]
mod tests {
    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(super::base32(b"foobar"), "MZXW6YTBOI");
    }
}
