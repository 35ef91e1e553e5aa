//! The image history: BuildKit's `created_by` text for the config-only instructions, and
//! [`push_history`], which every step ends in. BuildKit writes these with
//! Go's fmt verbs (`CMD %q` of a string list, `VOLUME %v`, `EXPOSE %v` of a port map,
//! `HEALTHCHECK %q` of the config struct), so `docker history` shows Go syntax, not JSON;
//! the functions here print the same (checked against docker 20.10 by the corpus in
//! testdata/buildkit).

use crate::image::{HealthConfig, History};

/// Go's `%q` of a `[]string`: `["echo" "hello"]`.
pub fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[/a /b]`.
pub fn plain_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%v` of a port set (`map[string]struct{}`): keys sorted, `map[443/tcp:{} 80/tcp:{}]`.
pub fn port_map<'a>(ports: impl IntoIterator<Item = &'a String>) -> String {
    let mut keys: Vec<&String> = ports.into_iter().collect();
    keys.sort();
    keys.dedup();
    let items: Vec<String> = keys.iter().map(|k| format!("{k}:{{}}")).collect();
    format!("map[{}]", items.join(" "))
}

/// Go's `%q` of `*HealthConfig` as docker 20.10 prints it:
/// `&{["CMD-SHELL" "true"] "5m0s" "3s" "10s" '\x04'}`. The start interval (a later field)
/// is printed only when set.
pub fn healthcheck(h: &HealthConfig) -> String {
    let mut fields = vec![
        quoted_list(&h.test),
        go_quote(&go_duration(h.interval)),
        go_quote(&go_duration(h.timeout)),
        go_quote(&go_duration(h.start_period)),
    ];
    if h.start_interval != 0 {
        fields.push(go_quote(&go_duration(h.start_interval)));
    }
    fields.push(go_quote_rune(h.retries));
    format!("&{{{}}}", fields.join(" "))
}

/// Go's `strconv.Quote` for the text Dockerfiles hold: JSON's escaping of a string matches
/// it for printable text and the common control characters.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Go's `%q` of an integer: the quoted rune (`'\x04'`, `'A'`).
fn go_quote_rune(n: i64) -> String {
    let escaped = match n {
        7 => "\\a".to_string(),
        8 => "\\b".to_string(),
        9 => "\\t".to_string(),
        10 => "\\n".to_string(),
        11 => "\\v".to_string(),
        12 => "\\f".to_string(),
        13 => "\\r".to_string(),
        39 => "\\'".to_string(),
        92 => "\\\\".to_string(),
        32..=126 => char::from(n as u8).to_string(),
        0..=255 => format!("\\x{n:02x}"),
        _ => match u32::try_from(n).ok().and_then(char::from_u32) {
            Some(c) if !c.is_control() => c.to_string(),
            _ => format!("\\U{n:08x}"),
        },
    };
    format!("'{escaped}'")
}

/// Go's `time.Duration.String()` of nanoseconds: `0s`, `3s`, `1.5s`, `5m0s`, `1h0m0s`,
/// `500ms`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        // Below a second Go picks the largest unit that keeps an integer part.
        let (unit, div) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(n, div));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = (n / 60_000_000_000) % 60;
    let secs = fraction(n % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

/// `n / div` with the decimals Go prints (trailing zeros dropped).
fn fraction(n: u64, div: u64) -> String {
    let whole = n / div;
    let rest = n % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Append a history entry made at `secs` (seconds since the epoch); `empty` for the steps
/// that make no layer.
pub(super) fn push_history(history: &mut Vec<History>, created_by: &str, secs: i64, empty: bool) {
    history.push(History {
        created: Some(rfc3339(secs)),
        created_by: Some(created_by.to_string()),
        comment: Some("buildkit.dockerfile.v0".to_string()),
        empty_layer: empty,
    });
}

/// Seconds since the epoch as the RFC 3339 UTC time the image config holds.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || "1970-01-01T00:00:00Z".to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3_000_000_000), "3s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
    }

    #[test]
    fn lists_and_maps_print_like_go() {
        let v = vec!["/bin/sh".to_string(), "-c".into(), "echo \"hi\"".into()];
        assert_eq!(quoted_list(&v), r#"["/bin/sh" "-c" "echo \"hi\""]"#);
        assert_eq!(plain_list(&v[..2]), "[/bin/sh -c]");
        let ports = ["80/tcp".to_string(), "443/tcp".into(), "53/udp".into()];
        assert_eq!(port_map(&ports), "map[443/tcp:{} 53/udp:{} 80/tcp:{}]");
    }

    #[test]
    fn healthcheck_prints_like_docker_20_10() {
        let h = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 300_000_000_000,
            timeout: 3_000_000_000,
            start_period: 10_000_000_000,
            start_interval: 0,
            retries: 4,
        };
        assert_eq!(
            healthcheck(&h),
            r#"&{["CMD-SHELL" "true"] "5m0s" "3s" "10s" '\x04'}"#
        );
    }
}
