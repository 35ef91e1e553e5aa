//! The build checks' warnings as BuildKit reports them to buildx: `client.VertexWarning`
//! objects, in a `SolveStatus` for `--progress rawjson` and, when `BUILDX_METADATA_WARNINGS`
//! is true, under `buildx.build.warnings` in the `--metadata-file` JSON.
//!
//! One warning, as Go's `encoding/json` writes the struct (`[]byte` fields base64):
//!
//! ```text
//! {"vertex": DIGEST, "level": 1,
//!  "short": b64("Rule: message (line N)"), "detail": [b64(rule description)], "url": RULE_URL,
//!  "sourceInfo": {"filename": "Dockerfile", "data": b64(Dockerfile), "language": "Dockerfile"},
//!  "range": [{"start": {"line": N}, "end": {"line": M}}]}
//! ```
//!
//! BuildKit's `sourceInfo` also carries the LLB definition of the Dockerfile's source; strata
//! has no LLB, so that field is left out (Go's `omitempty` leaves it out when nil too).

use base64::Engine;
use builder::dockerfile::CheckReport;

/// Every warning of `report`, on the vertex `vertex` (the digest of the `[internal] load
/// build definition` step), with `dockerfile` (the file's bytes) as their source.
pub fn vertex_warnings(
    report: &CheckReport,
    dockerfile: &[u8],
    vertex: &str,
) -> Vec<serde_json::Value> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    report
        .warnings
        .iter()
        .map(|w| {
            let short = format!("{}: {} (line {})", w.rule, w.message, w.span.start);
            serde_json::json!({
                "vertex": vertex,
                "level": 1,
                "short": b64(short.as_bytes()),
                "detail": [b64(w.description.as_bytes())],
                "url": w.url,
                "sourceInfo": {
                    "filename": report.file_name,
                    "data": b64(dockerfile),
                    "language": "Dockerfile",
                },
                "range": [{"start": {"line": w.span.start}, "end": {"line": w.span.end}}],
            })
        })
        .collect()
}

/// `buildx.build.warnings`: the warnings once each (buildx drops a warning equal to an
/// earlier one but for its vertex, as a multi-platform build reports each per platform),
/// or `None` when there are none, as buildx then leaves the key out. The order is the
/// Dockerfile's; buildx's own is a Go map's, so unspecified.
pub fn metadata_warnings(warnings: &[serde_json::Value]) -> Option<serde_json::Value> {
    let without_vertex = |w: &serde_json::Value| {
        let mut w = w.clone();
        if let Some(fields) = w.as_object_mut() {
            fields.remove("vertex");
        }
        w
    };
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for w in warnings {
        let key = without_vertex(w);
        if !seen.contains(&key) {
            seen.push(key);
            out.push(w.clone());
        }
    }
    (!out.is_empty()).then_some(serde_json::Value::Array(out))
}

/// Whether `BUILDX_METADATA_WARNINGS` (its value, if set) asks for the warnings in the
/// metadata file: Go's `strconv.ParseBool` true (`1`, `t`, `T`, `true`, `TRUE`, `True`);
/// anything else, unset or unparsable, is false, as in buildx's `MetadataWarningsEnabled`.
pub fn metadata_warnings_enabled(setting: Option<&str>) -> bool {
    matches!(setting, Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_warnings_enabled_parses_like_go_parse_bool() {
        for on in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(metadata_warnings_enabled(Some(on)), "{on}");
        }
        for off in ["", "0", "false", "yes", "on", " 1", "tRUE"] {
            assert!(!metadata_warnings_enabled(Some(off)), "{off}");
        }
        assert!(!metadata_warnings_enabled(None));
    }

    #[test]
    fn metadata_warnings_drop_repeats_and_are_absent_when_empty() {
        let a = serde_json::json!({"vertex": "sha256:1", "short": "YQ=="});
        let a_again = serde_json::json!({"vertex": "sha256:2", "short": "YQ=="});
        let b = serde_json::json!({"vertex": "sha256:1", "short": "Yg=="});
        assert_eq!(
            metadata_warnings(&[a.clone(), a_again, b.clone()]),
            Some(serde_json::json!([a, b]))
        );
        assert_eq!(metadata_warnings(&[]), None);
    }
}
