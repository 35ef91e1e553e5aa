//! The metadata database opens again after a process died mid-write.

use std::fs;

use store::media_types::{OCI_CONFIG, OCI_MANIFEST};
use store::{Reference, Store};

/// A lease of its own for one call, dropped when the statement ends (nothing prunes
/// concurrently here).
fn lease(store: &Store) -> store::Lease {
    store.lease(std::time::Duration::from_secs(60)).unwrap()
}

/// sled 0.34 picks the highest-named `snap.*` file when it opens, even a
/// `snap.<lsn>.generating` that a SIGKILL left half written, and then fails with
/// "Read corrupted data". The store removes such files first: every record written
/// before the kill is still there afterwards.
#[test]
fn a_torn_sled_snapshot_left_by_a_kill_does_not_lock_the_store_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config = store.put_blob(&lease(&store), config, OCI_CONFIG).unwrap();
    let manifest = store::manifest::build_manifest(&config, &[]);
    let blob = store
        .put_blob(&lease(&store), &manifest, OCI_MANIFEST)
        .unwrap();
    store
        .add_image(&blob.digest, Some(&Reference::parse("torn:1").unwrap()))
        .unwrap();
    drop(store);

    let torn = dir
        .path()
        .join("meta")
        .join("snap.7FFFFFFFFFFFFFFF.generating");
    fs::write(&torn, vec![0xAB; 4096]).unwrap();

    let store = Store::open(dir.path()).unwrap();
    let images = store
        .images()
        .expect("the store opens despite the torn snapshot");
    assert_eq!(
        images.len(),
        1,
        "the image recorded before the kill survives"
    );
    assert_eq!(
        store.resolve_str("torn:1").unwrap(),
        blob.digest,
        "its tag still resolves"
    );
    assert!(!torn.exists(), "the torn snapshot file is gone");
}
