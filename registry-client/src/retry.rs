//! When and how long to wait before trying a request again.
//!
//! Retried: connection failures and resets, bodies cut short, 5xx answers and 429. A 429
//! or 503 with `Retry-After: N` (seconds) waits N seconds (capped); everything else
//! waits an exponential, jittered backoff. Not retried: 4xx other than 429 (the request
//! itself is wrong), TLS certificate failures (retrying cannot fix trust).
//!
//! A registry that cannot be reached at all (its name does not resolve, nothing listens
//! on its port: [`unreachable_cause`]) gets [`UNREACHABLE_ATTEMPTS`] quick tries, then the
//! error docker prints; faults the registry answers keep the full policy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each later one.
    pub base_delay: Duration,
    /// Upper bound of one backoff wait.
    pub max_delay: Duration,
    /// Upper bound of a wait the server asked for with `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1), honouring a
    /// `Retry-After` the server sent.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        // Full jitter in [capped/2, capped]: spreads parallel transfers that failed together.
        let half = capped / 2;
        half + Duration::from_nanos(jitter_nanos(half.as_nanos() as u64))
    }
}

/// Whether an answer with this status is worth another try.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` as seconds (HTTP-dates are rare from registries and treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether a transport error is transient. TLS trust failures are not: the same
/// certificate will be presented again.
pub fn is_retryable_error(err: &reqwest::Error) -> bool {
    if err.is_builder() || err.is_redirect() || is_tls_error(err) {
        return false;
    }
    true
}

/// Attempts a request gets while the registry cannot be reached: a lookup or connect that
/// fails is retried briefly (a resolver hiccup, a registry restarting), not with the full
/// policy, so a name that exists nowhere (`COPY --from=typo`) or a closed port fails in
/// well under a second, as with docker.
pub const UNREACHABLE_ATTEMPTS: u32 = 3;

/// Why a registry cannot be reached at all, worded as Go's dialer words it (what docker
/// prints after `dial tcp …:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The host name does not resolve (hyper's `dns error`).
    NoSuchHost,
    /// Nothing listens on the port.
    ConnectionRefused,
}

impl Unreachable {
    /// docker's `dial tcp …` text for `host` (`host:port` as in the URL).
    pub fn dial_text(self, host: &str) -> String {
        match self {
            Unreachable::NoSuchHost => {
                let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
                format!("dial tcp: lookup {name}: no such host")
            }
            Unreachable::ConnectionRefused => {
                format!("dial tcp {host}: connect: connection refused")
            }
        }
    }
}

/// The [`Unreachable`] cause somewhere in the error's source chain, if any.
pub fn unreachable_cause(err: &(dyn std::error::Error + 'static)) -> Option<Unreachable> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Some(Unreachable::ConnectionRefused);
            }
        }
        let text = e.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return Some(Unreachable::NoSuchHost);
        }
        if text.contains("Connection refused") {
            return Some(Unreachable::ConnectionRefused);
        }
        cur = e.source();
    }
    None
}

/// Go's name of an HTTP method in its errors (`Get "URL": …`).
pub fn go_method(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A certificate verification failure somewhere in the error's source chain.
pub fn is_tls_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if text.contains("invalid peer certificate") || text.contains("certificate verify") {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The innermost message of an error chain, for "last error" texts.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let t = e.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn jitter_nanos(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    // Not cryptographic; only spreads retries apart. xorshift over the clock and a counter.
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ t;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_honours_retry_after_and_caps_it() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(600))),
            p.max_retry_after
        );
    }

    #[test]
    fn delay_grows_and_is_bounded() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            let d = p.delay(attempt, None);
            assert!(d <= p.max_delay, "attempt {attempt}: {d:?}");
            let floor =
                (p.base_delay.saturating_mul(1 << (attempt - 1).min(16))).min(p.max_delay) / 2;
            assert!(d >= floor, "attempt {attempt}: {d:?} < {floor:?}");
        }
    }

    #[test]
    fn retryable_statuses() {
        let cases = [
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (404, false),
            (400, false),
            (401, false),
            (200, false),
        ];
        for (code, want) in cases {
            let s = StatusCode::from_u16(code).expect("valid status");
            assert_eq!(is_retryable_status(s), want, "status {code}");
        }
    }

    #[test]
    fn parses_retry_after_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
