//! The metadata database of an older root is converted on first open, and a root left by
//! a killed process opens again.

use std::fs;
use std::path::Path;

use store::media_types::{OCI_CONFIG, OCI_MANIFEST};
use store::{Digest, Reference, Store};

/// A lease of its own for one call, dropped when the statement ends (nothing prunes
/// concurrently here).
fn lease(store: &Store) -> store::Lease {
    store.lease(std::time::Duration::from_secs(60)).unwrap()
}

/// A root with one tagged image, `old:1`; returns the manifest digest.
fn root_with_image(dir: &Path) -> Digest {
    let store = Store::open(dir).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config = store.put_blob(&lease(&store), config, OCI_CONFIG).unwrap();
    let manifest = store::manifest::build_manifest(&config, &[]);
    let blob = store
        .put_blob(&lease(&store), &manifest, OCI_MANIFEST)
        .unwrap();
    store
        .add_image(&blob.digest, Some(&Reference::parse("old:1").unwrap()))
        .unwrap();
    blob.digest
}

/// Turns the root's metadata into the layout of older strata versions: a sled 0.34
/// database in `meta/` with one tree per table, the same keys and the same JSON values.
fn make_sled_layout(meta: &Path) {
    let db = meta.join(store::meta::DB_FILE);
    let mut trees = Vec::new();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for name in names {
            let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
                .prepare(&format!("SELECT key, value FROM \"{name}\""))
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            trees.push((name, rows));
        }
    }
    for f in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{f}", db.display()));
    }
    let old = sled::Config::new().path(meta).open().unwrap();
    for (name, rows) in &trees {
        let tree = old.open_tree(name).unwrap();
        for (k, v) in rows {
            tree.insert(k.as_slice(), v.as_slice()).unwrap();
        }
    }
    old.flush().unwrap();
    assert!(trees.iter().any(|(n, rows)| n == "tags" && rows.len() == 1));
}

#[test]
fn a_root_of_the_sled_layout_is_converted_once_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = root_with_image(dir.path());
    let meta = dir.path().join("meta");
    make_sled_layout(&meta);
    // What a kill can leave: a torn sled snapshot (sled 0.34 would pick it and fail, see
    // spacejam/sled#1527) and a half-written conversion.
    fs::write(
        meta.join("snap.7FFFFFFFFFFFFFFF.generating"),
        vec![0xAB; 4096],
    )
    .unwrap();
    fs::write(meta.join("strata.db.new"), b"half written").unwrap();
    assert!(!meta.join(store::meta::DB_FILE).exists());

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.resolve_str("old:1").unwrap(),
        manifest,
        "the tag of the old root resolves"
    );
    assert_eq!(store.images().unwrap().len(), 1, "its image is listed");
    assert!(meta.join(store::meta::DB_FILE).exists(), "converted");
    for sled_file in [
        "conf",
        "db",
        "snap.7FFFFFFFFFFFFFFF.generating",
        "strata.db.new",
    ] {
        assert!(!meta.join(sled_file).exists(), "{sled_file} is gone");
    }

    // Records written after the conversion stay there: it runs once.
    store
        .tag(&manifest, &Reference::parse("new:1").unwrap())
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.resolve_str("new:1").unwrap(), manifest);
    assert_eq!(store.resolve_str("old:1").unwrap(), manifest);
}
