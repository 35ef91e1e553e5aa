//! Go's `time.ParseDuration`: the one parser of durations strata accepts, for the
//! builder's HEALTHCHECK `--interval` and friends and for prune's `until=` filters.

/// Why a duration does not parse; the messages are Go's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
}

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

/// Nanoseconds in `s` (`300ms`, `1m30s`, `1.5h`, `0`, `-2s`), as Go parses it.
pub fn parse_duration(s: &str) -> Result<i64, DurationError> {
    let err = || DurationError::Invalid(s.to_string());
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
            return Err(DurationError::MissingUnit(s.to_string()));
        }
        let (_, scale) =
            UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .ok_or_else(|| DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: s.to_string(),
                })?;
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(err());
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_does() {
        let cases = [
            ("30s", Ok(30_000_000_000)),
            ("1m30s", Ok(90_000_000_000)),
            ("1.5h", Ok(5_400_000_000_000)),
            ("300ms", Ok(300_000_000)),
            ("1us", Ok(1_000)),
            ("0", Ok(0)),
            ("-2s", Ok(-2_000_000_000)),
            ("10", Err(DurationError::MissingUnit("10".into()))),
            ("abc", Err(DurationError::Invalid("abc".into()))),
            ("", Err(DurationError::Invalid("".into()))),
            (
                "5d",
                Err(DurationError::UnknownUnit {
                    unit: "d".into(),
                    input: "5d".into(),
                }),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), want, "input {input:?}");
        }
        assert_eq!(
            parse_duration("5d").unwrap_err().to_string(),
            r#"time: unknown unit "d" in duration "5d""#
        );
    }
}
