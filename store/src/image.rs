//! Images: manifests recorded in the metadata database, tags, resolution of what the user typed,
//! and the derived `index.json`.
//!
//! Order of commits: blobs are already in `blobs/` when `add_image` runs; it
//! records layers, then the manifest, then the tag, then rewrites `index.json`, all
//! under one open of the database. A crash at any point leaves unreferenced blobs
//! or an untagged image, never a tag naming a missing manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::media_types;
use crate::meta::{self, Meta};
use crate::platform::Platform;
use crate::records::{IndexChild, LayerRecord, LayerRef, ManifestRecord, TagRecord};
use crate::{Descriptor, Digest, Reference, Store};

/// An image as the CLI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Digest,
    pub media_type: String,
    pub manifest_size: u64,
    pub config: Descriptor,
    pub layers: Vec<LayerRef>,
    /// The config's `created` (RFC 3339), if any.
    pub created: Option<String>,
    pub added_at: i64,
    /// docker's SIZE column, in bytes.
    pub size: u64,
    /// Every tag that names this image, sorted.
    pub tags: Vec<Reference>,
    /// An image index's per-platform manifests; empty for a single-platform image
    /// (`ManifestRecord::manifests`).
    pub platforms: Vec<IndexChild>,
}

impl ImageRecord {
    /// Whether this image is an image index (a multi-platform image).
    pub fn is_index(&self) -> bool {
        !self.platforms.is_empty()
    }

    /// The manifest of this image for `platform`: itself when it is a single-platform
    /// image, else the first of its index's manifests that runs on `platform`.
    pub fn manifest_for(&self, platform: &Platform) -> Option<&Digest> {
        if !self.is_index() {
            return Some(&self.manifest);
        }
        self.platforms
            .iter()
            .find(|c| {
                c.platform
                    .as_ref()
                    .is_some_and(|v| platform.matches_json(v))
            })
            .map(|c| &c.manifest.digest)
    }

    /// docker's IMAGE ID: the config digest (the index digest for an image index).
    pub fn id(&self) -> &Digest {
        &self.config.digest
    }

    /// The layer diff_ids, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    fn from_record(manifest: &Digest, rec: ManifestRecord, tags: Vec<Reference>) -> ImageRecord {
        ImageRecord {
            manifest: manifest.clone(),
            media_type: rec.media_type,
            manifest_size: rec.size,
            config: rec.config,
            layers: rec.layers,
            created: rec.created,
            added_at: rec.added_at,
            size: rec.image_size,
            tags,
            platforms: rec.manifests,
        }
    }
}

/// One image for `add_images`: its committed manifest (one platform's, or an image
/// index whose platforms' manifests are committed too), the tags to point at it, and
/// known uncompressed layer sizes by diff_id.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub manifest: Digest,
    pub tags: Vec<Reference>,
    pub uncompressed: BTreeMap<Digest, u64>,
}

/// What `remove_image` did, in docker's words.
#[derive(Debug, Clone, PartialEq)]
pub enum Removed {
    Untagged(Reference),
    Deleted(Digest),
}

/// A parsed single-platform manifest with what `add_image` needs from its config.
pub(crate) struct ParsedImage {
    pub media_type: String,
    pub size: u64,
    pub config: Descriptor,
    pub layers: Vec<LayerRef>,
    pub created: Option<String>,
}

impl ParsedImage {
    /// The config and layer blobs the manifest names.
    fn blobs(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.config.digest).chain(self.layers.iter().map(|l| &l.blob.digest))
    }
}

/// A parsed image index (docs/design.md §1): what its record keeps, and every platform's
/// parsed manifest.
struct ParsedIndex {
    media_type: String,
    size: u64,
    children: Vec<IndexChild>,
    images: Vec<(Digest, ParsedImage)>,
}

/// What an image's top manifest blob is: one platform's manifest or an image index.
enum Parsed {
    Image(ParsedImage),
    Index(ParsedIndex),
}

fn convert_digest(manifest: &Digest, d: &oci_spec::image::Digest) -> Result<Digest> {
    d.to_string()
        .parse()
        .map_err(|e: crate::DigestError| StoreError::InvalidManifest {
            digest: manifest.clone(),
            reason: e.to_string(),
        })
}

fn descriptor(manifest: &Digest, d: &oci_spec::image::Descriptor) -> Result<Descriptor> {
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest: convert_digest(manifest, d.digest())?,
        size: d.size(),
    })
}

impl Store {
    /// Reads and checks a manifest and its config: single platform, every blob
    /// present, as many diff_ids as layers.
    pub(crate) fn parse_image(&self, manifest: &Digest) -> Result<ParsedImage> {
        let bytes = self.read_blob(manifest)?;
        let invalid = |reason: String| StoreError::InvalidManifest {
            digest: manifest.clone(),
            reason,
        };
        let probe: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let declared = probe.get("mediaType").and_then(|m| m.as_str());
        if declared.is_some_and(media_types::is_index) || probe.get("manifests").is_some() {
            return Err(invalid(
                "is a multi-platform index; choose one platform's manifest".to_string(),
            ));
        }
        let m = oci_spec::image::ImageManifest::from_reader(&bytes[..])
            .map_err(|e| invalid(e.to_string()))?;
        let media_type = match declared {
            Some(t) if media_types::is_manifest(t) => t.to_string(),
            Some(t) => return Err(invalid(format!("unsupported media type {t}"))),
            None => media_types::OCI_MANIFEST.to_string(),
        };
        let config = descriptor(manifest, m.config())?;
        let config_bytes = self.read_blob(&config.digest)?;
        let cfg: serde_json::Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("config {} is not JSON: {e}", config.digest)))?;
        let diff_ids: Vec<Digest> = cfg
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .ok_or_else(|| invalid(format!("config {} has no rootfs.diff_ids", config.digest)))?
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_default()
                    .parse::<Digest>()
                    .map_err(|e| invalid(format!("config {}: {e}", config.digest)))
            })
            .collect::<Result<_>>()?;
        if diff_ids.len() != m.layers().len() {
            return Err(invalid(format!(
                "{} layers but config {} lists {} diff_ids",
                m.layers().len(),
                config.digest,
                diff_ids.len()
            )));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (l, diff_id) in m.layers().iter().zip(diff_ids) {
            let blob = descriptor(manifest, l)?;
            if !self.has_blob(&blob.digest) {
                return Err(StoreError::BlobMissing {
                    digest: blob.digest,
                    root: self.root().to_path_buf(),
                });
            }
            layers.push(LayerRef { blob, diff_id });
        }
        let created = cfg
            .get("created")
            .and_then(|c| c.as_str())
            .map(str::to_string);
        Ok(ParsedImage {
            media_type,
            size: bytes.len() as u64,
            config,
            layers,
            created,
        })
    }

    /// Records an image whose manifest blob (and every blob it names) is already
    /// committed, and moves `tag` to it (a previously tagged image becomes dangling,
    /// like docker). `uncompressed` gives known uncompressed layer sizes by diff_id.
    pub fn add_image(&self, manifest: &Digest, tag: Option<&Reference>) -> Result<ImageRecord> {
        self.add_image_with_sizes(manifest, tag, &BTreeMap::new())
    }

    /// `add_image` with the uncompressed size of some layers (by diff_id), for SIZE.
    pub fn add_image_with_sizes(
        &self,
        manifest: &Digest,
        tag: Option<&Reference>,
        uncompressed: &BTreeMap<Digest, u64>,
    ) -> Result<ImageRecord> {
        let img = NewImage {
            manifest: manifest.clone(),
            tags: tag.into_iter().cloned().collect(),
            uncompressed: uncompressed.clone(),
        };
        let mut out = self.record_images(std::slice::from_ref(&img), false)?;
        Ok(out.remove(0))
    }

    /// Records several images and their tags in one transaction (load): every
    /// manifest is parsed and checked first, so either all are recorded or none. An
    /// image whose config is already recorded under another manifest is that image
    /// (docker's image id is the config digest): loading it again in another form
    /// (docker-archive, then OCI archive) moves the tags to it and adds no second row.
    /// An image index is recorded as one image, as `add_index` records it.
    pub fn add_images(&self, images: &[NewImage]) -> Result<Vec<ImageRecord>> {
        self.record_images(images, true)
    }

    /// `add_images`; `is_one_per_config` as described there. A pull or build records
    /// the manifest it was given: its digest is what the user resolves afterwards.
    fn record_images(
        &self,
        images: &[NewImage],
        is_one_per_config: bool,
    ) -> Result<Vec<ImageRecord>> {
        let mut parsed = Vec::with_capacity(images.len());
        for img in images {
            for t in &img.tags {
                check_taggable(t)?;
            }
            parsed.push(self.parse_top(&img.manifest)?);
        }
        meta::write(self, |m| {
            // Checked again under the lock: a failed load in another process
            // removes only blobs that no record names, but it may have raced us.
            for (img, p) in images.iter().zip(&parsed) {
                let mut all = vec![&img.manifest];
                match p {
                    Parsed::Image(p) => all.extend(p.blobs()),
                    Parsed::Index(ix) => {
                        for (d, p) in &ix.images {
                            all.push(d);
                            all.extend(p.blobs());
                        }
                    }
                }
                for d in all {
                    if !self.has_blob(d) {
                        return Err(StoreError::BlobMissing {
                            digest: d.clone(),
                            root: self.root().to_path_buf(),
                        });
                    }
                }
            }
            let now = meta::now();
            let mut records = Vec::with_capacity(images.len());
            let mut tagged = false;
            for (img, p) in images.iter().zip(parsed) {
                let p = match p {
                    Parsed::Image(p) => p,
                    Parsed::Index(ix) => {
                        let rec = record_index(m, &img.manifest, ix, &img.uncompressed, now)?;
                        for t in &img.tags {
                            m.put(meta::TAGS, &t.to_string(), &tag_record(&img.manifest, now))?;
                            tagged = true;
                        }
                        records.push((img.manifest.clone(), rec));
                        continue;
                    }
                };
                // One image per config digest (docker's image id): the same image loaded
                // again in another form (docker-archive, then OCI) is the image already
                // recorded, not a second row with the same id. An index's id is its own
                // digest, so it is always itself.
                let existing = match is_one_per_config {
                    true => same_image(m, &img.manifest, &p.config.digest)?,
                    false => None,
                };
                let (manifest, rec) = match existing {
                    Some(existing) => existing,
                    None => {
                        let rec = record_image(m, &img.manifest, p, &img.uncompressed, now)?;
                        (img.manifest.clone(), rec)
                    }
                };
                for t in &img.tags {
                    m.put(meta::TAGS, &t.to_string(), &tag_record(&manifest, now))?;
                    tagged = true;
                }
                records.push((manifest, rec));
            }
            if tagged {
                self.write_index(m)?;
            }
            let mut out = Vec::with_capacity(images.len());
            for (manifest, rec) in records {
                let tags = tags_of(m, &manifest)?;
                out.push(ImageRecord::from_record(&manifest, rec, tags));
            }
            Ok(out)
        })
    }

    /// Records the image index `index` as one image and points `tags` at it
    /// (docs/design.md §1): its blob and every manifest it lists (with their blobs) are
    /// committed. Each platform's manifest is recorded too, untagged: `images` lists the
    /// index once, and GC keeps the manifests as long as the index is kept.
    pub fn add_index(&self, index: &Digest, tags: &[Reference]) -> Result<ImageRecord> {
        let img = NewImage {
            manifest: index.clone(),
            tags: tags.to_vec(),
            uncompressed: BTreeMap::new(),
        };
        let mut out = self.record_images(std::slice::from_ref(&img), false)?;
        Ok(out.remove(0))
    }

    /// Reads and checks the top manifest of an image: an image index (with every
    /// platform's manifest, see `parse_index`) or one platform's manifest (`parse_image`).
    fn parse_top(&self, manifest: &Digest) -> Result<Parsed> {
        let bytes = self.read_blob(manifest)?;
        let probe: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidManifest {
                digest: manifest.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        let declared = probe.get("mediaType").and_then(|m| m.as_str());
        if declared.is_some_and(media_types::is_index) || probe.get("manifests").is_some() {
            return Ok(Parsed::Index(
                self.parse_index(index_of(manifest, &bytes, &probe)?)?,
            ));
        }
        Ok(Parsed::Image(self.parse_image(manifest)?))
    }

    /// Parses every platform's manifest of an image index (each must be committed, with
    /// its blobs).
    fn parse_index(&self, index: IndexBlob) -> Result<ParsedIndex> {
        let mut images = Vec::with_capacity(index.children.len());
        for c in &index.children {
            let d = c.manifest.digest.clone();
            images.push((d.clone(), self.parse_image(&d)?));
        }
        Ok(ParsedIndex {
            media_type: index.media_type,
            size: index.size,
            children: index.children,
            images,
        })
    }

    /// Tag or digest → manifest digest. A digest reference resolves when the
    /// manifest is recorded, whatever its repository.
    pub fn resolve(&self, r: &Reference) -> Result<Digest> {
        meta::read(self, |m| resolve_in(m, r))
    }

    /// What the user typed → manifest digest: a reference, a manifest digest, or a
    /// full or short image id (config digest or prefix, like docker).
    pub fn resolve_str(&self, s: &str) -> Result<Digest> {
        meta::read(self, |m| resolve_str_in(m, s))
    }

    /// The image recorded under `manifest`, with its tags.
    pub fn image(&self, manifest: &Digest) -> Result<ImageRecord> {
        meta::read(self, |m| {
            let rec =
                m.get(meta::MANIFESTS, manifest)?
                    .ok_or_else(|| StoreError::ImageNotFound {
                        reference: manifest.to_string(),
                    })?;
            Ok(ImageRecord::from_record(
                manifest,
                rec,
                tags_of(m, manifest)?,
            ))
        })
    }

    /// Every recorded image, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        meta::read(self, |m| {
            let mut by_manifest: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
            for (key, t) in m.all(meta::TAGS)? {
                if let Ok(r) = Reference::parse(&key) {
                    by_manifest
                        .entry(t.manifest.to_string())
                        .or_default()
                        .push(r);
                }
            }
            let records = m.all(meta::MANIFESTS)?;
            // A platform's manifest of a recorded index is part of that image, not an
            // image of its own, unless a tag names it.
            let children: std::collections::HashSet<String> = records
                .iter()
                .flat_map(|(_, rec)| &rec.manifests)
                .map(|c| c.manifest.digest.to_string())
                .collect();
            let mut out = Vec::new();
            for (key, rec) in records {
                if children.contains(&key) && !by_manifest.contains_key(&key) {
                    continue;
                }
                let d: Digest =
                    key.parse()
                        .map_err(|e: crate::DigestError| StoreError::CorruptRecord {
                            tree: meta::MANIFESTS.name,
                            key: key.clone(),
                            reason: e.to_string(),
                        })?;
                let mut tags = by_manifest.remove(&key).unwrap_or_default();
                tags.sort();
                out.push(ImageRecord::from_record(&d, rec, tags));
            }
            out.sort_by(|a, b| {
                b.created
                    .cmp(&a.created)
                    .then(b.added_at.cmp(&a.added_at))
                    .then(a.manifest.cmp(&b.manifest))
            });
            Ok(out)
        })
    }

    /// Points `r` at `manifest` (moving it from any other image).
    pub fn tag(&self, manifest: &Digest, r: &Reference) -> Result<()> {
        check_taggable(r)?;
        meta::write(self, |m| {
            if m.get(meta::MANIFESTS, manifest)?.is_none() {
                return Err(StoreError::ImageNotFound {
                    reference: manifest.to_string(),
                });
            }
            m.put(
                meta::TAGS,
                &r.to_string(),
                &tag_record(manifest, meta::now()),
            )?;
            self.write_index(m)
        })
    }

    /// Removes the tag `r`. The image stays (dangling if this was its last tag).
    pub fn untag(&self, r: &Reference) -> Result<()> {
        meta::write(self, |m| {
            if !m.remove(meta::TAGS, &r.to_string())? {
                return Err(StoreError::TagNotFound {
                    reference: r.familiar(),
                });
            }
            self.write_index(m)
        })
    }

    /// docker rmi: given a tag, untag it and delete the image when no tag is left;
    /// given an id or digest, delete the image (with `force` even if several
    /// repositories name it, untagging them all). Blobs stay until GC.
    pub fn remove_image(&self, input: &str, force: bool) -> Result<Vec<Removed>> {
        meta::write(self, |m| {
            let manifest = resolve_str_in(m, input)?;
            let tags = tags_of(m, &manifest)?;
            // A platform of a kept image index stays recorded while the index lists it.
            let holder = m
                .all(meta::MANIFESTS)?
                .into_iter()
                .find(|(_, r)| r.manifests.iter().any(|c| c.manifest.digest == manifest))
                .map(|(key, _)| key);
            let by_tag = Reference::parse(input)
                .ok()
                .filter(|r| r.digest.is_none() && tags.contains(r));
            let mut out = Vec::new();
            match by_tag {
                Some(r) => {
                    m.remove(meta::TAGS, &r.to_string())?;
                    out.push(Removed::Untagged(r));
                    if tags.len() > 1 {
                        self.write_index(m)?;
                        return Ok(out);
                    }
                }
                None => {
                    if let Some(index) = holder {
                        return Err(StoreError::PartOfIndex {
                            manifest: manifest.to_string(),
                            index,
                        });
                    }
                    if tags.len() > 1 && !force {
                        let rec = m.get(meta::MANIFESTS, &manifest)?;
                        return Err(StoreError::ImageInUse {
                            id: rec
                                .map(|r| r.config.digest.short().to_string())
                                .unwrap_or_else(|| manifest.short().to_string()),
                            tags: tags
                                .iter()
                                .map(|t| t.familiar())
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                    for t in tags {
                        m.remove(meta::TAGS, &t.to_string())?;
                        out.push(Removed::Untagged(t));
                    }
                }
            }
            let record = match holder {
                Some(_) => None,
                None => m.get(meta::MANIFESTS, &manifest)?,
            };
            if let Some(rec) = record {
                m.remove(meta::MANIFESTS, &manifest)?;
                remove_index_children(m, &rec)?;
                out.push(Removed::Deleted(rec.config.digest));
            }
            self.write_index(m)?;
            Ok(out)
        })
    }
}

/// Removes the records of the platforms' manifests of `rec` (an image index just removed)
/// that no tag and no other recorded index names: they were part of that image.
fn remove_index_children(m: &Meta, rec: &ManifestRecord) -> Result<()> {
    if !rec.is_index() {
        return Ok(());
    }
    let tagged: std::collections::HashSet<Digest> = m
        .all(meta::TAGS)?
        .into_iter()
        .map(|(_, t)| t.manifest)
        .collect();
    let held: std::collections::HashSet<Digest> = m
        .all(meta::MANIFESTS)?
        .into_iter()
        .flat_map(|(_, r)| r.manifests)
        .map(|c| c.manifest.digest)
        .collect();
    for c in &rec.manifests {
        let d = &c.manifest.digest;
        if !tagged.contains(d) && !held.contains(d) {
            m.remove(meta::MANIFESTS, d)?;
        }
    }
    Ok(())
}

/// Another manifest already recorded with config `config`: the same image in another
/// form. `None` when `manifest` itself is recorded or no other has that config.
fn same_image(
    m: &Meta,
    manifest: &Digest,
    config: &Digest,
) -> Result<Option<(Digest, ManifestRecord)>> {
    if m.get(meta::MANIFESTS, manifest)?.is_some() {
        return Ok(None);
    }
    for (key, rec) in m.all(meta::MANIFESTS)? {
        if rec.config.digest == *config {
            let d = key
                .parse()
                .map_err(|e: crate::DigestError| StoreError::CorruptRecord {
                    tree: meta::MANIFESTS.name,
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
            return Ok(Some((d, rec)));
        }
    }
    Ok(None)
}

/// An image index blob's media type, size and entries.
struct IndexBlob {
    media_type: String,
    size: u64,
    children: Vec<IndexChild>,
}

/// Reads the entries of the image index `index` (`bytes`, parsed as `v`).
fn index_of(index: &Digest, bytes: &[u8], v: &serde_json::Value) -> Result<IndexBlob> {
    let invalid = |reason: String| StoreError::InvalidManifest {
        digest: index.clone(),
        reason,
    };
    let media_type = match v["mediaType"].as_str() {
        Some(t) if media_types::is_index(t) => t.to_string(),
        Some(t) => return Err(invalid(format!("{t} is not an image index"))),
        None => media_types::OCI_INDEX.to_string(),
    };
    let entries = v["manifests"]
        .as_array()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| invalid("lists no manifests".to_string()))?;
    let mut children = Vec::with_capacity(entries.len());
    for e in entries {
        let digest: Digest = e["digest"]
            .as_str()
            .ok_or_else(|| invalid("an entry has no digest".to_string()))?
            .parse()
            .map_err(|e: crate::DigestError| invalid(e.to_string()))?;
        let child_type = e["mediaType"].as_str().unwrap_or(media_types::OCI_MANIFEST);
        children.push(IndexChild {
            manifest: Descriptor {
                media_type: child_type.to_string(),
                digest,
                size: e["size"].as_u64().unwrap_or_default(),
            },
            platform: e.get("platform").cloned(),
        });
    }
    Ok(IndexBlob {
        media_type,
        size: bytes.len() as u64,
        children,
    })
}

/// Writes the records of one parsed image index: each platform's manifest not yet
/// recorded (untagged), then the index's own record, whose id (`config`) is its digest.
fn record_index(
    m: &Meta,
    index: &Digest,
    parsed: ParsedIndex,
    uncompressed: &BTreeMap<Digest, u64>,
    now: i64,
) -> Result<ManifestRecord> {
    let mut image_size = 0;
    let mut created: Option<String> = None;
    for (d, p) in parsed.images {
        let rec = match m.get(meta::MANIFESTS, &d)? {
            Some(rec) => rec,
            None => record_image(m, &d, p, uncompressed, now)?,
        };
        image_size += rec.image_size;
        created = created.max(rec.created);
    }
    let added_at = m
        .get(meta::MANIFESTS, index)?
        .map(|r| r.added_at)
        .unwrap_or(now);
    let rec = ManifestRecord {
        v: meta::RECORD_VERSION,
        media_type: parsed.media_type.clone(),
        size: parsed.size,
        config: Descriptor {
            media_type: parsed.media_type,
            digest: index.clone(),
            size: parsed.size,
        },
        layers: Vec::new(),
        created,
        added_at,
        image_size,
        manifests: parsed.children,
    };
    m.put(meta::MANIFESTS, index, &rec)?;
    Ok(rec)
}

/// Writes the layer records and the manifest record of one parsed image.
pub(crate) fn record_image(
    m: &Meta,
    manifest: &Digest,
    parsed: ParsedImage,
    uncompressed: &BTreeMap<Digest, u64>,
    now: i64,
) -> Result<ManifestRecord> {
    let mut image_size = 0;
    for l in &parsed.layers {
        let mut rec = m.get(meta::LAYERS, &l.diff_id)?.unwrap_or(LayerRecord {
            v: meta::RECORD_VERSION,
            blobs: Vec::new(),
            uncompressed_size: None,
        });
        if !rec.blobs.iter().any(|b| b.digest == l.blob.digest) {
            rec.blobs.push(l.blob.clone());
        }
        if rec.uncompressed_size.is_none() {
            rec.uncompressed_size = uncompressed.get(&l.diff_id).copied().or_else(|| {
                // A plain tar is its own uncompressed form.
                (l.blob.digest == l.diff_id).then_some(l.blob.size)
            });
        }
        image_size += rec.uncompressed_size.unwrap_or(l.blob.size);
        m.put(meta::LAYERS, &l.diff_id, &rec)?;
    }
    let added_at = m
        .get(meta::MANIFESTS, manifest)?
        .map(|r| r.added_at)
        .unwrap_or(now);
    let rec = ManifestRecord {
        v: meta::RECORD_VERSION,
        media_type: parsed.media_type,
        size: parsed.size,
        config: parsed.config,
        layers: parsed.layers,
        created: parsed.created,
        added_at,
        image_size,
        manifests: Vec::new(),
    };
    m.put(meta::MANIFESTS, manifest, &rec)?;
    Ok(rec)
}

fn check_taggable(r: &Reference) -> Result<()> {
    if r.digest.is_some() || r.tag.is_none() {
        return Err(StoreError::InvalidReference(crate::ReferenceError {
            input: r.familiar(),
            reason: "refusing to create a tag with a digest reference".to_string(),
        }));
    }
    Ok(())
}

fn tag_record(manifest: &Digest, now: i64) -> TagRecord {
    TagRecord {
        index_entry: None,
        v: meta::RECORD_VERSION,
        manifest: manifest.clone(),
        updated_at: now,
    }
}

fn tags_of(m: &Meta, manifest: &Digest) -> Result<Vec<Reference>> {
    let mut out: Vec<Reference> = m
        .all(meta::TAGS)?
        .into_iter()
        .filter(|(_, t)| t.manifest == *manifest)
        .filter_map(|(k, _)| Reference::parse(&k).ok())
        .collect();
    out.sort();
    Ok(out)
}

fn resolve_in(m: &Meta, r: &Reference) -> Result<Digest> {
    let not_found = || StoreError::ImageNotFound {
        reference: r.familiar(),
    };
    if let Some(d) = &r.digest {
        return match m.get(meta::MANIFESTS, d)? {
            Some(_) => Ok(d.clone()),
            None => Err(not_found()),
        };
    }
    m.get(meta::TAGS, &r.to_string())?
        .map(|t| t.manifest)
        .ok_or_else(not_found)
}

fn resolve_str_in(m: &Meta, s: &str) -> Result<Digest> {
    let not_found = || StoreError::ImageNotFound {
        reference: s.to_string(),
    };
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let is_hex = !hex.is_empty()
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex && hex.len() == 64 {
        let d = Digest::from_hex(hex)?;
        if m.get(meta::MANIFESTS, &d)?.is_some() {
            return Ok(d);
        }
        return by_id_prefix(m, hex)?.ok_or_else(not_found);
    }
    match Reference::parse(s) {
        Ok(r) => match resolve_in(m, &r) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == crate::ErrorKind::NotFound && is_hex && !s.contains(':') => {
                by_id_prefix(m, hex)?.ok_or(e)
            }
            Err(e) => Err(e),
        },
        Err(_) if is_hex => by_id_prefix(m, hex)?.ok_or_else(not_found),
        Err(e) => Err(e.into()),
    }
}

/// The newest image whose id (config digest) starts with `prefix`.
fn by_id_prefix(m: &Meta, prefix: &str) -> Result<Option<Digest>> {
    let mut found: Option<(Digest, Digest, i64)> = None; // (config, manifest, added)
    for (key, rec) in m.all(meta::MANIFESTS)? {
        if !rec.config.digest.hex().starts_with(prefix) {
            continue;
        }
        let manifest: Digest = key.parse()?;
        match &found {
            Some((config, _, _)) if *config != rec.config.digest => {
                return Err(StoreError::AmbiguousId {
                    prefix: prefix.to_string(),
                })
            }
            Some((_, _, added)) if *added >= rec.added_at => {}
            _ => found = Some((rec.config.digest.clone(), manifest, rec.added_at)),
        }
    }
    Ok(found.map(|(_, manifest, _)| manifest))
}
