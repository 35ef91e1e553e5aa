//! `Store::compressed_layer`: the gzip form of a plain layer is made once, is
//! reproducible, decodes to the exact tar, and goes when the layer's last image does.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;

use store::gc::{ImagePolicy, PruneOptions};
use store::media_types::{
    self, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR,
    OCI_MANIFEST,
};
use store::{meta, Descriptor, Digest, LayerRef, Reference, Store};

/// A lease of its own for one call, dropped when the statement ends (nothing prunes
/// concurrently here).
fn lease(store: &Store) -> store::Lease {
    store.lease(std::time::Duration::from_secs(60)).unwrap()
}

/// A tar of `n` files, half of them incompressible (an LCG), half text, so the gzip
/// spans several 4 MiB members.
fn tar_of_size(n: usize, file_size: usize, seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut x = seed;
    for i in 0..n {
        let data: Vec<u8> = if i % 2 == 0 {
            (0..file_size)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u8
                })
                .collect()
        } else {
            format!("line {i} of a compressible file\n")
                .repeat(file_size / 30 + 1)
                .into_bytes()
        };
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, format!("data/f{i}"), &data[..])
            .expect("tar in memory");
    }
    b.into_inner().expect("tar in memory")
}

/// A one-layer image of `tar` with layer media type `layer_type`, tagged `tag`.
fn image(store: &Store, tar: &[u8], layer_type: &str, tag: &str) -> (Digest, LayerRef) {
    let blob = store.put_blob(&lease(store), tar, layer_type).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [blob.digest]},
    });
    let config = store
        .put_blob(
            &lease(store),
            &serde_json::to_vec(&config).unwrap(),
            OCI_CONFIG,
        )
        .unwrap();
    let manifest = store::manifest::build_manifest(&config, std::slice::from_ref(&blob));
    let m = store
        .put_blob(&lease(store), &manifest, OCI_MANIFEST)
        .unwrap();
    let rec = store
        .add_image(&m.digest, Some(&Reference::parse(tag).unwrap()))
        .unwrap();
    (m.digest, rec.layers[0].clone())
}

fn blob_files(store: &Store) -> BTreeSet<String> {
    fs::read_dir(store.layout().blobs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn compressing_twice_gives_one_blob_that_gunzips_to_the_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let tar = tar_of_size(6, 3 << 20, 1);
    let (_, plain) = image(&store, &tar, OCI_LAYER_TAR, "app:1");
    assert_eq!(plain.blob.digest, plain.diff_id);

    let gz = store.compressed_layer(&lease(&store), &plain).unwrap();
    assert_eq!(gz.diff_id, plain.diff_id);
    assert_eq!(gz.blob.media_type, OCI_LAYER_GZIP);
    assert!(gz.blob.size < plain.blob.size, "{gz:?}");
    let bytes = store.read_blob(&gz.blob.digest).unwrap();
    assert_eq!(Digest::sha256_of(&bytes), gz.blob.digest);
    assert_eq!(bytes.len() as u64, gz.blob.size);
    assert!(
        gunzip(&bytes) == tar,
        "the gzip form must decode to the plain tar"
    );

    // The second call finds the recorded form and reads no tar: with the plain blob
    // damaged (a recompression would refuse it), it still answers, and writes nothing.
    let files = blob_files(&store);
    let plain_path = store.blob_path(&plain.blob.digest);
    fs::write(&plain_path, b"damaged").unwrap();
    let again = store.compressed_layer(&lease(&store), &plain).unwrap();
    assert_eq!(again, gz);
    assert_eq!(blob_files(&store), files);
    fs::write(&plain_path, &tar).unwrap();

    // Recorded: a `blobs` record with the right size and a stored form of the layer.
    let world = meta::read(&store, |m| {
        Ok((
            m.get(meta::BLOBS, &gz.blob.digest)?,
            m.get(meta::LAYERS, &plain.diff_id)?,
        ))
    })
    .unwrap();
    assert_eq!(world.0.expect("blob record").size, gz.blob.size);
    let forms: Vec<Digest> = world
        .1
        .expect("layer record")
        .blobs
        .into_iter()
        .map(|b| b.digest)
        .collect();
    assert_eq!(
        forms,
        vec![plain.blob.digest.clone(), gz.blob.digest.clone()]
    );
}

#[test]
fn the_same_tar_gives_the_same_gzip_in_any_store_and_family() {
    let tar = tar_of_size(4, 2 << 20, 7);
    let mut digests = Vec::new();
    for layer_type in [OCI_LAYER_TAR, DOCKER_LAYER_TAR] {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let (_, plain) = image(&store, &tar, layer_type, "app:1");
        let gz = store.compressed_layer(&lease(&store), &plain).unwrap();
        let want_type = if layer_type == OCI_LAYER_TAR {
            OCI_LAYER_GZIP
        } else {
            DOCKER_LAYER_GZIP
        };
        assert_eq!(gz.blob.media_type, want_type);
        digests.push(gz.blob.digest);
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn a_recorded_gzip_form_is_named_in_the_callers_family() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let tar = tar_of_size(2, 100_000, 3);
    let (_, oci) = image(&store, &tar, OCI_LAYER_TAR, "a:1");
    let gz = store.compressed_layer(&lease(&store), &oci).unwrap();
    let docker = LayerRef {
        blob: Descriptor {
            media_type: DOCKER_LAYER_TAR.into(),
            ..oci.blob.clone()
        },
        diff_id: oci.diff_id.clone(),
    };
    let dgz = store.compressed_layer(&lease(&store), &docker).unwrap();
    assert_eq!(dgz.blob.digest, gz.blob.digest);
    assert_eq!(dgz.blob.media_type, media_types::DOCKER_LAYER_GZIP);
}

#[test]
fn a_swept_gzip_form_is_made_again() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let tar = tar_of_size(2, 100_000, 4);
    let (_, plain) = image(&store, &tar, OCI_LAYER_TAR, "a:1");
    let gz = store.compressed_layer(&lease(&store), &plain).unwrap();
    fs::remove_file(store.blob_path(&gz.blob.digest)).unwrap();
    let again = store.compressed_layer(&lease(&store), &plain).unwrap();
    assert_eq!(again, gz);
    assert!(store.has_blob(&gz.blob.digest));
}

#[test]
fn the_gzip_form_lives_with_the_layer_and_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let tar = tar_of_size(4, 1 << 20, 5);
    let (_, plain) = image(&store, &tar, OCI_LAYER_TAR, "app:1");
    let gz = store.compressed_layer(&lease(&store), &plain).unwrap();
    let untagged = PruneOptions {
        images: ImagePolicy::Untagged,
        ..PruneOptions::default()
    };

    // Held by a tagged image: a prune keeps both forms, and `system df` counts both.
    let report = store.prune(&untagged).unwrap();
    assert_eq!(report.blobs_removed, 0);
    assert!(store.has_blob(&gz.blob.digest) && store.has_blob(&plain.blob.digest));
    let on_disk: u64 = fs::read_dir(store.layout().blobs_dir())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let usage = store.disk_usage().unwrap();
    assert_eq!(usage.images_size, on_disk);
    // The image's own row is what `images` shows: the layer uncompressed.
    assert_eq!(usage.images[0].size, plain.blob.size);

    // The image goes: both forms and the layer record go with it.
    store.untag(&Reference::parse("app:1").unwrap()).unwrap();
    let report = store.prune(&untagged).unwrap();
    assert_eq!(report.images_deleted.len(), 1);
    assert_eq!(report.reclaimed, on_disk);
    assert!(!store.has_blob(&gz.blob.digest));
    assert!(!store.has_blob(&plain.blob.digest));
    assert!(blob_files(&store).is_empty());
    assert!(meta::read(&store, |m| m.get(meta::LAYERS, &plain.diff_id))
        .unwrap()
        .is_none());
    assert!(store.verify().unwrap().faults.is_empty());
}

/// The digest of our gzip of a fixed input, pinned: it must not change between
/// machines or releases (a changed level, chunk size or deflate backend would give
/// every pushed layer a new digest, and registries would store every layer twice).
#[test]
fn gzip_digest_of_a_fixed_input_is_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    // Not a tar: compressed_layer compresses bytes, the framing is the builder's.
    let mut input = tar_of_size(0, 0, 0);
    let mut x = 42u64;
    for i in 0..(9 << 20) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        input.push(if i % 3 == 0 {
            (x >> 40) as u8
        } else {
            b'a' + (i % 7) as u8
        });
    }
    // Then 5 MiB of noise: a stored (not deflated) member, and a short last one.
    for _ in 0..(5 << 20) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        input.push((x >> 33) as u8);
    }
    let (_, plain) = image(&store, &input, OCI_LAYER_TAR, "pinned:1");
    let gz = store.compressed_layer(&lease(&store), &plain).unwrap();
    assert_eq!(
        gz.blob.digest.to_string(),
        "sha256:d9bf1e54d7856257e85635a3c7907ec812445a9ecae9fbb7c24554daf4b1e196"
    );
}
