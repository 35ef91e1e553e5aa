//! `meta/index.json.sha256` is written without an fsync (docs/design.md §3): a machine lost
//! after a tag change may leave it missing or stale. The next open then compares
//! `index.json` with the metadata once, finds nothing to adopt, keeps every image and tag
//! as they were, and writes the fingerprint again.

use std::fs;

use store::media_types::{OCI_CONFIG, OCI_MANIFEST};
use store::{Digest, Reference, Store};

fn tagged_root(dir: &std::path::Path) -> Digest {
    let store = Store::open(dir).unwrap();
    let lease = store.lease(std::time::Duration::from_secs(60)).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config = store.put_blob(&lease, config, OCI_CONFIG).unwrap();
    let manifest = store::manifest::build_manifest(&config, &[]);
    let manifest = store.put_blob(&lease, &manifest, OCI_MANIFEST).unwrap();
    store
        .add_image(&manifest.digest, Some(&Reference::parse("app:1").unwrap()))
        .unwrap();
    manifest.digest
}

#[test]
fn a_missing_or_stale_fingerprint_costs_one_comparison_and_changes_nothing() {
    for damage in ["missing", "stale"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let manifest = tagged_root(root);
        let index = fs::read(root.join("index.json")).unwrap();
        let fingerprint = root.join("meta/index.json.sha256");
        match damage {
            "missing" => fs::remove_file(&fingerprint).unwrap(),
            _ => fs::write(&fingerprint, Digest::sha256_of(b"an older index").as_str()).unwrap(),
        }

        let store = Store::open(root).unwrap();
        let images = store.images().unwrap();
        assert_eq!(images.len(), 1, "{damage}: {images:?}");
        assert_eq!(
            store.resolve(&Reference::parse("app:1").unwrap()).unwrap(),
            manifest,
            "{damage}"
        );
        assert_eq!(
            fs::read(root.join("index.json")).unwrap(),
            index,
            "{damage}"
        );
        assert_eq!(
            fs::read_to_string(&fingerprint).unwrap(),
            Digest::sha256_of(&index).as_str(),
            "{damage}: the fingerprint is written again"
        );
    }
}
