//! kill -9 in the window a build leaves between a layer step's records (the blob's, the
//! snapshot's and the step's cache record, committed without an fsync, docs/design.md §3)
//! and the fsynced image commit that would make them durable: the killed process's records
//! are all there and the root verifies clean (every cache record names a blob that is
//! there).
//!
//! The process killed is this test binary again, started with `CHILD_ROOT` set: it commits
//! a layer blob, its snapshot and a cache record naming both through the store's own
//! paths, in a build's order, then SIGKILLs itself.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use store::media_types::OCI_LAYER_TAR;
use store::{meta, CacheRecord, Digest, Store};

const TEST_NAME: &str = "sigkill_after_deferred_records_leaves_them_and_a_clean_root";
/// Set in the child: the root to write into.
const CHILD_ROOT: &str = "STRATA_TEST_KILL_CHILD_ROOT";
const LAYER: &[u8] = b"the bytes of a layer tar";
const CACHE_KEY: &str = "sha256:a-step-key";

#[test]
fn sigkill_after_deferred_records_leaves_them_and_a_clean_root() {
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        commit_layer_and_die(Path::new(&root));
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ROOT, &root)
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child did not get as far as its kill: {status:?}"
    );

    let store = Store::open(&root).unwrap();
    let digest = Digest::sha256_of(LAYER);
    let chain = Store::chain_ids(std::slice::from_ref(&digest))
        .pop()
        .unwrap();
    assert!(store.has_blob(&digest), "blob file missing");
    let blob = meta::read(&store, |m| m.get(meta::BLOBS, &digest)).unwrap();
    assert_eq!(
        blob.map(|b| b.size),
        Some(LAYER.len() as u64),
        "the blob's deferred record did not survive the kill"
    );
    let snapshot = meta::read(&store, |m| m.get(meta::SNAPSHOTS, &chain)).unwrap();
    assert!(
        snapshot.is_some(),
        "the snapshot's deferred record did not survive the kill"
    );
    assert!(store.snapshot_dir(&chain).join("file").is_file());
    let cached = store.cache_get(CACHE_KEY).unwrap();
    assert_eq!(
        cached.and_then(|r| r.layer).map(|l| l.digest),
        Some(digest),
        "the step's deferred cache record did not survive the kill"
    );
    let report = store.verify().unwrap();
    assert!(report.faults.is_empty(), "{:?}", report.faults);
}

/// The child: a layer blob committed as a build commits one (fsync, rename, deferred
/// record), its snapshot published and the step's cache record written (both deferred),
/// then SIGKILL before any fsynced commit could make those records durable by the way.
fn commit_layer_and_die(root: &Path) -> ! {
    let store = Store::open(root).unwrap();
    let lease = store.lease(Duration::from_secs(60)).unwrap();
    let mut writer = store.writer(&lease).unwrap().with_media_type(OCI_LAYER_TAR);
    writer.write_all(LAYER).unwrap();
    let blob = writer.commit(None, None).unwrap();
    let chain = Store::chain_ids(std::slice::from_ref(&blob.digest))
        .pop()
        .unwrap();
    let upper = root.join("snapshots").join("build-kill-test");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::write(upper.join("file"), b"content").unwrap();
    store.commit_snapshot(&lease, &chain, None, &upper).unwrap();
    let record = CacheRecord {
        v: 1,
        diff_id: Some(blob.digest.clone()),
        chain_id: Some(chain),
        size: blob.size,
        layer: Some(blob),
        unwritten: None,
        config_delta: serde_json::Value::Null,
        created_at: 0,
        last_used: 0,
    };
    store.cache_put(CACHE_KEY, &record).unwrap();
    // SAFETY: kill(2) on our own pid; nothing after it runs.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL ends the process")
}
