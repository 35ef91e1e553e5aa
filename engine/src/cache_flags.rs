//! `build --cache-from` / `--cache-to` as buildx spells them.
//!
//! `--cache-from REF` is short for `--cache-from type=registry,ref=REF`. strata shares
//! build cache through a registry only: a cache manifest (`type=registry`) or the records
//! an image carries in its config (`type=inline`).

use builder::remote_cache::ExportMode;
use store::Reference;

use crate::error::{EngineError, Result};

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTo {
    /// Where the cache manifest goes; `None` for `type=inline` (the records go into the
    /// image's own config, pushed with the image).
    pub reference: Option<Reference>,
    pub mode: ExportMode,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
}

fn usage(message: String) -> EngineError {
    EngineError::Usage(message)
}

/// The `key=value,…` attributes of a cache flag; a bare value is `type=registry,ref=VALUE`.
fn attributes(flag: &str, raw: &str) -> Result<Vec<(String, String)>> {
    if !raw.contains('=') {
        return Ok(vec![
            ("type".into(), "registry".into()),
            ("ref".into(), raw.to_string()),
        ]);
    }
    raw.split(',')
        .map(|field| match field.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            }
            _ => Err(usage(format!(
                "invalid {flag} {raw:?}: want type=registry,ref=REF[,…]"
            ))),
        })
        .collect()
}

/// Checks `type=` and returns `ref=` as a reference.
fn registry_ref(flag: &str, raw: &str, attrs: &[(String, String)]) -> Result<Reference> {
    let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    match get("type").unwrap_or("registry") {
        "registry" => {}
        other => {
            return Err(usage(format!(
                "{flag} type={other} is not supported: strata shares build cache through a \
                 registry (type=registry,ref=REF, or type=inline in the pushed image)"
            )))
        }
    }
    let r = get("ref")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| usage(format!("invalid {flag} {raw:?}: ref=REF is required")))?;
    Reference::parse(r).map_err(|e| usage(format!("invalid {flag} reference {r:?}: {e}")))
}

/// One `--cache-from`: the reference of a cache manifest or of an image with an inline cache.
pub fn parse_cache_from(raw: &str) -> Result<Reference> {
    let attrs = attributes("--cache-from", raw)?;
    registry_ref("--cache-from", raw, &attrs)
}

/// One `--cache-to`.
pub fn parse_cache_to(raw: &str) -> Result<CacheTo> {
    let attrs = attributes("--cache-to", raw)?;
    if attrs.iter().any(|(k, v)| k == "type" && v == "inline") {
        // BuildKit's inline cache: min mode only, nothing to configure.
        if let Some((k, v)) = attrs
            .iter()
            .find(|(k, v)| !(k == "type" || (k == "mode" && v == "min")))
        {
            return Err(usage(format!(
                "--cache-to type=inline takes no {k}={v} (it exports mode=min into the image)"
            )));
        }
        return Ok(CacheTo {
            reference: None,
            mode: ExportMode::Min,
            ignore_error: false,
        });
    }
    let reference = Some(registry_ref("--cache-to", raw, &attrs)?);
    let mut to = CacheTo {
        reference,
        mode: ExportMode::Min,
        ignore_error: false,
    };
    for (k, v) in &attrs {
        match (k.as_str(), v.as_str()) {
            ("type" | "ref", _) => {}
            ("mode", "min") => to.mode = ExportMode::Min,
            ("mode", "max") => to.mode = ExportMode::Max,
            ("ignore-error", v) => {
                to.ignore_error = v.parse().map_err(|_| {
                    usage(format!(
                        "invalid --cache-to ignore-error={v:?}: want true|false"
                    ))
                })?
            }
            // What buildx accepts and strata already does: an OCI image manifest, gzip.
            ("oci-mediatypes" | "image-manifest", "true") | ("compression", "gzip") => {}
            _ => {
                return Err(usage(format!(
                    "--cache-to {k}={v} is not supported (supported: type=registry, ref=, \
                     mode=min|max, ignore-error=, oci-mediatypes=true, image-manifest=true, \
                     compression=gzip)"
                )))
            }
        }
    }
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_flags_parse_like_buildx() {
        let bare = parse_cache_from("localhost:5000/app:cache").unwrap();
        assert_eq!(bare.to_string(), "localhost:5000/app:cache");
        let full = parse_cache_from("type=registry,ref=localhost:5000/app:cache").unwrap();
        assert_eq!(full, bare);
        let to = parse_cache_to("type=registry,ref=localhost:5000/app:cache,mode=max").unwrap();
        assert_eq!(to.mode, ExportMode::Max);
        assert!(!to.ignore_error);
        let to = parse_cache_to("type=registry,ref=r/a:c,ignore-error=true").unwrap();
        assert_eq!((to.mode, to.ignore_error), (ExportMode::Min, true));
        let inline = parse_cache_to("type=inline").unwrap();
        assert_eq!((inline.reference, inline.mode), (None, ExportMode::Min));
        for bad in [
            "type=local,dest=/tmp/x",
            "type=inline,mode=max",
            "type=registry",
            "type=registry,ref=repo/UPPER",
            "type=registry,ref=a,mode=all",
            "type=registry,ref=a,,",
        ] {
            let err = parse_cache_to(bad).unwrap_err();
            assert!(err.is_usage(), "{bad}: {err}");
        }
    }
}
