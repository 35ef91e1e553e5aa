//! `index.json`: the layout's list of images, shared with the other OCI tools.
//!
//! skopeo, umoci and crane write into an OCI layout with index entries of their own, so
//! the file is not strata's alone:
//!
//! - strata writes one entry per tag it made, named the way tools look names up:
//!   `org.opencontainers.image.ref.name` is the familiar reference (`app:1`,
//!   `ghcr.io/o/app:1`), which skopeo (`oci:ROOT:app:1`) and umoci (`umoci ls`) match
//!   and which stays unique per repository; `io.containerd.image.name` is the full one
//!   (`docker.io/library/app:1`), as containerd and nerdctl write it.
//! - On every open, entries the metadata does not know are adopted (`Store::adopt_index`): an
//!   entry whose name parses as a reference and whose manifest and blobs are all here
//!   becomes an image and a tag (listed by `images`, kept by GC), and its entry is
//!   written back exactly as the other tool wrote it. Any other entry (an image index,
//!   a blob not here, no name, a name strata already gives another image) is kept
//!   verbatim in the `foreign_index` tree, and GC keeps every blob it reaches.
//! - Nothing another tool wrote is dropped: an adopted tag's entry goes only when the
//!   user removes that tag or image (`rmi`, `image prune -a`), as for any image, or
//!   when the tool that wrote it removes or replaces it in `index.json`.
//!
//! `meta/index.json.sha256` holds the digest of the `index.json` strata last wrote or
//! checked, so an open whose `index.json` is unchanged reads nothing more.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use crate::error::{Result, StoreError};
use crate::image::record_image;
use crate::layout::{write_atomic, write_atomic_cached};
use crate::meta::{self, Meta};
use crate::records::{BlobRecord, ForeignEntryRecord, TagRecord};
use crate::{media_types, Digest, Reference, Store};

/// The annotation OCI tools read a reference name from.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation for the full image name (docker and nerdctl write it too).
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// How deep an adopted image index may nest before GC stops following it.
const MAX_DEPTH: usize = 4;

/// The `org.opencontainers.image.ref.name` written for `r`: its familiar form, so that
/// `skopeo inspect oci:ROOT:app:1` finds `app:1` and two repositories with the same tag
/// stay apart (`app:1`, `ghcr.io/o/app:1`).
pub fn index_ref_name(r: &Reference) -> String {
    r.familiar()
}

impl Store {
    /// Rewrites `index.json` from the metadata: the entry of every tag (another tool's verbatim,
    /// else strata's own) and every foreign entry. Runs inside the write transaction so
    /// concurrent strata writers cannot reorder it.
    pub(crate) fn write_index(&self, m: &Meta) -> Result<()> {
        let mut manifests = Vec::new();
        for (key, t) in m.all(meta::TAGS)? {
            if let Some(entry) = t.index_entry {
                manifests.push(entry);
                continue;
            }
            let Some(rec) = m.get(meta::MANIFESTS, &t.manifest)? else {
                continue;
            };
            let r = Reference::parse(&key)?;
            manifests.push(serde_json::json!({
                "mediaType": rec.media_type,
                "digest": t.manifest,
                "size": rec.size,
                "annotations": {
                    REF_NAME_ANNOTATION: index_ref_name(&r),
                    CONTAINERD_NAME_ANNOTATION: key,
                },
            }));
        }
        for (_, f) in m.all(meta::FOREIGN_INDEX)? {
            manifests.push(f.entry);
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec_pretty(&index).expect("index serializes");
        write_atomic(&self.layout().index_json(), &bytes)?;
        self.remember_index(&bytes)
    }

    /// Adopts the entries of `index.json` that the metadata does not know (see the module doc).
    /// Cheap when `index.json` is what strata last wrote or checked.
    pub(crate) fn adopt_index(&self) -> Result<()> {
        let Some(bytes) = self.read_index()? else {
            return Ok(());
        };
        if self.is_remembered(&bytes) {
            return Ok(());
        }
        if entries(&bytes).is_empty() {
            return self.remember_index(&bytes);
        }
        meta::write(self, |m| {
            // Read again under the lock: another strata process may have just rewritten it.
            let bytes = self.read_index()?.unwrap_or_default();
            let current = entries(&bytes);
            // An entry adopted earlier and gone now was removed (or replaced) by the tool
            // that wrote it: follow it, so the name is not listed twice.
            let mut is_changed = false;
            for (key, t) in m.all(meta::TAGS)? {
                if t.index_entry.as_ref().is_some_and(|e| !current.contains(e)) {
                    m.remove(meta::TAGS, key.as_str())?;
                    is_changed = true;
                }
            }
            for (key, f) in m.all(meta::FOREIGN_INDEX)? {
                if !current.contains(&f.entry) {
                    m.remove(meta::FOREIGN_INDEX, key.as_str())?;
                    is_changed = true;
                }
            }
            for entry in current {
                if is_known(m, &entry)? {
                    continue;
                }
                self.adopt_entry(m, entry)?;
                is_changed = true;
            }
            if is_changed {
                self.write_index(m)
            } else {
                self.remember_index(&bytes)
            }
        })
    }

    /// Records one unknown entry: as an image and tag when it can be, else as foreign.
    fn adopt_entry(&self, m: &Meta, entry: serde_json::Value) -> Result<()> {
        let digest = entry_digest(&entry);
        if let (Some(d), Some(r)) = (&digest, entry_name(&entry)) {
            let key = r.to_string();
            let is_free = m
                .get(meta::TAGS, key.as_str())?
                .is_none_or(|t| t.manifest == *d);
            if is_free && r.digest.is_none() {
                if let Ok(parsed) = self.parse_image(d) {
                    let now = meta::now();
                    let blobs =
                        std::iter::once((d.clone(), parsed.size, parsed.media_type.clone()))
                            .chain(std::iter::once((
                                parsed.config.digest.clone(),
                                parsed.config.size,
                                parsed.config.media_type.clone(),
                            )))
                            .chain(parsed.layers.iter().map(|l| {
                                (
                                    l.blob.digest.clone(),
                                    l.blob.size,
                                    l.blob.media_type.clone(),
                                )
                            }))
                            .collect::<Vec<_>>();
                    for (b, size, media_type) in blobs {
                        if m.get(meta::BLOBS, &b)?.is_none() {
                            m.put(meta::BLOBS, &b, &BlobRecord::new(size, &media_type, now))?;
                        }
                    }
                    record_image(m, d, parsed, &BTreeMap::new(), now)?;
                    return m.put(
                        meta::TAGS,
                        key.as_str(),
                        &TagRecord {
                            v: meta::RECORD_VERSION,
                            manifest: d.clone(),
                            updated_at: now,
                            index_entry: Some(entry),
                        },
                    );
                }
            }
        }
        let digests = digest.map(|d| self.reachable(&d, 0)).unwrap_or_default();
        let key = Digest::sha256_of(entry.to_string().as_bytes()).to_string();
        m.put(
            meta::FOREIGN_INDEX,
            key.as_str(),
            &ForeignEntryRecord {
                v: meta::RECORD_VERSION,
                entry,
                digests,
            },
        )
    }

    /// `d` and every blob a manifest or index at `d` names, as far as the blobs here go.
    fn reachable(&self, d: &Digest, depth: usize) -> Vec<Digest> {
        let mut out = vec![d.clone()];
        let Ok(bytes) = self.read_blob(d) else {
            return out;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return out;
        };
        let named = |x: &serde_json::Value| x["digest"].as_str().and_then(|s| s.parse().ok());
        if let Some(children) = v["manifests"].as_array() {
            for c in children.iter().filter_map(named) {
                if depth < MAX_DEPTH {
                    out.extend(self.reachable(&c, depth + 1));
                }
            }
        }
        out.extend(named(&v["config"]));
        if let Some(layers) = v["layers"].as_array() {
            out.extend(layers.iter().filter_map(named));
        }
        out
    }

    fn read_index(&self) -> Result<Option<Vec<u8>>> {
        let path = self.layout().index_json();
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading", &path)(e)),
        }
    }

    fn is_remembered(&self, bytes: &[u8]) -> bool {
        fs::read_to_string(self.layout().index_fingerprint())
            .is_ok_and(|s| s.trim() == Digest::sha256_of(bytes).as_str())
    }

    /// Without an fsync: the fingerprint only saves work. One that a lost machine takes
    /// back or leaves out makes the next open compare `index.json` with the metadata once
    /// (`adopt_index`), which finds nothing to adopt in what strata wrote; `index.json` itself
    /// is durable before this runs.
    fn remember_index(&self, bytes: &[u8]) -> Result<()> {
        write_atomic_cached(
            &self.layout().index_fingerprint(),
            Digest::sha256_of(bytes).as_str().as_bytes(),
        )
    }
}

/// The entries of an `index.json`; none when it is not an index (never rewritten then:
/// the next tag change writes a fresh one only from what the metadata knows).
fn entries(bytes: &[u8]) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["manifests"].as_array().cloned())
        .unwrap_or_default()
}

fn entry_digest(entry: &serde_json::Value) -> Option<Digest> {
    entry["digest"].as_str().and_then(|s| s.parse().ok())
}

/// The reference an entry names: containerd's full name, else the OCI ref name.
fn entry_name(entry: &serde_json::Value) -> Option<Reference> {
    let a = &entry["annotations"];
    a[CONTAINERD_NAME_ANNOTATION]
        .as_str()
        .or_else(|| a[REF_NAME_ANNOTATION].as_str())
        .and_then(|n| Reference::parse(n).ok())
}

/// Whether the metadata already accounts for `entry`: a foreign record holds it, a tag holds it
/// verbatim, or it is strata's own entry for a tag (containerd's name → same digest).
fn is_known(m: &Meta, entry: &serde_json::Value) -> Result<bool> {
    if m.all(meta::FOREIGN_INDEX)?
        .iter()
        .any(|(_, f)| f.entry == *entry)
    {
        return Ok(true);
    }
    let Some(d) = entry_digest(entry) else {
        return Ok(false);
    };
    for (key, t) in m.all(meta::TAGS)? {
        if t.manifest != d {
            continue;
        }
        match &t.index_entry {
            Some(e) if e == entry => return Ok(true),
            Some(_) => {}
            None => {
                let own = entry["annotations"][CONTAINERD_NAME_ANNOTATION].as_str();
                if own == Some(key.as_str()) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}
