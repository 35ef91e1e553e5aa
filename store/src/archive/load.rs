//! `load`: a docker-archive or an OCI archive (gzip or not) into the store.
//!
//! A multi-platform image in an OCI archive (an `index.json` entry that is an image
//! index) is loaded whole, as docker's containerd image store loads it: the index is one
//! image (its digest the image ID, the entry's name its tag) and every platform's manifest
//! is recorded too, as `Store::add_index` records them. When the archive lacks some
//! platform's blobs, or the index lists what is not an image (attestations), only this
//! host's platform is loaded (else the first listed), as a single-platform image: a
//! record of an index names every platform's blobs. `--platform` (`LoadPlatforms::Only`)
//! loads that platform's image alone and refuses an archive without it.
//!
//! One pass over the archive: every entry over 1 MiB streams into ingest while it
//! is hashed (and, when it is gzip or zstd, decompressed on the side to learn its
//! diff_id); smaller entries wait in memory until we know whether anything refers
//! to them (old archives carry `json` and `VERSION` files nobody needs). Then the
//! archive's own index (`manifest.json`, else `index.json`) is checked: every
//! `blobs/sha256/<hex>` name against its content, every layer's diff_id against
//! its config. Only then are the referenced blobs committed, recorded, and the
//! images and tags added in one metadata transaction: all or nothing. On failure the
//! blobs this load created (and nobody recorded meanwhile) are removed again. Last,
//! the images' layers are unpacked into their snapshots, as docker's layer store does
//! at load.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;

use super::tarcheck::TarCheck;
use crate::chunk_crc::{ChunkCrc32, ChunkCrcs};
use crate::compressed::gzip_media_type;
use crate::decompress::{self, plain_reader, PlainWriter};
use crate::digest::Sha256Writer;
use crate::error::{Result, StoreError};
use crate::manifest::build_manifest;
use crate::media_types::Compression;
use crate::oci_index::{CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION};
use crate::platform::Platform;
use crate::{media_types, meta, Descriptor, Digest, ImageRecord, NewImage, Reference, Store};

const SMALL: u64 = 1 << 20;
const SMALL_TOTAL: usize = 256 << 20;
/// A load that takes longer than this loses its protection from GC.
const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Which platforms of a multi-platform image (an image index) `load` keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LoadPlatforms {
    /// The whole index as one image, like docker's containerd image store; this host's
    /// platform alone when the archive lacks some platform's blobs (see the module doc).
    #[default]
    All,
    /// This host's platform's image (else the first listed), as a single-platform image.
    Host,
    /// Only this platform's image, as a single-platform image; an archive without it is
    /// refused (`docker load --platform`).
    Only(Platform),
}

/// What an `index.json` entry loads as (`Archive::image_of`).
enum EntryImage {
    /// The entry itself, one platform's manifest.
    Manifest(Digest),
    /// The entry itself, an image index loaded whole.
    Index(Digest),
    /// The manifest of the platform chosen from the entry's image index.
    Chosen(Digest),
}

impl EntryImage {
    fn digest(&self) -> &Digest {
        match self {
            EntryImage::Manifest(d) | EntryImage::Index(d) | EntryImage::Chosen(d) => d,
        }
    }
}

/// One image that `load` added, with the tags it now has from the archive.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub tags: Vec<Reference>,
    pub image: ImageRecord,
}

/// What an archive entry holds once read.
enum Content {
    Memory(Vec<u8>),
    /// Already committed to `blobs/`; `plain` is the uncompressed digest and size
    /// when the content was gzip or zstd (Err: not decodable), `None` when neither;
    /// then `chunk_crc32` are its chunk CRCs (recorded if it is a plain layer).
    Blob {
        digest: Digest,
        size: u64,
        compression: Compression,
        plain: Option<std::result::Result<(Digest, u64), Undecodable>>,
        chunk_crc32: Option<ChunkCrc32>,
    },
}

/// A blob ready to be referenced: digest, size, and its uncompressed form.
struct Resolved {
    digest: Digest,
    size: u64,
    /// What the content's first bytes say (archive entries carry no media type).
    compression: Compression,
    /// (diff_id, uncompressed size), or why it cannot be known.
    plain: std::result::Result<(Digest, u64), Undecodable>,
    chunk_crc32: Option<ChunkCrc32>,
}

/// Why a compressed entry's uncompressed digest cannot be known; kept with the entry (so
/// shared, not owned) until a layer names it.
#[derive(Debug, Clone, thiserror::Error)]
enum Undecodable {
    /// The decoder refused the bytes as they were read.
    #[error("{0}")]
    Decode(Arc<io::Error>),
    #[error("corrupt {compression} stream: {source}")]
    Corrupt {
        compression: Compression,
        source: Arc<io::Error>,
    },
}

struct Archive<'a> {
    store: &'a Store,
    /// Covers every blob from its commit until the images refer to it.
    lease: crate::Lease,
    source: String,
    platforms: LoadPlatforms,
    files: BTreeMap<String, Content>,
    links: BTreeMap<String, String>,
    memory: usize,
    created: Vec<Digest>,
    /// What the load records in `blobs`: each blob, and the chunk CRCs of uncompressed
    /// ones, which a push that gzips a plain layer checks it by (`chunk_crc`).
    committed: Vec<(Descriptor, Option<ChunkCrc32>)>,
}

impl Store {
    /// Loads every image in the archive read from `input` (of a multi-platform image,
    /// the `platforms` asked for); see the module doc.
    pub fn load(
        &self,
        input: impl Read,
        source: &str,
        platforms: &LoadPlatforms,
    ) -> Result<Vec<LoadedImage>> {
        let mut a = Archive {
            store: self,
            lease: self.lease(LEASE_TTL)?,
            source: source.to_string(),
            platforms: platforms.clone(),
            files: BTreeMap::new(),
            links: BTreeMap::new(),
            memory: 0,
            created: Vec::new(),
            committed: Vec::new(),
        };
        let result = a.run(input);
        if result.is_err() {
            a.remove_created();
        }
        result
    }
}

impl Archive<'_> {
    fn bad(&self, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidArchive {
            path: self.source.clone().into(),
            reason: reason.into(),
        }
    }

    fn run(&mut self, input: impl Read) -> Result<Vec<LoadedImage>> {
        let mut input = BufReader::with_capacity(1 << 20, input);
        let head = input
            .fill_buf()
            .map_err(StoreError::io("reading", &self.source))?;
        if head.is_empty() {
            return Err(self.bad("empty input: expected a docker-archive or OCI archive"));
        }
        // Like `docker load`: the archive itself may be gzip or zstd compressed.
        let compression = decompress::sniff(head);
        let plain =
            plain_reader(compression, input).map_err(StoreError::io("reading", &self.source))?;
        self.read_entries(plain)?;
        let images = if self.files.contains_key("manifest.json") {
            self.docker_images()?
        } else if self.files.contains_key("index.json") {
            self.oci_images()?
        } else {
            return Err(self
                .bad("neither manifest.json (docker-archive) nor index.json (OCI archive) found"));
        };
        // Chunk CRCs are kept only for the plain layers, the blobs a push gzips.
        let blobs = self.committed.iter().map(|(d, crcs)| {
            let crcs = crcs
                .clone()
                .filter(|_| gzip_media_type(&d.media_type).is_some());
            (d, crcs)
        });
        meta::record_blobs_with(self.store, blobs)?;
        let records = self.store.add_images(&images)?;
        // Like `docker load`, the images are ready to run: their layers are unpacked now,
        // not by the first build that uses them (the image records keep the snapshots). A
        // layer that cannot be unpacked here (e.g. device nodes without privileges) is
        // unpacked by a build that needs it, which reports why. Of an image index, only
        // this host's platform is unpacked, as docker does.
        for record in &records {
            if let Some(manifest) = record.manifest_for(&Platform::host()) {
                let _ = self.store.ensure_snapshots(&self.lease, manifest);
            }
        }
        Ok(images
            .into_iter()
            .zip(records)
            .map(|(i, image)| LoadedImage {
                tags: i.tags,
                image,
            })
            .collect())
    }

    fn read_entries(&mut self, plain: impl Read) -> Result<()> {
        let mut tar = tar::Archive::new(plain);
        let entries = tar
            .entries()
            .map_err(|e| self.bad(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.bad(format!("reading tar: {e}")))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path =
                normalize(&raw).ok_or_else(|| self.bad(format!("unsafe entry name {raw:?}")))?;
            use tar::EntryType as T;
            match entry.header().entry_type() {
                T::Regular | T::Continuous => {
                    let content = self.read_file(&mut entry, &path)?;
                    self.check_blob_name(&path, &content)?;
                    self.files.insert(path, content);
                }
                T::Symlink | T::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let joined =
                        if entry.header().entry_type() == T::Symlink && !target.starts_with('/') {
                            match path.rsplit_once('/') {
                                Some((dir, _)) => format!("{dir}/{target}"),
                                None => target.clone(),
                            }
                        } else {
                            target.clone()
                        };
                    let resolved = normalize(&joined).ok_or_else(|| {
                        self.bad(format!(
                            "link {raw:?} points outside the archive: {target:?}"
                        ))
                    })?;
                    self.links.insert(path, resolved);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn read_file<R: Read>(&mut self, entry: &mut tar::Entry<R>, path: &str) -> Result<Content> {
        let size = entry.header().size().unwrap_or(0);
        if size <= SMALL {
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| self.bad(format!("reading {path}: {e}")))?;
            self.memory += buf.len();
            if self.memory > SMALL_TOTAL {
                return Err(self.bad(
                    "more than 256 MiB of small entries; this does not look like an image archive",
                ));
            }
            return Ok(Content::Memory(buf));
        }
        let mut w = self.store.writer(&self.lease)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut compression = None;
        // Decompressed on the side to learn the diff_id; the first decode error is
        // kept (and decoding stops) but the entry is still stored as it came.
        let mut decoder: Option<PlainWriter<Sha256Writer<io::Sink>>> = None;
        let mut decode_err: Option<Undecodable> = None;
        let mut crcs: Option<ChunkCrcs> = None;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.bad(format!("reading {path}: {e}"))),
            };
            if compression.is_none() {
                let c = decompress::sniff(&buf[..n]);
                compression = Some(c);
                if c != Compression::None {
                    match PlainWriter::new(c, Sha256Writer::new(io::sink())) {
                        Ok(d) => decoder = Some(d),
                        Err(e) => decode_err = Some(Undecodable::Decode(Arc::new(e))),
                    }
                } else {
                    crcs = Some(ChunkCrcs::new());
                }
            }
            if let Some(d) = decoder.as_mut() {
                if let Err(e) = d.write_all(&buf[..n]) {
                    decode_err = Some(Undecodable::Decode(Arc::new(e)));
                    decoder = None;
                }
            }
            if let Some(crcs) = crcs.as_mut() {
                crcs.update(&buf[..n]);
            }
            w.write_all(&buf[..n])
                .map_err(StoreError::io("writing", w.ingest_path().to_path_buf()))?;
        }
        let compression = compression.unwrap_or(Compression::None);
        let plain = match (decoder, decode_err) {
            (Some(d), _) => Some(match d.finish() {
                Ok(h) => {
                    let (_, d, n) = h.finish();
                    Ok((d, n))
                }
                Err(e) => Err(Undecodable::Decode(Arc::new(e))),
            }),
            (None, Some(e)) => Some(Err(e)),
            (None, None) => None,
        };
        debug_assert!((compression != Compression::None) == plain.is_some());
        let (desc, created) = w.commit_inner(Some(size), None)?;
        if created {
            self.created.push(desc.digest.clone());
        }
        Ok(Content::Blob {
            digest: desc.digest,
            size,
            compression,
            plain,
            chunk_crc32: crcs.map(ChunkCrcs::finish),
        })
    }

    /// `blobs/sha256/<hex>` must hold content with that digest.
    fn check_blob_name(&self, path: &str, content: &Content) -> Result<()> {
        let Some(hex) = path.strip_prefix("blobs/sha256/") else {
            return Ok(());
        };
        let actual = match content {
            Content::Memory(b) => Digest::sha256_of(b),
            Content::Blob { digest, .. } => digest.clone(),
        };
        if actual.hex() != hex {
            return Err(self.bad(format!("{path} holds content with digest {actual}")));
        }
        Ok(())
    }

    /// Follows links to the file entry at `path`.
    fn lookup(&self, path: &str) -> Result<(&str, &Content)> {
        let mut p = normalize(path).ok_or_else(|| self.bad(format!("unsafe path {path:?}")))?;
        for _ in 0..16 {
            if let Some((k, c)) = self.files.get_key_value(&p) {
                return Ok((k.as_str(), c));
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => return Err(self.bad(format!("{path} is missing from the archive"))),
            }
        }
        Err(self.bad(format!("{path}: too many levels of links")))
    }

    fn bytes(&self, path: &str) -> Result<Vec<u8>> {
        match self.lookup(path)?.1 {
            Content::Memory(b) => Ok(b.clone()),
            Content::Blob { digest, .. } => self.store.read_blob(digest),
        }
    }

    /// Commits the entry at `path` (if still in memory) as a blob of `media_type`.
    fn resolve(&mut self, path: &str, media_type: &str) -> Result<Resolved> {
        let (key, content) = self.lookup(path)?;
        let key = key.to_string();
        let resolved = match content {
            Content::Blob {
                digest,
                size,
                compression,
                plain,
                chunk_crc32,
            } => Resolved {
                digest: digest.clone(),
                size: *size,
                compression: *compression,
                plain: match plain {
                    None => Ok((digest.clone(), *size)),
                    Some(p) => p.clone(),
                },
                chunk_crc32: chunk_crc32.clone(),
            },
            Content::Memory(bytes) => {
                let bytes = bytes.clone();
                let compression = decompress::sniff(&bytes);
                let plain = if compression == Compression::None {
                    Ok((Digest::sha256_of(&bytes), bytes.len() as u64))
                } else {
                    let mut out = Sha256Writer::new(io::sink());
                    match plain_reader(compression, &bytes[..])
                        .and_then(|mut r| io::copy(&mut r, &mut out))
                    {
                        Ok(_) => {
                            let (_, d, n) = out.finish();
                            Ok((d, n))
                        }
                        Err(e) => Err(Undecodable::Corrupt {
                            compression,
                            source: Arc::new(e),
                        }),
                    }
                };
                let chunk_crc32 = (compression == Compression::None).then(|| ChunkCrcs::of(&bytes));
                let mut w = self.store.writer(&self.lease)?;
                w.write_all(&bytes)
                    .map_err(StoreError::io("writing", w.ingest_path().to_path_buf()))?;
                let (desc, created) = w.commit_inner(Some(bytes.len() as u64), None)?;
                if created {
                    self.created.push(desc.digest.clone());
                }
                self.files.insert(
                    key,
                    Content::Blob {
                        digest: desc.digest.clone(),
                        size: desc.size,
                        compression,
                        plain: (compression != Compression::None).then(|| plain.clone()),
                        chunk_crc32: chunk_crc32.clone(),
                    },
                );
                Resolved {
                    digest: desc.digest,
                    size: desc.size,
                    compression,
                    plain,
                    chunk_crc32,
                }
            }
        };
        let blob = Descriptor {
            media_type: media_type.to_string(),
            digest: resolved.digest.clone(),
            size: resolved.size,
        };
        self.committed.push((blob, resolved.chunk_crc32.clone()));
        Ok(resolved)
    }

    /// Checks layer `i` (at `path`) against the config's diff_id; returns its
    /// descriptor (plain tar, gzip or zstd) and uncompressed size. `media_type` is
    /// the manifest's (OCI archive); a docker-archive names none, so the content's
    /// compression chooses it (docker's own `load` takes zstd layers there too).
    fn layer(
        &mut self,
        path: &str,
        i: usize,
        diff_id: &Digest,
        media_type: Option<&str>,
    ) -> Result<(Descriptor, u64)> {
        let r = self.resolve(path, media_type.unwrap_or(media_types::OCI_LAYER_TAR))?;
        // A media type that names another compression than the content has would
        // load fine and fail at the first unpack: refuse it here.
        if let Some(declared) = media_type.and_then(media_types::layer_compression) {
            if declared != r.compression {
                return Err(self.bad(format!(
                    "layer {i} ({path}) is {} but its media type {} says {declared}",
                    r.compression,
                    media_type.unwrap_or_default()
                )));
            }
        }
        let (plain, size) = r
            .plain
            .clone()
            .map_err(|e| self.bad(format!("layer {i} ({path}): {e}")))?;
        if plain != *diff_id {
            return Err(self.bad(format!(
                "layer {i} ({path}) has uncompressed digest {plain} but the config says diff_id {diff_id}"
            )));
        }
        self.check_entries(path, &r)?;
        let media_type = match media_type {
            Some(m) => m.to_string(),
            None => match r.compression {
                Compression::None => media_types::OCI_LAYER_TAR,
                Compression::Gzip => media_types::OCI_LAYER_GZIP,
                Compression::Zstd => media_types::OCI_LAYER_ZSTD,
            }
            .to_string(),
        };
        if let Some((last, _)) = self.committed.last_mut() {
            last.media_type = media_type.clone();
        }
        Ok((
            Descriptor {
                media_type,
                digest: r.digest,
                size: r.size,
            },
            size,
        ))
    }

    /// Every entry of the layer passes the checks extraction makes: a layer that could
    /// not be unpacked is refused now, not at the first build, and never enters the store.
    fn check_entries(&self, path: &str, r: &Resolved) -> Result<()> {
        let blob = self.store.blob_path(&r.digest);
        let file = std::fs::File::open(&blob).map_err(StoreError::io("reading", &blob))?;
        let mut check = TarCheck::default();
        plain_reader(r.compression, BufReader::new(file))
            .and_then(|mut plain| io::copy(&mut plain, &mut check))
            .map_err(StoreError::io("reading", &blob))?;
        if let Some((entry, reason)) = check.unsafe_entry() {
            return Err(StoreError::UnsafeEntry {
                layer: format!("{} ({path})", self.source),
                entry: entry.clone(),
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    fn docker_images(&mut self) -> Result<Vec<NewImage>> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Item {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let bytes = self.bytes("manifest.json")?;
        let items: Vec<Item> =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("manifest.json: {e}")))?;
        if items.is_empty() {
            return Err(self.bad("manifest.json lists no images"));
        }
        let mut out = Vec::new();
        for item in items {
            let config_bytes = self.bytes(&item.config)?;
            let config_digest = Digest::sha256_of(&config_bytes);
            // Legacy archives name the config `<hex>.json`: check it too.
            if let Some(hex) = item.config.strip_suffix(".json") {
                if hex.len() == 64 && hex != config_digest.hex() {
                    return Err(self.bad(format!(
                        "{} holds content with digest {config_digest}",
                        item.config
                    )));
                }
            }
            self.check_platform(&item.config, &config_bytes)?;
            let diff_ids = self.diff_ids(&item.config, &config_bytes)?;
            if diff_ids.len() != item.layers.len() {
                return Err(self.bad(format!(
                    "manifest.json lists {} layers but config {} has {} diff_ids",
                    item.layers.len(),
                    item.config,
                    diff_ids.len()
                )));
            }
            let config = self.resolve(&item.config, media_types::OCI_CONFIG)?;
            let mut layers = Vec::new();
            let mut uncompressed = BTreeMap::new();
            for (i, (path, diff_id)) in item.layers.iter().zip(&diff_ids).enumerate() {
                let (desc, size) = self.layer(path, i, diff_id, None)?;
                uncompressed.insert(diff_id.clone(), size);
                layers.push(desc);
            }
            let config_desc = Descriptor {
                media_type: media_types::OCI_CONFIG.to_string(),
                digest: config.digest,
                size: config.size,
            };
            let manifest = build_manifest(&config_desc, &layers);
            let manifest_desc = self.commit_bytes(&manifest, media_types::OCI_MANIFEST)?;
            let tags = item
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    Reference::parse(t)
                        .map_err(|e| self.bad(format!("manifest.json RepoTags: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(NewImage {
                manifest: manifest_desc.digest,
                tags,
                uncompressed,
            });
        }
        Ok(out)
    }

    fn oci_images(&mut self) -> Result<Vec<NewImage>> {
        let index = self.json("index.json")?;
        let descs = index["manifests"]
            .as_array()
            .cloned()
            .ok_or_else(|| self.bad("index.json has no manifests"))?;
        let mut by_manifest: BTreeMap<Digest, NewImage> = BTreeMap::new();
        for d in descs {
            let annotations = &d["annotations"];
            let name = annotations[CONTAINERD_NAME_ANNOTATION]
                .as_str()
                .or_else(|| {
                    annotations[REF_NAME_ANNOTATION]
                        .as_str()
                        .filter(|n| n.contains(['/', ':']))
                });
            let tag = name
                .map(|n| Reference::parse(n).map_err(|e| self.bad(format!("index.json: {e}"))))
                .transpose()?;
            let entry = self.image_of(&d)?;
            let img = match by_manifest.get_mut(entry.digest()) {
                Some(img) => img,
                None => {
                    let img = match &entry {
                        EntryImage::Index(d) => self.oci_index(d)?,
                        EntryImage::Manifest(d) => {
                            self.check_manifest_platform(d)?;
                            self.oci_image(d)?
                        }
                        EntryImage::Chosen(d) => self.oci_image(d)?,
                    };
                    by_manifest.entry(entry.digest().clone()).or_insert(img)
                }
            };
            if let Some(t) = tag {
                if !img.tags.contains(&t) {
                    img.tags.push(t);
                }
            }
        }
        if by_manifest.is_empty() {
            return Err(self.bad("index.json lists no images"));
        }
        Ok(by_manifest.into_values().collect())
    }

    /// What an `index.json` entry loads as: itself when it is one platform's manifest or
    /// an image index loaded whole, else the manifest of the platform chosen
    /// (`LoadPlatforms`).
    fn image_of(&self, d: &serde_json::Value) -> Result<EntryImage> {
        let digest = self.digest_in(d, "index.json")?;
        let mt = d["mediaType"].as_str().unwrap_or_default();
        if !media_types::is_index(mt) {
            return Ok(EntryImage::Manifest(digest));
        }
        let wanted = match &self.platforms {
            LoadPlatforms::All if self.is_whole(&digest)? => return Ok(EntryImage::Index(digest)),
            LoadPlatforms::All | LoadPlatforms::Host => None,
            LoadPlatforms::Only(p) => Some(p.clone()),
        };
        self.manifest_of(&digest, wanted.as_ref(), 0)
            .map(EntryImage::Chosen)
    }

    /// The JSON file at `path` in the archive (followed through links).
    fn json(&self, path: &str) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.bytes(path)?).map_err(|e| self.bad(format!("{path}: {e}")))
    }

    fn digest_in(&self, d: &serde_json::Value, path: &str) -> Result<Digest> {
        d["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| self.bad(format!("{path}: {e}")))
    }

    /// The entries of the image index `digest`.
    fn index_entries(&self, digest: &Digest) -> Result<Vec<serde_json::Value>> {
        let index = self.json(&blob_path(digest))?;
        Ok(index["manifests"].as_array().cloned().unwrap_or_default())
    }

    /// Whether the image index `digest` can be loaded as one image: every entry is an
    /// image's manifest (no nested index, no attestation) whose config and layers are all
    /// in the archive.
    fn is_whole(&self, digest: &Digest) -> Result<bool> {
        let entries = self.index_entries(digest)?;
        if entries.is_empty() {
            return Ok(false);
        }
        let has = |d: &Digest| self.lookup(&blob_path(d)).is_ok();
        for e in &entries {
            let mt = e["mediaType"].as_str().unwrap_or(media_types::OCI_MANIFEST);
            if !media_types::is_manifest(mt)
                || !e["annotations"]["vnd.docker.reference.type"].is_null()
            {
                return Ok(false);
            }
            let manifest = self.digest_in(e, &format!("index {digest}"))?;
            if !has(&manifest) {
                return Ok(false);
            }
            let path = blob_path(&manifest);
            let m = self.json(&path)?;
            let layers = m["layers"].as_array().cloned().unwrap_or_default();
            for blob in std::iter::once(&m["config"]).chain(&layers) {
                if !has(&self.digest_in(blob, &path)?) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The single-platform manifest of the image index `digest`: the entry for `wanted`
    /// (an error when there is none), else this host's entry or the first.
    fn manifest_of(
        &self,
        digest: &Digest,
        wanted: Option<&Platform>,
        depth: usize,
    ) -> Result<Digest> {
        if depth > 4 {
            return Err(self.bad("indexes nested too deeply"));
        }
        let list = self.index_entries(digest)?;
        let runs_on = |p: &Platform, m: &serde_json::Value| p.matches_json(&m["platform"]);
        let chosen = match wanted {
            Some(p) => list.iter().find(|m| runs_on(p, m)).ok_or_else(|| {
                let listed: Vec<String> = list
                    .iter()
                    .filter_map(|m| Platform::from_json(&m["platform"]))
                    .filter(|p| p.os != "unknown")
                    .map(|p| p.to_string())
                    .collect();
                StoreError::PlatformNotInArchive {
                    platform: p.to_string(),
                    path: self.source.clone().into(),
                    listed: listed.join(", "),
                }
            })?,
            None => list
                .iter()
                .find(|m| runs_on(&Platform::host(), m))
                .or_else(|| list.first())
                .ok_or_else(|| self.bad(format!("index {digest} is empty")))?,
        }
        .clone();
        let child = self.digest_in(&chosen, &format!("index {digest}"))?;
        match media_types::is_index(chosen["mediaType"].as_str().unwrap_or_default()) {
            true => self.manifest_of(&child, wanted, depth + 1),
            false => Ok(child),
        }
    }

    /// With `LoadPlatforms::Only`, one platform's manifest loaded for itself must be of
    /// that platform, as docker checks the images it loaded.
    fn check_manifest_platform(&self, manifest: &Digest) -> Result<()> {
        if !matches!(self.platforms, LoadPlatforms::Only(_)) {
            return Ok(());
        }
        let path = blob_path(manifest);
        let m = self.json(&path)?;
        let config = blob_path(&self.digest_in(&m["config"], &path)?);
        self.check_platform(&config, &self.bytes(&config)?)
    }

    /// With `LoadPlatforms::Only`, the image config at `path` must name that platform.
    fn check_platform(&self, path: &str, config: &[u8]) -> Result<()> {
        let LoadPlatforms::Only(wanted) = &self.platforms else {
            return Ok(());
        };
        let v: serde_json::Value =
            serde_json::from_slice(config).map_err(|e| self.bad(format!("config {path}: {e}")))?;
        if !wanted.matches_json(&v) {
            return Err(StoreError::PlatformNotInArchive {
                platform: wanted.to_string(),
                path: self.source.clone().into(),
                listed: Platform::from_json(&v)
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The image index `index` loaded whole: every platform's image checked and its
    /// blobs committed (`oci_image`), then the index blob itself.
    fn oci_index(&mut self, index: &Digest) -> Result<NewImage> {
        let mut uncompressed = BTreeMap::new();
        for e in self.index_entries(index)? {
            let manifest = self.digest_in(&e, &format!("index {index}"))?;
            uncompressed.extend(self.oci_image(&manifest)?.uncompressed);
        }
        let path = blob_path(index);
        let mt = self.json(&path)?["mediaType"]
            .as_str()
            .unwrap_or(media_types::OCI_INDEX)
            .to_string();
        self.resolve(&path, &mt)?;
        Ok(NewImage {
            manifest: index.clone(),
            tags: Vec::new(),
            uncompressed,
        })
    }

    fn oci_image(&mut self, manifest: &Digest) -> Result<NewImage> {
        let path = blob_path(manifest);
        let m = self.json(&path)?;
        let mt = m["mediaType"]
            .as_str()
            .unwrap_or(media_types::OCI_MANIFEST)
            .to_string();
        let desc = |v: &serde_json::Value| -> Result<(String, Digest, u64)> {
            let digest = self.digest_in(v, &path)?;
            Ok((
                v["mediaType"].as_str().unwrap_or_default().to_string(),
                digest,
                v["size"].as_u64().unwrap_or(0),
            ))
        };
        let (cfg_mt, cfg_digest, _) = desc(&m["config"])?;
        let layer_descs = m["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(desc)
            .collect::<Result<Vec<_>>>()?;
        let cfg_path = blob_path(&cfg_digest);
        let diff_ids = self.diff_ids(&cfg_path, &self.bytes(&cfg_path)?)?;
        if diff_ids.len() != layer_descs.len() {
            return Err(self.bad(format!(
                "manifest {manifest} has {} layers but its config has {} diff_ids",
                layer_descs.len(),
                diff_ids.len()
            )));
        }
        self.resolve(&cfg_path, &cfg_mt)?;
        let mut uncompressed = BTreeMap::new();
        for (i, ((lmt, ld, lsize), diff_id)) in layer_descs.iter().zip(&diff_ids).enumerate() {
            let lpath = blob_path(ld);
            let (got, size) = self.layer(&lpath, i, diff_id, Some(lmt))?;
            if got.size != *lsize {
                return Err(self.bad(format!(
                    "{lpath}: manifest says {lsize} bytes, archive has {}",
                    got.size
                )));
            }
            uncompressed.insert(diff_id.clone(), size);
        }
        self.resolve(&path, &mt)?;
        Ok(NewImage {
            manifest: manifest.clone(),
            tags: Vec::new(),
            uncompressed,
        })
    }

    fn diff_ids(&self, path: &str, config: &[u8]) -> Result<Vec<Digest>> {
        let v: serde_json::Value =
            serde_json::from_slice(config).map_err(|e| self.bad(format!("config {path}: {e}")))?;
        v.pointer("/rootfs/diff_ids")
            .and_then(|d| d.as_array())
            .ok_or_else(|| self.bad(format!("config {path} has no rootfs.diff_ids")))?
            .iter()
            .map(|d| {
                d.as_str()
                    .unwrap_or_default()
                    .parse::<Digest>()
                    .map_err(|e| self.bad(format!("config {path}: {e}")))
            })
            .collect()
    }

    fn commit_bytes(&mut self, bytes: &[u8], media_type: &str) -> Result<Descriptor> {
        let mut w = self.store.writer(&self.lease)?.with_media_type(media_type);
        w.write_all(bytes)
            .map_err(StoreError::io("writing", w.ingest_path().to_path_buf()))?;
        let (desc, created) = w.commit_inner(Some(bytes.len() as u64), None)?;
        if created {
            self.created.push(desc.digest.clone());
        }
        self.committed.push((desc.clone(), None));
        Ok(desc)
    }

    /// Best effort after a failure: remove blobs this load created that no metadata
    /// record names (checked under the lock, so a concurrent writer that recorded
    /// the same blob keeps it).
    fn remove_created(&self) {
        if self.created.is_empty() {
            return;
        }
        let _ = meta::write(self.store, |m| {
            for d in &self.created {
                if m.get(meta::BLOBS, d)?.is_none() {
                    let _ = std::fs::remove_file(self.store.blob_path(d));
                }
            }
            Ok(())
        });
    }
}

/// The archive path of the blob `digest`: `blobs/sha256/<hex>`.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// `./a//b/` → `a/b`; None for absolute names or `..` that leaves the archive.
fn normalize(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    if p.starts_with('/') {
        return None;
    }
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}
