//! Go's `time.ParseDuration`, for HEALTHCHECK `--interval` and friends.

const UNITS: [(&str, f64); 8] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("μs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
];

/// Nanoseconds in `s` (`300ms`, `1m30s`, `1.5h`, `0`), or Go's error text.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let err = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return Err(err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {s:?}"));
        }
        let (_, scale) = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(|| format!("time: unknown unit {unit:?} in duration {s:?}"))?;
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(err());
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

/// A HEALTHCHECK interval: unset or 0 is 0; otherwise at least 1ms.
pub(crate) fn interval(name: &str, value: Option<&str>) -> Result<u64, String> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let d = parse_duration(v)?;
    if d == 0 {
        return Ok(0);
    }
    if d < 1_000_000 {
        return Err(format!("Interval {name:?} cannot be less than 1ms"));
    }
    Ok(d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5d").is_err());
        assert_eq!(
            interval("interval", Some("1us")),
            Err("Interval \"interval\" cannot be less than 1ms".into())
        );
        assert_eq!(interval("timeout", None), Ok(0));
    }
}
