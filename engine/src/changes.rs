//! `strata import --change`: the Dockerfile instructions `docker import -c` accepts, as
//! typed changes to the new image's `config` object.
//!
//! Supported, as docker: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR,
//! STOPSIGNAL. A later change of the same field replaces the earlier one (ENV and LABEL
//! per key).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{EngineError, Result};

/// One `--change` instruction, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    /// `port/proto`, `tcp` when none was given.
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    StopSignal(String),
}

/// The image config fields `--change` can set, in the image config's spelling; unset
/// fields are left out of the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConfigChanges {
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, in the order first set.
    #[serde(rename = "Env", skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Labels", skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "ExposedPorts", skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    #[serde(rename = "Volumes", skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(rename = "StopSignal", skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// The `{}` value of the config's port and volume sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

impl Change {
    /// Parses one `--change` value (`INSTRUCTION ARGS`); an unknown or empty instruction
    /// is a usage error.
    pub fn parse(change: &str) -> Result<Change> {
        let change = change.trim();
        let (instruction, rest) = change
            .split_once(char::is_whitespace)
            .map_or((change, ""), |(a, b)| (a, b.trim()));
        Ok(match instruction.to_ascii_uppercase().as_str() {
            "CMD" => Change::Cmd(command_words(rest)),
            "ENTRYPOINT" => Change::Entrypoint(command_words(rest)),
            "ENV" => Change::Env(pairs(rest)),
            "LABEL" => Change::Label(pairs(rest)),
            "EXPOSE" => Change::Expose(
                rest.split_whitespace()
                    .map(|p| {
                        if p.contains('/') {
                            p.to_string()
                        } else {
                            format!("{p}/tcp")
                        }
                    })
                    .collect(),
            ),
            "VOLUME" => Change::Volume(
                serde_json::from_str::<Vec<String>>(rest)
                    .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect()),
            ),
            "USER" => Change::User(rest.to_string()),
            "WORKDIR" => Change::Workdir(rest.to_string()),
            "STOPSIGNAL" => Change::StopSignal(rest.to_string()),
            "" => return Err(EngineError::Usage("empty --change".to_string())),
            other => {
                return Err(EngineError::Usage(format!(
                    "{other} is not a valid change command (CMD, ENTRYPOINT, ENV, EXPOSE, \
                     LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)"
                )))
            }
        })
    }
}

/// A JSON array as given, else the shell form `/bin/sh -c TEXT`.
fn command_words(s: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(s)
        .unwrap_or_else(|_| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()])
}

/// `KEY=VALUE …` (quotes around a value dropped), or the legacy `KEY VALUE`.
fn pairs(s: &str) -> Vec<(String, String)> {
    if !s.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        return vec![(k.to_string(), v.trim().to_string())];
    }
    s.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

impl ConfigChanges {
    /// Parses and applies every `--change`, in order.
    pub fn parse<S: AsRef<str>>(changes: &[S]) -> Result<ConfigChanges> {
        let mut config = ConfigChanges::default();
        for change in changes {
            config.apply(Change::parse(change.as_ref())?);
        }
        Ok(config)
    }

    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Cmd(words) => self.cmd = Some(words),
            Change::Entrypoint(words) => self.entrypoint = Some(words),
            Change::Env(pairs) => {
                let env = self.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs {
                    let prefix = format!("{k}=");
                    env.retain(|e| !e.starts_with(&prefix));
                    env.push(format!("{k}={v}"));
                }
            }
            Change::Label(pairs) => self.labels.get_or_insert_with(BTreeMap::new).extend(pairs),
            Change::Expose(ports) => {
                let set = self.exposed_ports.get_or_insert_with(BTreeMap::new);
                set.extend(ports.into_iter().map(|p| (p, Empty {})));
            }
            Change::Volume(volumes) => {
                let set = self.volumes.get_or_insert_with(BTreeMap::new);
                set.extend(volumes.into_iter().map(|v| (v, Empty {})));
            }
            Change::User(user) => self.user = Some(user),
            Change::Workdir(dir) => self.working_dir = Some(dir),
            Change::StopSignal(signal) => self.stop_signal = Some(signal),
        }
    }

    /// The changes as the `config` object of an image config.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self).expect("config changes serialize") {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a struct serializes to an object"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_set_config_fields_like_docker_import() {
        let cases: [(&[&str], serde_json::Value); 7] = [
            (&[], serde_json::json!({})),
            (
                &["CMD echo hi"],
                serde_json::json!({"Cmd": ["/bin/sh", "-c", "echo hi"]}),
            ),
            (
                &[r#"ENTRYPOINT ["/app", "-v"]"#],
                serde_json::json!({"Entrypoint": ["/app", "-v"]}),
            ),
            (
                &["ENV A=1 B=\"two\"", "ENV A=3", "env C 4 5"],
                serde_json::json!({"Env": ["B=two", "A=3", "C=4 5"]}),
            ),
            (
                &["EXPOSE 80 53/udp", "VOLUME [\"/data\"]", "VOLUME /a /b"],
                serde_json::json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                    "Volumes": {"/data": {}, "/a": {}, "/b": {}}}),
            ),
            (
                &[
                    "LABEL a=1 b=2",
                    "LABEL a=3",
                    "USER nobody",
                    "WORKDIR /w",
                    "STOPSIGNAL SIGINT",
                ],
                serde_json::json!({"Labels": {"a": "3", "b": "2"}, "User": "nobody",
                    "WorkingDir": "/w", "StopSignal": "SIGINT"}),
            ),
            (&["  cmd   [\"x\"]  "], serde_json::json!({"Cmd": ["x"]})),
        ];
        for (changes, want) in cases {
            let got = ConfigChanges::parse(changes).unwrap().to_json();
            assert_eq!(serde_json::Value::Object(got), want, "changes {changes:?}");
        }
    }

    #[test]
    fn unknown_or_empty_change_is_a_usage_error() {
        for bad in ["", "   ", "RUN echo", "FROM x"] {
            let err = ConfigChanges::parse(&[bad]).unwrap_err();
            assert!(err.is_usage(), "{bad:?}: {err}");
        }
    }
}
