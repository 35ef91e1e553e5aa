//! Platforms (`os/arch[/variant]`): what an image runs on, what strata builds for and
//! imports as. One type for every crate: the registry client picks index entries with it,
//! the builder sets a build's `TARGET*` ARGs from it, `import --platform` writes it into
//! the config. Names follow Go's (`amd64`, `arm64`), as docker and the OCI spec use them;
//! `x86_64` and `aarch64` are accepted and normalised, and arm64's `v8` variant is dropped
//! as containerd does.

use std::fmt;

/// `os/arch[/variant]` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: want os/arch[/variant], e.g. linux/amd64 or linux/arm/v7")]
pub struct PlatformError {
    pub input: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// The docker/OCI architecture name of this machine.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Platform {
    /// `linux/amd64`, `linux/arm/v7`, `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let bad = || PlatformError {
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

    /// The platform of this machine (docker's default for `pull` and `build`): linux plus
    /// the running architecture in Go's naming, no variant (so it matches any variant).
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: host_architecture().into(),
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

    /// Whether the image whose config (or index entry's `platform`) is `v` runs on this
    /// platform: `matches` of the platform `v` names; false when it names none.
    pub fn matches_json(&self, v: &serde_json::Value) -> bool {
        Platform::from_json(v)
            .is_some_and(|p| self.matches(&p.os, &p.architecture, p.variant.as_deref()))
    }

    /// The variant, or `""` (what `TARGETVARIANT` holds when there is none).
    pub fn variant_or_empty(&self) -> &str {
        self.variant.as_deref().unwrap_or("")
    }

    /// The `platform` object of an index entry (`{"architecture", "os"[, "variant"]}`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut p = serde_json::json!({
            "architecture": self.architecture,
            "os": self.os,
        });
        if let Some(v) = &self.variant {
            p["variant"] = v.clone().into();
        }
        p
    }

    /// The platform an image config (or an index entry's `platform`) names, if it names one.
    pub fn from_json(v: &serde_json::Value) -> Option<Platform> {
        let os = v["os"].as_str()?;
        let arch = v["architecture"].as_str()?;
        Some(
            Platform {
                os: os.to_ascii_lowercase(),
                architecture: normalize_arch(&arch.to_ascii_lowercase()),
                variant: v["variant"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            }
            .normalized(),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("Linux/AMD64", "linux/amd64"),
        ];
        for (input, want) in cases {
            assert_eq!(Platform::parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_platforms() {
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_round_trip() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(Platform::from_json(&p.to_json()), Some(p));
        let cfg = serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert_eq!(
            Platform::from_json(&cfg),
            Platform::parse("linux/arm64").ok()
        );
        assert_eq!(Platform::from_json(&serde_json::json!({})), None);
    }
}
