//! HEALTHCHECK `--interval` and friends: Go durations (`store::duration`) with docker's
//! minimum.

use store::duration::parse_duration;

/// A HEALTHCHECK interval: unset or 0 is 0; otherwise at least 1ms.
pub(crate) fn interval(name: &str, value: Option<&str>) -> Result<u64, String> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let d = parse_duration(v).map_err(|e| e.to_string())?;
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
    fn intervals() {
        assert_eq!(interval("interval", Some("30s")), Ok(30_000_000_000));
        assert_eq!(
            interval("interval", Some("5d")),
            Err(r#"time: unknown unit "d" in duration "5d""#.into())
        );
        assert_eq!(
            interval("interval", Some("1us")),
            Err("Interval \"interval\" cannot be less than 1ms".into())
        );
        assert_eq!(interval("timeout", None), Ok(0));
    }
}
