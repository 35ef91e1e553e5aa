//! Platforms (`os/arch[/variant]`) and choosing one entry of an image index / manifest
//! list, the way containerd's default matcher does: os and architecture must be equal;
//! a requested variant must be equal (arm64's missing variant means `v8`); with no
//! variant requested, an entry without a variant is preferred, else the highest variant
//! the host could run is not guessed: the first entry in index order is taken.

use std::fmt;

use oci_client::manifest::{ImageIndexEntry, OciImageIndex};

use crate::error::{RegistryError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, `linux/arm/v7`, `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform> {
        let bad = || RegistryError::InvalidPlatform {
            input: s.to_string(),
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(v.to_string())),
            _ => return Err(bad()),
        };
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture: normalize_arch(&arch.to_ascii_lowercase()),
            variant,
        }
        .normalized())
    }

    /// The platform of this machine (docker's default for `pull`): linux plus the
    /// running architecture in Go's naming.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    fn normalized(mut self) -> Platform {
        if self.architecture == "arm64" && self.variant.as_deref() == Some("v8") {
            self.variant = None;
        }
        self
    }

    /// Whether an image of `os`/`arch`/`variant` runs on this platform (a platform without
    /// a variant takes any variant).
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        let other = Platform {
            os: os.to_ascii_lowercase(),
            architecture: normalize_arch(&arch.to_ascii_lowercase()),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
        .normalized();
        if other.os != self.os || other.architecture != self.architecture {
            return false;
        }
        match &self.variant {
            Some(v) => other.variant.as_deref() == Some(v.as_str()),
            None => true,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(a: &str) -> String {
    match a {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "armhf" => "arm".into(),
        "i386" => "386".into(),
        other => other.into(),
    }
}

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
    fn rejects_bad_platforms() {
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
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
