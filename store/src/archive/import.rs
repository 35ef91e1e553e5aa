//! `import`: a root filesystem tar (plain or gzip) becomes a one-layer image, like
//! `docker import`. One pass over the input: decompress if needed, check the tar
//! framing, hash the plain tar (the diff_id), gzip it on two cores into ingest
//! (the hash of the gzip is the blob digest). The layer is then unpacked into its
//! snapshot, as docker's layer store does at import.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};

use super::gzip::{ParallelGzWriter, WriteMembers};
use super::tarcheck::TarCheck;
use crate::digest::Sha256Writer;
use crate::error::{Result, StoreError};
use crate::manifest::build_manifest;
use crate::media_types::Compression;
use crate::platform::Platform;
use crate::{media_types, Digest, ImageRecord, Reference, Store};

/// What `import` writes besides the layer.
#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// Tag for the new image; `None` leaves it dangling (like `docker import FILE`).
    pub reference: Option<Reference>,
    /// History comment (`-m`).
    pub message: Option<String>,
    /// The image config's `config` object (Cmd, Env, WorkingDir, ... from `-c`).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Where the tar came from, for the history entry (a path or "-").
    pub source: String,
    /// `--platform`: the os/architecture/variant the config names; `None` is this host's.
    pub platform: Option<Platform>,
}

/// RFC 3339 UTC now, with nanoseconds like docker.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Store {
    /// Imports `input` as a one-layer image; see the module doc.
    pub fn import(&self, input: impl Read, opts: &ImportOptions) -> Result<ImageRecord> {
        let source = if opts.source.is_empty() {
            "-"
        } else {
            &opts.source
        };
        let bad = |reason: String| StoreError::InvalidArchive {
            path: source.into(),
            reason,
        };
        let mut input = BufReader::with_capacity(1 << 20, input);
        let head = input
            .fill_buf()
            .map_err(StoreError::io("reading", source))?;
        // Like `docker import`: the tar may come gzip or zstd compressed.
        let compression = crate::decompress::sniff(head);
        let mut plain = crate::decompress::plain_reader(compression, input)
            .map_err(StoreError::io("reading", source))?;
        // Covers the layer, config and manifest until the image record refers to them.
        let lease = self.lease(std::time::Duration::from_secs(6 * 3600))?;
        let blob = self
            .writer(&lease)?
            .with_media_type(media_types::OCI_LAYER_GZIP);
        let mut gz = Sha256Writer::new(ParallelGzWriter::new(WriteMembers(blob)));
        let mut check = TarCheck::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match plain.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if compression == Compression::Gzip => {
                    return Err(bad(format!("gzip stream: {e}")))
                }
                Err(e) if compression == Compression::Zstd => {
                    return Err(bad(format!("zstd stream: {e}")))
                }
                Err(e) => return Err(StoreError::io("reading", source)(e)),
            };
            check.feed(&buf[..n]);
            gz.write_all(&buf[..n])
                .map_err(StoreError::io("writing layer", self.layout().ingest_dir()))?;
        }
        check
            .finish()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        if let Some((entry, reason)) = check.unsafe_entry() {
            return Err(StoreError::UnsafeEntry {
                layer: source.to_string(),
                entry: entry.clone(),
                reason: reason.clone(),
            });
        }
        let (gzw, diff_id, tar_size) = gz.finish();
        let WriteMembers(blob) = gzw
            .finish()
            .map_err(StoreError::io("writing layer", self.layout().ingest_dir()))?;
        let layer = blob.commit(None, None)?;

        let created = now_rfc3339();
        let mut history = serde_json::json!({
            "created": created,
            "created_by": format!("strata import {source}"),
        });
        if let Some(m) = &opts.message {
            history["comment"] = m.clone().into();
        }
        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let mut config = serde_json::json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "created": created,
            "config": opts.config,
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [history],
        });
        if let Some(v) = &platform.variant {
            config["variant"] = v.clone().into();
        }
        let config_bytes = serde_json::to_vec(&config).expect("config serializes");
        let config_desc = self.put_blob(&lease, &config_bytes, media_types::OCI_CONFIG)?;
        let manifest = build_manifest(&config_desc, &[layer]);
        let manifest_desc = self.put_blob(&lease, &manifest, media_types::OCI_MANIFEST)?;
        let sizes = BTreeMap::from([(diff_id, tar_size)]);
        let record =
            self.add_image_with_sizes(&manifest_desc.digest, opts.reference.as_ref(), &sizes)?;
        // Like `docker import`, the image is ready to run: its layer is unpacked now, not
        // by the first build that uses it (the record keeps the snapshot). If it cannot be
        // unpacked here (e.g. device nodes without privileges), a build that needs it
        // unpacks it and reports why.
        let _ = self.ensure_snapshots(&lease, &manifest_desc.digest);
        Ok(record)
    }
}

/// Convenience for tests and tools: the diff_id of a plain tar in memory.
pub fn diff_id_of(tar: &[u8]) -> Digest {
    Digest::sha256_of(tar)
}
