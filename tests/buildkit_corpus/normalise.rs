//! The normal form of an image for the BuildKit corpus: a docker-archive (what `docker save`
//! and `strata save` write) turned into JSON that holds only what a Dockerfile decides.
//!
//! - `layers`: one object per layer above the base image, keyed by the entry's path (no `./`,
//!   no trailing `/`), each entry `{type, mode, uid, gid}` plus `size` and `digest` (sha256 of
//!   the content) for a file and `link` for a symlink or hardlink. Whiteouts stay as the
//!   `.wh.` entries the layer holds, typed `whiteout` (`opaque` for `.wh..wh..opq`) and
//!   nothing else.
//! - `config`: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
//!   StopSignal, Healthcheck, Shell, OnBuild, and the image's author.
//! - `history`: `created_by` and `empty_layer` of each entry above the base image's.
//!
//! Times (mtimes, `created`), digests of whole layers and the base's own entries are left
//! out: they differ between any two builders without the Dockerfile asking for it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

/// The config fields the corpus compares.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

/// What a docker-archive holds, read into memory (corpus images are small).
struct Archive {
    files: BTreeMap<String, Vec<u8>>,
}

impl Archive {
    fn read(path: &Path) -> io::Result<Archive> {
        let mut archive = tar::Archive::new(fs::File::open(path)?);
        let mut files = BTreeMap::new();
        // docker save writes a layer the image holds twice once, and the second as a
        // symlink `ID/layer.tar -> ../OTHER/layer.tar`.
        let mut links = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            if entry.header().entry_type().is_symlink() {
                if let Some(target) = entry.link_name()? {
                    let dir = Path::new(&name)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .to_path_buf();
                    links.push((name, dir.join(target)));
                }
                continue;
            }
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            files.insert(name, bytes);
        }
        for (name, target) in links {
            // `a/../b/layer.tar` → `b/layer.tar`
            let mut parts: Vec<String> = Vec::new();
            for c in target.components() {
                match c {
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    std::path::Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                    _ => {}
                }
            }
            if let Some(bytes) = files.get(&parts.join("/")).cloned() {
                files.insert(name, bytes);
            }
        }
        Ok(Archive { files })
    }

    fn file(&self, name: &str) -> &[u8] {
        self.files
            .get(name)
            .unwrap_or_else(|| panic!("docker-archive lacks {name}"))
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_slice(self.file(name))
            .unwrap_or_else(|e| panic!("{name} in the docker-archive is not JSON: {e}"))
    }
}

/// How many layers and history entries the base image has: the normal form starts above them.
#[derive(Clone, Copy, Debug)]
pub struct Base {
    pub layers: usize,
    pub history: usize,
}

impl Base {
    /// The base image's counts, read from its own docker-archive.
    pub fn of_archive(path: &Path) -> Base {
        let archive = Archive::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let manifest = archive.json("manifest.json");
        let config = archive.json(manifest[0]["Config"].as_str().expect("Config"));
        Base {
            layers: manifest[0]["Layers"].as_array().expect("Layers").len(),
            history: config["history"].as_array().map_or(0, |h| h.len()),
        }
    }
}

/// The normal form of the (single) image in the docker-archive at `path`.
pub fn normalise(path: &Path, base: Base) -> Value {
    let archive = Archive::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest = archive.json("manifest.json");
    let image = &manifest[0];
    let config = archive.json(image["Config"].as_str().expect("manifest Config"));
    let layer_names = image["Layers"].as_array().expect("manifest Layers");

    let layers: Vec<Value> = layer_names
        .iter()
        .skip(base.layers)
        .map(|name| {
            let name = name.as_str().expect("layer name");
            layer_entries(archive.file(name)).unwrap_or_else(|e| panic!("layer {name}: {e}"))
        })
        .collect();

    let mut cfg = Map::new();
    for field in CONFIG_FIELDS {
        let value = config["config"].get(*field).cloned().unwrap_or(Value::Null);
        // An empty list or map and an absent one mean the same to a runtime.
        let value = match value {
            Value::Array(a) if a.is_empty() => Value::Null,
            Value::Object(o) if o.is_empty() => Value::Null,
            v => v,
        };
        cfg.insert(field.to_string(), value);
    }
    cfg.insert(
        "author".into(),
        config.get("author").cloned().unwrap_or(Value::Null),
    );

    let history: Vec<Value> = config["history"]
        .as_array()
        .map(|h| h.as_slice())
        .unwrap_or(&[])
        .iter()
        .skip(base.history)
        .map(|h| {
            json!({
                "created_by": h.get("created_by").cloned().unwrap_or(Value::Null),
                "empty_layer": h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect();

    json!({
        "build": "ok",
        "layer_count": layer_names.len() - base.layers,
        "layers": layers,
        "config": Value::Object(cfg),
        "history": history,
    })
}

/// The normal form of a build that failed.
pub fn failed() -> Value {
    json!({ "build": "failed" })
}

/// One layer tar (plain, or gzip as some archives hold) as `{path: entry}`.
fn layer_entries(bytes: &[u8]) -> io::Result<Value> {
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    let mut out = Map::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if path.is_empty() {
            continue;
        }
        // A whiteout only says "deleted" (an opaque one "emptied"): its own mode and owner
        // mean nothing to a runtime, and builders write them differently.
        let base_name = path.rsplit('/').next().unwrap_or(&path);
        if base_name == ".wh..wh..opq" {
            out.insert(path, json!({ "type": "opaque" }));
            continue;
        }
        if base_name.starts_with(".wh.") {
            out.insert(path, json!({ "type": "whiteout" }));
            continue;
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mut e = Map::new();
        let type_name = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            other => panic!("layer entry {path}: unexpected tar type {other:?}"),
        };
        e.insert("type".into(), type_name.into());
        e.insert(
            "mode".into(),
            format!("{:04o}", header.mode()? & 0o7777).into(),
        );
        e.insert("uid".into(), header.uid()?.into());
        e.insert("gid".into(), header.gid()?.into());
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut content = Vec::new();
                entry.read_to_end(&mut content)?;
                e.insert("size".into(), content.len().into());
                e.insert(
                    "digest".into(),
                    format!("sha256:{}", hex::encode(Sha256::digest(&content))).into(),
                );
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = if kind == tar::EntryType::Link {
                    target.trim_start_matches("./").to_string()
                } else {
                    target
                };
                e.insert("link".into(), target.into());
            }
            _ => {}
        }
        out.insert(path, Value::Object(e));
    }
    Ok(Value::Object(out))
}

/// The differences between two normal forms, each as `where: expected != actual`, in order.
pub fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("", expected, actual, &mut out);
    out
}

fn diff_at(at: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for k in keys {
                let here = format!("{at}/{k}");
                match (e.get(k), a.get(k)) {
                    (Some(ev), Some(av)) => diff_at(&here, ev, av, out),
                    (Some(ev), None) => {
                        out.push(format!("{here}: BuildKit has {ev}, strata has nothing"))
                    }
                    (None, Some(av)) => {
                        out.push(format!("{here}: BuildKit has nothing, strata has {av}"))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!(
                    "{at}: BuildKit has {} entries, strata {}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_at(&format!("{at}[{i}]"), ev, av, out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{at}: BuildKit {e} != strata {a}")),
    }
}
