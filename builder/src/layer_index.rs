//! One layer's tar read as a table of what unpacking it would make (each path's kind, mode,
//! owner, time, symlink target), without writing a byte: what `crate::below::Below` answers
//! from for layers that have no snapshot yet, so that a COPY over layers taken from a
//! registry cache does not unpack them to read its parent directories (docs/design.md §4.3).
//!
//! The table follows `store::extract` entry by entry: the same names are refused, a later
//! entry replaces an earlier one of the same path (a directory over a directory keeps its
//! children), a parent the tar does not list is a 0755 root-owned directory, a hard link
//! is its target, `.wh.NAME` hides `NAME` below, `.wh..wh..opq` makes its directory opaque.
//! A plain blob whose digest is the layer's diff_id is read by seeking from header to
//! header; any other blob is decompressed, hashed and checked against the diff_id, as
//! unpacking checks it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use store::extract::{check_entry, safe_components, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use store::media_types::{layer_compression, Compression};
use store::{Digest, LayerRef, Sha256Reader, Store};

use crate::image_tree::{Stat, StatKind};

/// One path of the layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub stat: Stat,
    /// A symlink's target.
    pub link: Option<String>,
    /// A regular file's bytes: offset in the plain tar, and length.
    data: Option<(u64, u64)>,
}

/// What one layer's tar makes when unpacked.
#[derive(Debug)]
pub struct LayerIndex {
    /// Every path the layer's snapshot would hold but whiteouts, cleaned (no leading,
    /// trailing or doubled `/`).
    pub entries: BTreeMap<String, LayerEntry>,
    /// Paths a `.wh.NAME` entry hides in the layers below.
    pub whiteouts: BTreeSet<String>,
    /// Directories marked opaque: nothing below shows through them.
    pub opaque: BTreeSet<String>,
    layer: LayerRef,
}

/// A tar entry whose parent the layers below make a symlink or a file, which unpacking
/// refuses.
#[derive(Debug, thiserror::Error)]
#[error("a parent directory is a symlink or not a directory")]
pub struct ParentNotDirectory;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("reading layer {digest}: {source}")]
    Io {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("layer {digest}: entry {entry:?}: {reason}")]
    Entry {
        digest: Digest,
        entry: String,
        reason: String,
    },
    #[error("layer {digest}: cannot read a layer of media type {media_type}")]
    MediaType { digest: Digest, media_type: String },
    #[error("layer {digest}: uncompressed content is {actual}, the image says diff_id {diff_id}")]
    DiffId {
        digest: Digest,
        actual: Digest,
        diff_id: Digest,
    },
}

/// Indexes already read by this process, by blob digest and diff_id: every COPY of a build
/// over the same layers reads each tar once. Digests name content: an entry never goes stale.
static INDEXES: Mutex<BTreeMap<String, Arc<LayerIndex>>> = Mutex::new(BTreeMap::new());

/// The largest compressed layer read through its index rather than unpacked (see
/// [`LayerIndex::is_cheap`]): layers a registry cache brings for COPY and small RUN steps
/// are below it, the base images that a RUN will unpack anyway mostly above.
pub const MAX_COMPRESSED_INDEX: u64 = 8 << 20;

impl LayerIndex {
    /// Whether indexing `layer` costs little next to unpacking it: a plain tar (read by
    /// seeking from header to header), or a compressed one of at most
    /// [`MAX_COMPRESSED_INDEX`] bytes (decompressed and hashed whole).
    pub fn is_cheap(layer: &LayerRef) -> bool {
        let plain = layer_compression(&layer.blob.media_type) == Some(Compression::None)
            && layer.blob.digest == layer.diff_id;
        plain || layer.blob.size <= MAX_COMPRESSED_INDEX
    }

    /// The index of `layer`, read from its blob (which the caller's lease covers) or
    /// taken from the ones this process read before.
    pub fn of(store: &Store, layer: &LayerRef) -> Result<Arc<LayerIndex>, IndexError> {
        let key = format!("{} {}", layer.blob.digest, layer.diff_id);
        // A map of finished indexes cannot be left half-written: a poisoned lock is fine.
        let cache = || INDEXES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache().get(&key) {
            return Ok(found.clone());
        }
        let index = Arc::new(LayerIndex::read(store, layer)?);
        cache().insert(key, index.clone());
        Ok(index)
    }

    fn read(store: &Store, layer: &LayerRef) -> Result<LayerIndex, IndexError> {
        let digest = layer.blob.digest.clone();
        let io_err = |source| IndexError::Io {
            digest: digest.clone(),
            source,
        };
        let mut index = LayerIndex {
            entries: BTreeMap::new(),
            whiteouts: BTreeSet::new(),
            opaque: BTreeSet::new(),
            layer: layer.clone(),
        };
        let file = BufReader::with_capacity(1 << 16, store.open_blob(&digest)?);
        match compression_of(layer)? {
            // The blob was checked against its digest when it was stored.
            Compression::None if layer.blob.digest == layer.diff_id => {
                let mut archive = tar::Archive::new(file);
                let entries = archive.entries_with_seek().map_err(io_err)?;
                for entry in entries {
                    index.add(&mut entry.map_err(io_err)?)?;
                }
            }
            compression => {
                let plain = store::decompress::plain_reader(compression, file).map_err(io_err)?;
                let mut hashed = Sha256Reader::new(plain);
                {
                    let mut archive = tar::Archive::new(&mut hashed);
                    for entry in archive.entries().map_err(io_err)? {
                        index.add(&mut entry.map_err(io_err)?)?;
                    }
                }
                // The end-of-archive padding too: the diff_id covers every byte.
                io::copy(&mut hashed, &mut io::sink()).map_err(io_err)?;
                let (_, actual, _) = hashed.finish();
                if actual != layer.diff_id {
                    return Err(IndexError::DiffId {
                        digest,
                        actual,
                        diff_id: layer.diff_id.clone(),
                    });
                }
            }
        }
        Ok(index)
    }

    /// Add one tar entry, as `store::extract` would unpack it.
    fn add<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), IndexError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header().clone();
        let kind = header.entry_type();
        let link = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let digest = self.layer.blob.digest.clone();
        let bad = |reason: String| IndexError::Entry {
            digest: digest.clone(),
            entry: raw.clone(),
            reason,
        };
        check_entry(&raw, kind, &link).map_err(|r| bad(r.to_string()))?;
        let comps = safe_components(&raw).map_err(|r| bad(r.to_string()))?;
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // "." — the snapshot root keeps its own mode.
        };
        let parent = parent.join("/");
        self.make_parents(&parent).map_err(|e| bad(e.to_string()))?;
        let join = |n: &str| match parent.is_empty() {
            true => n.to_string(),
            false => format!("{parent}/{n}"),
        };
        if name == OPAQUE_WHITEOUT {
            self.opaque.insert(parent.clone());
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let path = join(hidden);
            self.remove_tree(&path);
            self.whiteouts.insert(path);
            return Ok(());
        }
        let path = join(name);
        let stat = |kind| Stat {
            kind,
            mode: header.mode().unwrap_or(0o644) & 0o7777,
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mtime: header.mtime().unwrap_or(0) as i64,
        };
        use tar::EntryType as T;
        let new = match kind {
            T::Directory => {
                // A directory over a directory keeps what is in it.
                if !self.entries.get(&path).is_some_and(|e| e.stat.is_dir()) {
                    self.remove_tree(&path);
                }
                self.whiteouts.remove(&path);
                self.entries.insert(
                    path,
                    LayerEntry {
                        stat: stat(StatKind::Dir),
                        link: None,
                        data: None,
                    },
                );
                return Ok(());
            }
            T::Regular | T::Continuous | T::GNUSparse => LayerEntry {
                stat: stat(StatKind::File),
                link: None,
                data: Some((entry.raw_file_position(), entry.size())),
            },
            T::Symlink => LayerEntry {
                stat: Stat {
                    mode: 0o777,
                    ..stat(StatKind::Symlink)
                },
                link: Some(link),
                data: None,
            },
            T::Link => {
                let target = safe_components(link.trim_start_matches('/'))
                    .map_err(|r| bad(r.to_string()))?
                    .join("/");
                match self.entries.get(&target) {
                    Some(t) if !t.stat.is_dir() => t.clone(),
                    _ => {
                        return Err(bad(format!(
                            "hard link target {link:?} is not in the layer"
                        )))
                    }
                }
            }
            T::Char | T::Block | T::Fifo => LayerEntry {
                stat: stat(StatKind::Other),
                link: None,
                data: None,
            },
            // PAX/GNU metadata entries are consumed by the tar crate; unpacking skips the rest.
            _ => return Ok(()),
        };
        self.remove_tree(&path);
        self.whiteouts.remove(&path);
        self.entries.insert(path, new);
        Ok(())
    }

    /// Unpacking creates the parents a tar does not list: 0755 directories owned by root.
    fn make_parents(&mut self, parent: &str) -> Result<(), ParentNotDirectory> {
        let mut at = String::new();
        for c in parent.split('/').filter(|c| !c.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(c);
            match self.entries.get(&at) {
                Some(e) if e.stat.is_dir() => {}
                Some(_) => return Err(ParentNotDirectory),
                None => {
                    self.whiteouts.remove(&at);
                    self.entries.insert(
                        at.clone(),
                        LayerEntry {
                            stat: Stat {
                                kind: StatKind::Dir,
                                mode: 0o755,
                                uid: 0,
                                gid: 0,
                                mtime: now(),
                            },
                            link: None,
                            data: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Remove `path` and everything under it (an entry that replaces it).
    fn remove_tree(&mut self, path: &str) {
        self.entries.remove(path);
        let prefix = format!("{path}/");
        let under: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            self.entries.remove(&k);
        }
    }

    /// The bytes of the regular file `entry` of this layer.
    pub fn content(&self, store: &Store, entry: &LayerEntry) -> Result<Vec<u8>, IndexError> {
        let digest = self.layer.blob.digest.clone();
        let io_err = |source| IndexError::Io {
            digest: digest.clone(),
            source,
        };
        let Some((offset, len)) = entry.data else {
            return Ok(Vec::new());
        };
        let mut file = BufReader::new(store.open_blob(&digest)?);
        let mut out = Vec::new();
        match compression_of(&self.layer)? {
            Compression::None => {
                file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
                file.take(len).read_to_end(&mut out).map_err(io_err)?;
            }
            compression => {
                let mut plain =
                    store::decompress::plain_reader(compression, file).map_err(io_err)?;
                io::copy(&mut (&mut plain).take(offset), &mut io::sink()).map_err(io_err)?;
                plain.take(len).read_to_end(&mut out).map_err(io_err)?;
            }
        }
        if out.len() as u64 != len {
            return Err(io_err(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(out)
    }
}

fn compression_of(layer: &LayerRef) -> Result<Compression, IndexError> {
    layer_compression(&layer.blob.media_type).ok_or_else(|| IndexError::MediaType {
        digest: layer.blob.digest.clone(),
        media_type: layer.blob.media_type.clone(),
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
