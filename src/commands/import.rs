//! `strata import FILE|- [REPOSITORY[:TAG]]`: a rootfs tarball becomes a one-layer image.

use std::fs::File;
use std::io::Read;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use super::Ctx;
use crate::cli::ImportArgs;
use crate::output::UsageError;

pub fn run(ctx: &Ctx, args: &ImportArgs) -> Result<()> {
    let reference = args
        .reference
        .as_deref()
        .map(super::parse_reference)
        .transpose()?;
    let mut config = Map::new();
    for change in &args.changes {
        apply_change(&mut config, change)?;
    }
    let store = super::open_store(ctx)?;
    let source = args.file.display().to_string();
    let input: Box<dyn Read> = if source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("opening {source}"))?)
    };
    let opts = store::archive::ImportOptions {
        reference,
        message: args.message.clone(),
        config,
        source: source.clone(),
    };
    let image = store
        .import(input, &opts)
        .with_context(|| format!("importing {source}"))?;
    println!("{}", image.id());
    Ok(())
}

/// Applies one `--change` Dockerfile instruction to the config object, like
/// `docker import -c`. Supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER,
/// VOLUME, WORKDIR, STOPSIGNAL.
fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let (instr, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .map(|(a, b)| (a, b.trim()))
        .unwrap_or((change.trim(), ""));
    let words = |s: &str| -> Value {
        match serde_json::from_str::<Vec<String>>(s) {
            Ok(v) => v.into(),
            Err(_) => Value::from(vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()]),
        }
    };
    let pairs = |s: &str| -> Vec<(String, String)> {
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
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), words(rest));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), words(rest));
        }
        "ENV" => {
            let env = config.entry("Env").or_insert_with(|| Value::Array(vec![]));
            for (k, v) in pairs(rest) {
                if let Value::Array(a) = env {
                    a.retain(|e| !e.as_str().is_some_and(|e| e.starts_with(&format!("{k}="))));
                    a.push(format!("{k}={v}").into());
                }
            }
        }
        "LABEL" => {
            let labels = config.entry("Labels").or_insert_with(|| Value::Object(Map::new()));
            for (k, v) in pairs(rest) {
                labels[k] = v.into();
            }
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| Value::Object(Map::new()));
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                ports[p] = Value::Object(Map::new());
            }
        }
        "VOLUME" => {
            let vols = config.entry("Volumes").or_insert_with(|| Value::Object(Map::new()));
            let list = serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
            for v in list {
                vols[v] = Value::Object(Map::new());
            }
        }
        "USER" => {
            config.insert("User".into(), rest.into());
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), rest.into());
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), rest.into());
        }
        "" => bail!(UsageError("empty --change".to_string())),
        other => bail!(UsageError(format!(
            "{other} is not a valid change command (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)"
        ))),
    }
    Ok(())
}
