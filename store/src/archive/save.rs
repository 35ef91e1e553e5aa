//! `save`: images to a tar archive.
//!
//! docker-archive (default): `manifest.json` naming, per image, the config and
//! the layers as *uncompressed* tars at `blobs/sha256/<hex>` (the layout docker 25+
//! writes; older `docker load` reads any path manifest.json names), plus
//! `repositories` for docker < 1.10-era readers; an image index goes in as this machine's
//! platform. OCI archive: `oci-layout`, `index.json` and every blob as stored (an image
//! index with every platform's image).
//!
//! Writing to a file goes to a temp file beside it and is renamed at the end, so
//! an interrupted save never leaves a half archive under the requested name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::decompress::plain_reader;
use crate::digest::Sha256Reader;
use crate::error::{Result, StoreError};
use crate::layout::temp_beside;
use crate::media_types::{self, Compression};
use crate::meta;
use crate::oci_index::{index_ref_name, CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION};
use crate::{Descriptor, Digest, ImageRecord, Reference, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Docker,
    Oci,
}

/// One image to save and the names to give it in the archive.
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub manifest: Digest,
    pub tags: Vec<Reference>,
    /// Annotations of the image's entries in an OCI archive's `index.json` (BuildKit's
    /// `index-descriptor` annotations); the reference-name annotations are added to them.
    pub annotations: BTreeMap<String, String>,
}

impl Store {
    /// Saves `items` into the archive file `path` (atomically replaced).
    pub fn save_to_file(
        &self,
        items: &[SaveItem],
        format: ArchiveFormat,
        path: &Path,
    ) -> Result<()> {
        let tmp = temp_beside(path);
        let result = (|| {
            let f = File::create(&tmp).map_err(StoreError::io("creating", &tmp))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            self.save(items, format, &mut w)?;
            let f = w
                .into_inner()
                .map_err(|e| StoreError::io("writing", &tmp)(e.into_error()))?;
            f.sync_all().map_err(StoreError::io("fsync", &tmp))?;
            fs::rename(&tmp, path).map_err(StoreError::io("renaming into place", path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes the archive to `out`.
    pub fn save(&self, items: &[SaveItem], format: ArchiveFormat, out: impl Write) -> Result<()> {
        let mut images: Vec<(ImageRecord, &SaveItem)> = items
            .iter()
            .map(|i| self.image(&i.manifest).map(|img| (img, i)))
            .collect::<Result<_>>()?;
        if format == ArchiveFormat::Docker {
            // A docker-archive holds single-platform images: an image index is saved as its
            // manifest for this machine (the OCI archive keeps the whole index).
            for (img, _) in &mut images {
                if img.is_index() {
                    let host = crate::platform::Platform::host();
                    let child = img.manifest_for(&host).cloned().ok_or_else(|| {
                        StoreError::InvalidManifest {
                            digest: img.manifest.clone(),
                            reason: format!(
                                "is a multi-platform image without {host}: save it with --format oci"
                            ),
                        }
                    })?;
                    *img = self.image(&child)?;
                }
            }
        }
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        let result = match format {
            ArchiveFormat::Docker => self.save_docker(&images, &mut tar),
            ArchiveFormat::Oci => self.save_oci(&images, &mut tar),
        };
        result?;
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(StoreError::io("writing archive", "<output>"))?;
        Ok(())
    }

    fn save_docker<W: Write>(
        &self,
        images: &[(ImageRecord, &SaveItem)],
        tar: &mut tar::Builder<W>,
    ) -> Result<()> {
        let mut written = BTreeSet::new();
        let mut manifest = Vec::new();
        let mut repositories = serde_json::Map::new();
        let sizes = self.uncompressed_sizes(images)?;
        for (img, item) in images {
            let config_path = format!("blobs/sha256/{}", img.config.digest.hex());
            if written.insert(img.config.digest.clone()) {
                let bytes = self.read_blob(&img.config.digest)?;
                append_bytes(tar, &config_path, &bytes)?;
            }
            let mut layers = Vec::new();
            for l in &img.layers {
                let path = format!("blobs/sha256/{}", l.diff_id.hex());
                if written.insert(l.diff_id.clone()) {
                    let size = sizes.iter().find(|(d, _)| *d == l.diff_id).map(|(_, s)| *s);
                    self.append_uncompressed_layer(tar, &path, &l.blob, &l.diff_id, size)?;
                }
                layers.push(path);
            }
            let tags: Vec<String> = item.tags.iter().map(|t| t.familiar()).collect();
            if let Some(top) = img.layers.last() {
                for t in &item.tags {
                    let repo = repositories
                        .entry(t.repository_familiar())
                        .or_insert_with(|| serde_json::json!({}));
                    if let Some(tag) = &t.tag {
                        repo[tag] = top.diff_id.hex().into();
                    }
                }
            }
            manifest.push(serde_json::json!({
                "Config": config_path,
                "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { tags.into() },
                "Layers": layers,
            }));
        }
        let bytes = serde_json::to_vec(&manifest).expect("manifest.json serializes");
        append_bytes(tar, "manifest.json", &bytes)?;
        if !repositories.is_empty() {
            let bytes = serde_json::to_vec(&repositories).expect("repositories serializes");
            append_bytes(tar, "repositories", &bytes)?;
        }
        Ok(())
    }

    fn save_oci<W: Write>(
        &self,
        images: &[(ImageRecord, &SaveItem)],
        tar: &mut tar::Builder<W>,
    ) -> Result<()> {
        append_bytes(
            tar,
            "oci-layout",
            crate::layout::OCI_LAYOUT_CONTENT.as_bytes(),
        )?;
        let mut written = BTreeSet::new();
        let mut manifests = Vec::new();
        for (img, item) in images {
            // An image index: its blob, then each platform's image.
            let mut parts = vec![img.clone()];
            for c in &img.platforms {
                parts.push(self.image(&c.manifest.digest)?);
            }
            let blobs: Vec<Descriptor> = parts
                .iter()
                .flat_map(|p| {
                    std::iter::once(Descriptor {
                        media_type: p.media_type.clone(),
                        digest: p.manifest.clone(),
                        size: p.manifest_size,
                    })
                    .chain(std::iter::once(p.config.clone()))
                    .chain(p.layers.iter().map(|l| l.blob.clone()))
                })
                .collect();
            for d in blobs {
                if written.insert(d.digest.clone()) {
                    let path = format!("blobs/sha256/{}", d.digest.hex());
                    let f = self.open_blob(&d.digest)?;
                    let len = f
                        .metadata()
                        .map_err(StoreError::io("stat", self.blob_path(&d.digest)))?
                        .len();
                    append_reader(tar, &path, len, BufReader::with_capacity(1 << 20, f))?;
                }
            }
            let entry = |t: Option<&Reference>| {
                let mut e = serde_json::json!({
                    "mediaType": img.media_type,
                    "digest": img.manifest,
                    "size": img.manifest_size,
                });
                let mut annotations = item.annotations.clone();
                if let Some(t) = t {
                    annotations.insert(REF_NAME_ANNOTATION.to_string(), index_ref_name(t));
                    annotations.insert(CONTAINERD_NAME_ANNOTATION.to_string(), t.to_string());
                }
                if !annotations.is_empty() {
                    e["annotations"] = serde_json::json!(annotations);
                }
                e
            };
            if item.tags.is_empty() {
                manifests.push(entry(None));
            }
            for t in &item.tags {
                manifests.push(entry(Some(t)));
            }
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": manifests,
        });
        append_bytes(
            tar,
            "index.json",
            &serde_json::to_vec(&index).expect("index serializes"),
        )
    }

    fn uncompressed_sizes(
        &self,
        images: &[(ImageRecord, &SaveItem)],
    ) -> Result<Vec<(Digest, u64)>> {
        meta::read(self, |m| {
            let mut out = Vec::new();
            for (img, _) in images {
                for l in &img.layers {
                    if let Some(s) = m
                        .get(meta::LAYERS, &l.diff_id)?
                        .and_then(|r| r.uncompressed_size)
                    {
                        out.push((l.diff_id.clone(), s));
                    }
                }
            }
            Ok(out)
        })
    }

    /// Appends a layer as a plain tar, decompressing if stored compressed, and
    /// checks its diff_id on the way.
    fn append_uncompressed_layer<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        path: &str,
        blob: &Descriptor,
        diff_id: &Digest,
        known_size: Option<u64>,
    ) -> Result<()> {
        let blob_path = self.blob_path(&blob.digest);
        let compression =
            media_types::layer_compression(&blob.media_type).unwrap_or(Compression::None);
        let open = || -> Result<Box<dyn Read>> {
            let f = BufReader::with_capacity(1 << 20, self.open_blob(&blob.digest)?);
            plain_reader(compression, f)
                .map_err(StoreError::io("starting to decompress layer", &blob_path))
        };
        let size = match (compression, known_size) {
            (Compression::None, _) => blob.size,
            (_, Some(s)) => s,
            (_, None) => io::copy(&mut open()?, &mut io::sink())
                .map_err(StoreError::io("reading layer", &blob_path))?,
        };
        let mut hashed = Sha256Reader::new(open()?);
        append_reader(tar, path, size, &mut hashed)?;
        let (_, actual, n) = hashed.finish();
        if actual != *diff_id || n != size {
            return Err(StoreError::CorruptBlob {
                digest: blob.digest.clone(),
                reason: format!("uncompressed content is {actual} ({n} bytes), the image says diff_id {diff_id}"),
            });
        }
        Ok(())
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    append_reader(tar, path, bytes.len() as u64, bytes)
}

fn append_reader<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    r: impl Read,
) -> Result<()> {
    let mut h = header(size);
    tar.append_data(&mut h, path, r)
        .map_err(StoreError::io("writing archive entry", path))
}
