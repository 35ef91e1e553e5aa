//! Choosing one entry of an image index / manifest list for a [`Platform`] (the type is
//! the store's, shared by every crate), the way containerd's default matcher does: os and architecture must be equal;
//! a requested variant must be equal (arm64's missing variant means `v8`); with no
//! variant requested, an entry without a variant is preferred, else the highest variant
//! the host could run is not guessed: the first entry in index order is taken.

use oci_client::manifest::{ImageIndexEntry, OciImageIndex};

use crate::error::{RegistryError, Result};

pub use store::platform::Platform;

fn entry_platform(e: &ImageIndexEntry) -> Option<(String, String, Option<String>)> {
    let p = e.platform.as_ref()?;
    Some((
        p.os.to_string(),
        p.architecture.to_string(),
        p.variant.clone(),
    ))
}

/// Picks the entry of `index` for `want`; the error lists what the index offers.
pub fn choose<'a>(
    index: &'a OciImageIndex,
    want: &Platform,
    reference: &str,
) -> Result<&'a ImageIndexEntry> {
    let candidates: Vec<&ImageIndexEntry> = index
        .manifests
        .iter()
        .filter(|e| {
            entry_platform(e)
                .map(|(os, arch, v)| want.matches(&os, &arch, v.as_deref()))
                .unwrap_or(false)
        })
        .collect();
    let best = candidates
        .iter()
        .find(|e| {
            entry_platform(e)
                .map(|(_, _, v)| v.as_deref().unwrap_or("").is_empty())
                .unwrap_or(false)
        })
        .or(candidates.first());
    best.copied()
        .ok_or_else(|| RegistryError::NoMatchingPlatform {
            reference: reference.to_string(),
            platform: want.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(entry_platform)
                .map(|(os, arch, v)| match v {
                    Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
                    _ => format!("{os}/{arch}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>, &str)]) -> OciImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(os, arch, variant, digest)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", digest.repeat(64)),
                    "size": 1,
                    "platform": p,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .expect("a valid index")
    }

    #[test]
    fn chooses_platform_like_containerd() {
        let idx = index(&[
            ("linux", "amd64", None, "a"),
            ("linux", "arm", Some("v6"), "b"),
            ("linux", "arm", Some("v7"), "c"),
            ("linux", "arm64", Some("v8"), "d"),
            ("windows", "amd64", None, "e"),
        ]);
        let cases = [
            ("linux/amd64", Some("a")),
            ("linux/arm/v7", Some("c")),
            ("linux/arm/v6", Some("b")),
            ("linux/arm", Some("b")),
            ("linux/arm64", Some("d")),
            ("linux/arm64/v8", Some("d")),
            ("linux/aarch64", Some("d")),
            ("windows/amd64", Some("e")),
            ("linux/arm/v5", None),
            ("linux/s390x", None),
        ];
        for (want, expect) in cases {
            let p = Platform::parse(want).expect("valid platform");
            let got = choose(&idx, &p, "x")
                .ok()
                .map(|e| e.digest.chars().nth(7).expect("digest char"));
            assert_eq!(
                got,
                expect.map(|c| c.chars().next().expect("char")),
                "platform {want}"
            );
        }
    }

    #[test]
    fn no_match_lists_what_is_there() {
        let idx = index(&[
            ("linux", "amd64", None, "a"),
            ("linux", "arm", Some("v7"), "c"),
        ]);
        let err = choose(
            &idx,
            &Platform::parse("linux/ppc64le").expect("valid"),
            "busybox",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("linux/amd64, linux/arm/v7"), "{text}");
    }
}
