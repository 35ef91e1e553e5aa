//! Snapshots: each layer unpacked once, in overlay form, lowerdirs top first;
//! built upperdirs committed by rename.

use std::fs;
use std::os::unix::fs::FileTypeExt;

use store::media_types::{OCI_CONFIG, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST};
use store::{Descriptor, Digest, Reference, Store, StoreError};

/// A lease of its own for one call, dropped when the statement ends (nothing prunes
/// concurrently here).
fn lease(store: &Store) -> store::Lease {
    store.lease(std::time::Duration::from_secs(60)).unwrap()
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A two-layer image from plain tars, recorded under `name`.
fn two_layer_image(store: &Store, name: &str) -> (Digest, Vec<Digest>) {
    let l0 = tar_of(&[("etc/motd", b"hello"), ("etc/keep", b"k")]);
    let l1 = tar_of(&[("etc/.wh.motd", b""), ("etc/new", b"n")]);
    let d0 = store.put_blob(&lease(store), &l0, OCI_LAYER_TAR).unwrap();
    let d1 = store.put_blob(&lease(store), &l1, OCI_LAYER_TAR).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d0.digest, d1.digest]},
    });
    let c = store
        .put_blob(
            &lease(store),
            &serde_json::to_vec(&config).unwrap(),
            OCI_CONFIG,
        )
        .unwrap();
    let m = store::manifest::build_manifest(&c, &[d0.clone(), d1.clone()]);
    let md = store.put_blob(&lease(store), &m, OCI_MANIFEST).unwrap();
    store
        .add_image(&md.digest, Some(&Reference::parse(name).unwrap()))
        .unwrap();
    (md.digest, vec![d0.digest, d1.digest])
}

#[test]
fn ensure_snapshots_unpacks_each_layer_once_top_first() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (manifest, diff_ids) = two_layer_image(&store, "two:1");
    let dirs = store.ensure_snapshots(&lease(&store), &manifest).unwrap();
    let chains = Store::chain_ids(&diff_ids);
    assert_eq!(
        dirs,
        vec![
            store.snapshot_dir(&chains[1]),
            store.snapshot_dir(&chains[0])
        ]
    );
    assert_eq!(
        fs::read_to_string(dirs[1].join("etc/motd")).unwrap(),
        "hello"
    );
    let wh = fs::symlink_metadata(dirs[0].join("etc/motd")).unwrap();
    assert!(
        wh.file_type().is_char_device(),
        "top layer whites out etc/motd"
    );
    assert_eq!(
        fs::read_to_string(dirs[0].parent().unwrap().join("parent")).unwrap(),
        chains[0].to_string()
    );
    // A second call reuses the snapshots: a marker we drop survives.
    fs::write(dirs[1].join("marker"), "x").unwrap();
    assert_eq!(
        store.ensure_snapshots(&lease(&store), &manifest).unwrap(),
        dirs
    );
    assert!(dirs[1].join("marker").exists());
    // No half-extracted temp dirs are left.
    let leftovers: Vec<_> = fs::read_dir(store.layout().snapshots_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn ensure_snapshots_refuses_a_layer_whose_diff_id_lies() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let real = tar_of(&[("a", b"a")]);
    let blob = store.put_blob(
        &lease(&store),
        &real,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    // A plain tar stored under a gzip media type cannot be unpacked as gzip.
    let blob = blob.unwrap();
    let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(b"other")]}});
    let c = store
        .put_blob(
            &lease(&store),
            &serde_json::to_vec(&config).unwrap(),
            OCI_CONFIG,
        )
        .unwrap();
    let m = store::manifest::build_manifest(&c, &[blob]);
    let md = store.put_blob(&lease(&store), &m, OCI_MANIFEST).unwrap();
    store.add_image(&md.digest, None).unwrap();
    assert!(store.ensure_snapshots(&lease(&store), &md.digest).is_err());
    let names: Vec<_> = fs::read_dir(store.layout().snapshots_dir())
        .unwrap()
        .collect();
    assert!(
        names.is_empty(),
        "a failed unpack leaves nothing: {names:?}"
    );
}

/// `tar` as zstd, cut at `split` into two frames (as parallel zstd writers make them).
fn zstd_two_frames(tar: &[u8], split: usize) -> Vec<u8> {
    let (a, b) = tar.split_at(split);
    let mut out = zstd::encode_all(a, 3).unwrap();
    out.extend(zstd::encode_all(b, 19).unwrap());
    out
}

/// An untagged image of the given layer blobs and diff_ids.
fn image_of(store: &Store, layers: &[Descriptor], diff_ids: &[Digest]) -> Digest {
    let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let c = store
        .put_blob(
            &lease(store),
            &serde_json::to_vec(&config).unwrap(),
            OCI_CONFIG,
        )
        .unwrap();
    let m = store::manifest::build_manifest(&c, layers);
    let md = store.put_blob(&lease(store), &m, OCI_MANIFEST).unwrap();
    store.add_image(&md.digest, None).unwrap();
    md.digest
}

fn snapshot_dir_names(store: &Store) -> Vec<String> {
    fs::read_dir(store.layout().snapshots_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn ensure_snapshots_unpacks_zstd_layers_of_several_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let l0 = tar_of(&[("etc/motd", b"hello"), ("data/big", &big)]);
    let l1 = tar_of(&[("etc/.wh.motd", b""), ("etc/new", b"n")]);
    let b0 = store
        .put_blob(
            &lease(&store),
            &zstd_two_frames(&l0, l0.len() / 3),
            OCI_LAYER_ZSTD,
        )
        .unwrap();
    let b1 = store
        .put_blob(&lease(&store), &zstd_two_frames(&l1, 700), OCI_LAYER_ZSTD)
        .unwrap();
    let diff_ids = [Digest::sha256_of(&l0), Digest::sha256_of(&l1)];
    let manifest = image_of(&store, &[b0, b1], &diff_ids);
    let dirs = store.ensure_snapshots(&lease(&store), &manifest).unwrap();
    assert_eq!(fs::read(dirs[1].join("data/big")).unwrap(), big);
    assert_eq!(
        fs::read_to_string(dirs[1].join("etc/motd")).unwrap(),
        "hello"
    );
    assert_eq!(fs::read_to_string(dirs[0].join("etc/new")).unwrap(), "n");
    let wh = fs::symlink_metadata(dirs[0].join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device(), "whiteout in overlay form");
}

#[test]
fn ensure_snapshots_refuses_a_zstd_layer_whose_diff_id_lies() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    // Valid zstd of a valid tar: only the diff_id check can catch it.
    let real = tar_of(&[("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")]);
    let claimed = tar_of(&[("etc/passwd", b"evil")]);
    let blob = store
        .put_blob(&lease(&store), &zstd_two_frames(&real, 512), OCI_LAYER_ZSTD)
        .unwrap();
    let diff_id = Digest::sha256_of(&claimed);
    let manifest = image_of(&store, &[blob], std::slice::from_ref(&diff_id));
    let err = store
        .ensure_snapshots(&lease(&store), &manifest)
        .unwrap_err();
    match &err {
        StoreError::CorruptBlob { reason, .. } => {
            assert!(reason.contains(diff_id.as_str()), "{err}")
        }
        other => panic!("want CorruptBlob naming the diff_id, got {other:?}"),
    }
    let chain = Store::chain_ids(&[diff_id]).remove(0);
    assert!(!store.snapshot_dir(&chain).exists());
    assert!(
        snapshot_dir_names(&store).is_empty(),
        "a refused unpack leaves nothing: {:?}",
        snapshot_dir_names(&store)
    );
}

#[test]
fn commit_snapshot_renames_in_and_keeps_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let chain = Store::chain_ids(&[Digest::sha256_of(b"layer")]).remove(0);
    let upper = store.layout().snapshots_dir().join("upper-1");
    fs::create_dir_all(upper.join("bin")).unwrap();
    fs::write(upper.join("bin/tool"), "v1").unwrap();
    let path = store
        .commit_snapshot(&lease(&store), &chain, None, &upper)
        .unwrap();
    assert_eq!(path, store.snapshot_dir(&chain));
    assert_eq!(fs::read_to_string(path.join("bin/tool")).unwrap(), "v1");
    assert!(!upper.exists());
    let again = store.layout().snapshots_dir().join("upper-2");
    fs::create_dir_all(&again).unwrap();
    fs::write(again.join("other"), "v2").unwrap();
    assert_eq!(
        store
            .commit_snapshot(&lease(&store), &chain, None, &again)
            .unwrap(),
        path
    );
    assert!(!again.exists());
    assert!(!path.join("other").exists());
}
