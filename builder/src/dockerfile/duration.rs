//! HEALTHCHECK `--interval` and friends: Go durations (`store::duration`) with docker's
//! minimum.

use store::duration::{parse_duration, DurationError};

/// A HEALTHCHECK duration flag docker refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("Interval {0:?} cannot be less than 1ms")]
    BelowOneMs(String),
}

/// A HEALTHCHECK interval: unset or 0 is 0; otherwise at least 1ms.
pub(crate) fn interval(name: &str, value: Option<&str>) -> Result<u64, IntervalError> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let d = parse_duration(v)?;
    if d == 0 {
        return Ok(0);
    }
    if d < 1_000_000 {
        return Err(IntervalError::BelowOneMs(name.to_string()));
    }
    Ok(d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(interval("interval", Some("30s")), Ok(30_000_000_000));
        let err = |v| interval("interval", Some(v)).map_err(|e| e.to_string());
        assert_eq!(
            err("5d"),
            Err(r#"time: unknown unit "d" in duration "5d""#.into())
        );
        assert_eq!(
            err("1us"),
            Err("Interval \"interval\" cannot be less than 1ms".into())
        );
        assert_eq!(interval("timeout", None), Ok(0));
    }
}
