//! Snapshot directories for a chain of layers, and committing a RUN's upperdir as one.
//!
//! TODO(lead): temporary; the store's safe extractor (store/src/snapshot.rs, issue 2)
//! replaces `unpack` once it lands. Until then this trusts only layers the store already
//! verified by digest, and still refuses `..` and absolute names.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use store::{LayerRef, Store};

/// Snapshot dirs of `layers`, bottom first, unpacking the missing ones from their blobs.
pub fn ensure(store: &Store, layers: &[LayerRef]) -> io::Result<Vec<PathBuf>> {
    let ids: Vec<store::Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chains = Store::chain_ids(&ids);
    let mut dirs = Vec::with_capacity(layers.len());
    for (layer, chain) in layers.iter().zip(&chains) {
        let dir = store.snapshot_dir(chain);
        if !dir.exists() {
            let tmp = store
                .layout()
                .snapshots_dir()
                .join(store::layout::unique_name("unpack-"));
            let fs_dir = tmp.join("fs");
            let res = (|| -> io::Result<()> {
                fs::create_dir_all(&fs_dir)?;
                let blob = fs::File::open(store.blob_path(&layer.blob.digest))?;
                unpack(blob, &fs_dir)?;
                let parent = dir.parent().expect("snapshot dir has a parent");
                match fs::rename(&tmp, parent) {
                    Ok(()) => Ok(()),
                    // Another build unpacked it first: theirs is as good as ours.
                    Err(_) if dir.exists() => {
                        let _ = fs::remove_dir_all(&tmp);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })();
            if let Err(e) = res {
                let _ = fs::remove_dir_all(&tmp);
                let blob = store.blob_path(&layer.blob.digest);
                return Err(io::Error::new(
                    e.kind(),
                    format!("unpacking layer {}: {e}", blob.display()),
                ));
            }
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Move a finished upperdir in as the snapshot of `chain`.
pub fn commit(store: &Store, chain: &store::ChainId, upper: &Path) -> io::Result<PathBuf> {
    let dir = store.snapshot_dir(chain);
    let parent = dir
        .parent()
        .expect("snapshot dir has a parent")
        .to_path_buf();
    if dir.exists() {
        return Ok(dir);
    }
    fs::create_dir_all(&parent)?;
    match fs::rename(upper, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if dir.exists() => Ok(dir),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("renaming snapshot into {}: {e}", dir.display()),
        )),
    }
}

fn unpack(input: impl io::Read, dest: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unsafe name {}", path.display()),
            ));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dest.join(path.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            fs::create_dir_all(&parent)?;
            rustix::fs::setxattr(
                &parent,
                "trusted.overlay.opaque",
                b"y",
                rustix::fs::XattrFlags::empty(),
            )?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            fs::create_dir_all(&parent)?;
            let target = parent.join(hidden);
            let _ = fs::remove_file(&target);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &target,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )?;
            continue;
        }
        entry.unpack_in(dest)?;
    }
    Ok(())
}
