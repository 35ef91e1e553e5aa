//! The instructions that only change the image config: ENV, ARG, LABEL, EXPOSE, VOLUME,
//! USER, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER.
//!
//! Each handler applies its instruction to the stage and returns the history text BuildKit
//! writes for it (`crate::solve::history_text`); the dispatcher moves the cache key with that
//! text and records an empty-layer history entry. An `Err` is the cause of a step error.
//! Words are expanded with the variables from before the instruction: `ENV A=1 B=$A` sees
//! the old `A`, as in docker.

use std::collections::BTreeMap;

use super::argv;
use crate::dockerfile::{expand_word, expand_words, ArgDef, Healthcheck, KeyValue, ShellOrExec};
use crate::image::{Empty, HealthConfig};
use crate::solve::history_text;
use crate::solve::state::StageState;
use crate::solve::StepError;

type Text = Result<String, StepError>;

fn word(env: &[(String, String)], escape: char, w: &str) -> Text {
    Ok(expand_word(w, env, escape)?)
}

pub(super) fn env(state: &mut StageState, pairs: &[KeyValue]) -> Text {
    let env = state.expand_env();
    let mut text = Vec::new();
    for kv in pairs {
        let value = word(&env, state.escape, &kv.value)?;
        state.config.config.env_set(&kv.key, &value);
        text.push(format!("{}={}", kv.key, value));
    }
    Ok(format!("ENV {}", text.join(" ")))
}

/// ARG's value: `--build-arg`, else the default, else a meta ARG (before the first FROM) of
/// the same name. The history shows the declaration (`ARG A=default`), not the value used.
pub(super) fn arg(
    state: &mut StageState,
    defs: &[ArgDef],
    build_args: &BTreeMap<String, String>,
    meta_args: &[(String, String)],
) -> Text {
    let env = state.expand_env();
    let mut text = Vec::new();
    for def in defs {
        let default = match &def.default {
            Some(d) => Some(word(&env, state.escape, d)?),
            None => None,
        };
        text.push(match &default {
            Some(d) => format!("{}={d}", def.name),
            None => def.name.clone(),
        });
        let value = match (build_args.get(&def.name), default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => Some(d),
            (None, None) => meta_args
                .iter()
                .rev()
                .find(|(k, _)| *k == def.name)
                .map(|(_, v)| v.clone()),
        };
        state.args.retain(|(k, _)| *k != def.name);
        state.declared_args.push((def.name.clone(), value.clone()));
        if let Some(v) = value {
            state.args.push((def.name.clone(), v));
        }
    }
    Ok(format!("ARG {}", text.join(" ")))
}

pub(super) fn label(state: &mut StageState, pairs: &[KeyValue]) -> Text {
    let env = state.expand_env();
    let mut text = Vec::new();
    for kv in pairs {
        let key = word(&env, state.escape, &kv.key)?;
        let value = word(&env, state.escape, &kv.value)?;
        text.push(format!("{key}={value}"));
        state.config.config.labels.insert(key, value);
    }
    Ok(format!("LABEL {}", text.join(" ")))
}

pub(super) fn expose(state: &mut StageState, ports: &[String]) -> Text {
    let env = state.expand_env();
    let mut added = Vec::new();
    for p in ports {
        for spec in expand_words(p, &env, state.escape)? {
            added.extend(port_specs(&spec)?);
        }
    }
    for port in &added {
        let exposed = &mut state.config.config.exposed_ports;
        exposed.insert(port.clone(), Empty {});
    }
    Ok(format!("EXPOSE {}", history_text::port_map(&added)))
}

/// EXPOSE's port specs as docker parses them: `80` is `80/tcp`, `8000-8002/udp` is three
/// ports.
fn port_specs(spec: &str) -> Result<Vec<String>, StepError> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let bad = || StepError::PortSpec(spec.to_string());
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

pub(super) fn volume(state: &mut StageState, vols: &[String]) -> Text {
    let env = state.expand_env();
    let mut expanded = Vec::new();
    for v in vols {
        let v = word(&env, state.escape, v)?;
        state.config.config.volumes.insert(v.clone(), Empty {});
        expanded.push(v);
    }
    Ok(format!("VOLUME {}", history_text::plain_list(&expanded)))
}

pub(super) fn user(state: &mut StageState, user: &str) -> Text {
    let user = word(&state.expand_env(), state.escape, user)?;
    let text = format!("USER {user}");
    state.config.config.user = user;
    Ok(text)
}

pub(super) fn cmd(state: &mut StageState, cmd: &ShellOrExec) -> Text {
    let cmd = argv(state, cmd);
    let text = format!("CMD {}", history_text::quoted_list(&cmd));
    state.config.config.cmd = Some(cmd);
    state.cmd_set_here = true;
    Ok(text)
}

/// ENTRYPOINT resets a CMD inherited from the base, not one this stage set (as docker does).
pub(super) fn entrypoint(state: &mut StageState, ep: &ShellOrExec) -> Text {
    let ep = argv(state, ep);
    let text = format!("ENTRYPOINT {}", history_text::quoted_list(&ep));
    state.config.config.entrypoint = Some(ep);
    if !state.cmd_set_here {
        state.config.config.cmd = None;
    }
    Ok(text)
}

pub(super) fn shell(state: &mut StageState, shell: &[String]) -> Text {
    state.config.config.shell = Some(shell.to_vec());
    Ok(format!("SHELL {}", history_text::plain_list(shell)))
}

pub(super) fn stop_signal(state: &mut StageState, sig: &str) -> Text {
    let sig = word(&state.expand_env(), state.escape, sig)?;
    let text = format!("STOPSIGNAL {sig}");
    state.config.config.stop_signal = Some(sig);
    Ok(text)
}

pub(super) fn healthcheck(state: &mut StageState, h: &Healthcheck) -> Text {
    let health = match h {
        Healthcheck::None => HealthConfig {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        Healthcheck::Cmd { test, options } => HealthConfig {
            test: test.clone(),
            interval: options.interval as i64,
            timeout: options.timeout as i64,
            start_period: options.start_period as i64,
            start_interval: options.start_interval as i64,
            retries: i64::from(options.retries),
        },
    };
    let text = format!("HEALTHCHECK {}", history_text::healthcheck(&health));
    state.config.config.healthcheck = Some(health);
    Ok(text)
}

/// ONBUILD stores its trigger; BuildKit records no history entry for it, so the dispatcher
/// only moves the cache key with this text.
pub(super) fn onbuild(state: &mut StageState, expression: &str) -> String {
    let triggers = state.config.config.on_build.get_or_insert_with(Vec::new);
    triggers.push(expression.to_string());
    format!("ONBUILD {expression}")
}

pub(super) fn maintainer(state: &mut StageState, m: &str) -> Text {
    state.config.author = Some(m.to_string());
    Ok(format!("MAINTAINER {m}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheKey;
    use crate::image::ImageConfigFile;

    fn state() -> StageState {
        StageState {
            layers: Vec::new(),
            config: ImageConfigFile::default(),
            key: CacheKey::for_base("scratch", ""),
            args: Vec::new(),
            declared_args: Vec::new(),
            cmd_set_here: false,
            escape: '\\',
        }
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            legacy: false,
        }
    }

    #[test]
    fn env_expands_with_the_variables_from_before_the_instruction() {
        let mut s = state();
        env(&mut s, &[kv("A", "1")]).unwrap();
        let text = env(&mut s, &[kv("A", "2"), kv("B", "$A")]).unwrap();
        assert_eq!(text, "ENV A=2 B=1");
        assert_eq!(s.config.config.env, ["A=2", "B=1"]);
    }

    #[test]
    fn arg_takes_build_arg_then_default_then_meta_arg() {
        let mut s = state();
        let defs = |name: &str, default: Option<&str>| ArgDef {
            name: name.into(),
            default: default.map(String::from),
        };
        let build_args = BTreeMap::from([("A".to_string(), "cli".to_string())]);
        let meta = [("C".to_string(), "meta".to_string())];
        let text = arg(
            &mut s,
            &[defs("A", Some("d")), defs("B", Some("d")), defs("C", None)],
            &build_args,
            &meta,
        )
        .unwrap();
        assert_eq!(text, "ARG A=d B=d C");
        let args: Vec<(&str, &str)> = s.args.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(args, [("A", "cli"), ("B", "d"), ("C", "meta")]);
    }

    #[test]
    fn expose_takes_ranges_and_rejects_bad_specs() {
        let mut s = state();
        let text = expose(&mut s, &["80".into(), "8000-8001/udp".into()]).unwrap();
        assert_eq!(text, "EXPOSE map[80/tcp:{} 8000/udp:{} 8001/udp:{}]");
        assert_eq!(s.config.config.exposed_ports.len(), 3);
        let err = expose(&mut s, &["9-8".into()]).unwrap_err();
        assert_eq!(err.to_string(), "invalid port spec \"9-8\"");
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_but_not_one_set_in_the_stage() {
        let mut s = state();
        s.config.config.cmd = Some(vec!["inherited".into()]);
        entrypoint(&mut s, &ShellOrExec::Exec(vec!["/ep".into()])).unwrap();
        assert_eq!(s.config.config.cmd, None);
        cmd(&mut s, &ShellOrExec::Exec(vec!["mine".into()])).unwrap();
        let text = entrypoint(&mut s, &ShellOrExec::Shell("run it".into())).unwrap();
        assert_eq!(text, r#"ENTRYPOINT ["/bin/sh" "-c" "run it"]"#);
        assert_eq!(s.config.config.cmd, Some(vec!["mine".to_string()]));
    }
}
