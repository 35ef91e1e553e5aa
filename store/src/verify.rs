//! `system verify`: re-hash every blob and check that every recorded reference
//! resolves (a cache record's unwritten layer: its snapshot is there; its bytes are
//! checked against the recorded diff_id when the blob is made, docs/design.md §4.8).
//! Hashes outside the metadata lock, then reads the metadata in one short transaction.
//!
//! A prune may run beside it: a blob listed in step 1 can be gone by the time it is
//! opened. That alone is not a fault; step 2, under the lock, reports every record that
//! still names a blob which is not there, so a vanished blob counts only if something
//! still references it.

use std::fs;
use std::io::{BufReader, Read};

use crate::digest::Sha256Reader;
use crate::error::{Result, StoreError};
use crate::{meta, Digest, Reference, Store};

/// One thing wrong, named so a user can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// e.g. `blob sha256:…`, `tag docker.io/library/busybox:latest`
    pub object: String,
    pub problem: String,
}

#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub blobs: u64,
    pub bytes: u64,
    pub images: u64,
    pub tags: u64,
    pub faults: Vec<Fault>,
}

impl Store {
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let fault = |object: String, problem: String| Fault { object, problem };
        let mut faults = Vec::new();

        // 1. Every blob's content matches its name.
        let dir = self.layout().blobs_dir();
        let entries = fs::read_dir(&dir).map_err(StoreError::io("listing", &dir))?;
        for e in entries {
            let e = e.map_err(StoreError::io("listing", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let Ok(want) = Digest::from_hex(&name) else {
                faults.push(fault(
                    format!("file {}", path.display()),
                    "is not named by a sha256 digest".into(),
                ));
                continue;
            };
            let file = match fs::File::open(&path) {
                Ok(f) => f,
                // Removed since the listing (a prune); step 2 checks its references.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    faults.push(fault(
                        format!("blob {want}"),
                        format!("cannot be read: {err}"),
                    ));
                    continue;
                }
            };
            let mut r = Sha256Reader::new(BufReader::with_capacity(1 << 20, file));
            let mut buf = vec![0u8; 1 << 20];
            let read = loop {
                match r.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(_) => {}
                    Err(err) => break Err(err),
                }
            };
            if let Err(err) = read {
                faults.push(fault(
                    format!("blob {want}"),
                    format!("cannot be read: {err}"),
                ));
                continue;
            }
            let (_, got, n) = r.finish();
            report.blobs += 1;
            report.bytes += n;
            if got != want {
                faults.push(fault(format!("blob {want}"), format!("content hashes to {got}; it is corrupt: remove the image(s) using it and pull or load them again")));
            }
        }

        // 2. Every record names things that exist.
        let missing = |d: &Digest| !self.has_blob(d);
        meta::read(self, |m| {
            for (key, t) in m.all(meta::TAGS)? {
                report.tags += 1;
                if Reference::parse(&key).is_err() {
                    faults.push(fault(
                        format!("tag {key}"),
                        "is not a valid reference".into(),
                    ));
                }
                if m.get(meta::MANIFESTS, &t.manifest)?.is_none() {
                    faults.push(fault(
                        format!("tag {key}"),
                        format!("names manifest {} which is not recorded", t.manifest),
                    ));
                }
            }
            for (key, rec) in m.all(meta::MANIFESTS)? {
                report.images += 1;
                let Ok(d) = key.parse::<Digest>() else {
                    faults.push(fault(
                        format!("manifest record {key}"),
                        "key is not a digest".into(),
                    ));
                    continue;
                };
                if missing(&d) {
                    faults.push(fault(
                        format!("image {d}"),
                        "manifest blob is missing".into(),
                    ));
                }
                if missing(&rec.config.digest) {
                    faults.push(fault(
                        format!("image {d}"),
                        format!("config blob {} is missing", rec.config.digest),
                    ));
                }
                for l in &rec.layers {
                    if missing(&l.blob.digest) {
                        faults.push(fault(
                            format!("image {d}"),
                            format!("layer blob {} is missing", l.blob.digest),
                        ));
                    }
                }
            }
            for (key, rec) in m.all(meta::LAYERS)? {
                for b in &rec.blobs {
                    if missing(&b.digest) {
                        faults.push(fault(
                            format!("layer {key}"),
                            format!("blob {} is missing", b.digest),
                        ));
                    }
                }
            }
            for (key, _) in m.all(meta::BLOBS)? {
                if key.parse::<Digest>().map(|d| missing(&d)).unwrap_or(true) {
                    faults.push(fault(
                        format!("blob {key}"),
                        "is recorded but missing from blobs/sha256".into(),
                    ));
                }
            }
            for (key, rec) in m.all(meta::CACHE)? {
                if let Some(l) = &rec.layer {
                    if missing(&l.digest) {
                        faults.push(fault(
                            format!("build cache {key}"),
                            format!("layer blob {} is missing", l.digest),
                        ));
                    }
                }
                // A layer not written yet lives only in its snapshot (docs/design.md §4.8).
                if rec.is_unwritten() {
                    match &rec.chain_id {
                        Some(chain) if self.snapshot_dir(chain).is_dir() => {}
                        Some(chain) => faults.push(fault(
                            format!("build cache {key}"),
                            format!("snapshot {chain} of its unwritten layer is missing"),
                        )),
                        None => faults.push(fault(
                            format!("build cache {key}"),
                            "names an unwritten layer but no snapshot".into(),
                        )),
                    }
                }
            }
            Ok(())
        })?;

        // 3. index.json, what OCI tools read, names only blobs we have.
        let index = self.layout().index_json();
        match fs::read(&index).map_err(|e| e.to_string()).and_then(|b| {
            serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
        }) {
            Ok(v) => {
                for m in v["manifests"].as_array().cloned().unwrap_or_default() {
                    match m["digest"].as_str().unwrap_or_default().parse::<Digest>() {
                        Ok(d) if missing(&d) => faults.push(fault(
                            "index.json".into(),
                            format!("names missing manifest {d}"),
                        )),
                        Ok(_) => {}
                        Err(e) => faults.push(fault("index.json".into(), e.to_string())),
                    }
                }
            }
            Err(e) => faults.push(fault("index.json".into(), format!("cannot be read: {e}"))),
        }
        report.faults = faults;
        Ok(report)
    }

    /// The uncompressed size of a layer, if recorded.
    pub fn uncompressed_size(&self, diff_id: &Digest) -> Result<Option<u64>> {
        meta::read(self, |m| {
            Ok(m.get(meta::LAYERS, diff_id)?
                .and_then(|r| r.uncompressed_size))
        })
    }
}
