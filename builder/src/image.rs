//! The image being built: its runtime config (docker's config JSON, which is OCI's plus the
//! docker extensions Healthcheck, Shell and OnBuild), its layers and its history.
//!
//! We keep our own serde structs instead of `oci-spec`'s `ImageConfiguration` because the
//! docker extensions matter to users (`HEALTHCHECK`, `SHELL`, `ONBUILD` survive a save/load
//! into docker) and oci-spec drops unknown fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The image config blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default = "default_arch")]
    pub architecture: String,
    #[serde(default = "default_os")]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RuntimeConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<History>,
}

/// What a runtime needs to start a container from the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
}

/// `{}` in JSON: the value type of docker's port and volume sets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Empty {}

/// docker's HEALTHCHECK config; durations in nanoseconds as docker writes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

fn default_arch() -> String {
    host_architecture().to_string()
}

fn default_os() -> String {
    "linux".to_string()
}

/// The OCI/Go name of the host's architecture (one definition, in the store).
pub use store::platform::{host_architecture, Platform};

/// The platform of this machine as a build names it (`BUILDPLATFORM`, and the target when
/// no `--platform` is given): 32-bit arm is `v7`.
pub fn build_platform() -> Platform {
    let mut p = Platform::host();
    if p.architecture == "arm" {
        p.variant = Some("v7".to_string());
    }
    p
}

/// BuildKit's automatic platform ARGs for a build on this machine for `target`:
/// `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT` (this host) and the same four
/// `TARGET…` (`target`). The host's variant is empty except on 32-bit arm (containerd
/// normalises arm64's `v8` away).
pub fn platform_args(target: &Platform) -> Vec<(String, String)> {
    let build = build_platform();
    let mut args = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", &build)] {
        args.push((format!("{prefix}PLATFORM"), p.to_string()));
        args.push((format!("{prefix}OS"), p.os.clone()));
        args.push((format!("{prefix}ARCH"), p.architecture.clone()));
        args.push((format!("{prefix}VARIANT"), p.variant_or_empty().to_string()));
    }
    args
}

impl RuntimeConfig {
    /// The value of `name` in the config's environment, if set.
    pub fn env_get(&self, name: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k == name).then_some(v)
        })
    }

    /// Set `name=value`, replacing an earlier value in place (docker keeps the order).
    pub fn env_set(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        match self
            .env
            .iter_mut()
            .find(|kv| kv.split('=').next() == Some(name))
        {
            Some(slot) => *slot = entry,
            None => self.env.push(entry),
        }
    }

    /// The shell for shell-form RUN/CMD/ENTRYPOINT: SHELL, else `/bin/sh -c`.
    pub fn shell_or_default(&self) -> Vec<String> {
        self.shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }
}

/// The default PATH docker sets in a scratch image's environment for RUN.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_set_replaces_in_place() {
        let mut c = RuntimeConfig {
            env: vec!["A=1".into(), "B=2".into()],
            ..Default::default()
        };
        c.env_set("A", "3");
        c.env_set("C", "4");
        assert_eq!(c.env, vec!["A=3", "B=2", "C=4"]);
        assert_eq!(c.env_get("B"), Some("2"));
        assert_eq!(c.env_get("Z"), None);
    }

    #[test]
    fn config_round_trips_docker_json() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],
            "ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000}},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"x","empty_layer":true}]}"#;
        let parsed: ImageConfigFile = serde_json::from_str(json).expect("valid json");
        assert_eq!(parsed.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            parsed.config.healthcheck.as_ref().map(|h| h.interval),
            Some(30_000_000_000)
        );
        let again: ImageConfigFile =
            serde_json::from_str(&serde_json::to_string(&parsed).expect("serializes"))
                .expect("round trip");
        assert_eq!(parsed, again);
    }
}
