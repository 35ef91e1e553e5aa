//! `Store::prune` and `Store::disk_usage` against a real store in a temp dir.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::records::{CacheRecord, LeaseRecord};
use crate::{media_types, Descriptor, Reference};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    Fixture { _dir: dir, store }
}

/// Stores one blob under a lease of its own, dropped on return: what a writer that has
/// already recorded its work leaves behind.
fn put(store: &Store, bytes: &[u8], media_type: &str) -> Descriptor {
    let lease = store.lease(Duration::from_secs(60)).unwrap();
    store.put_blob(&lease, bytes, media_type).unwrap()
}

fn layer(store: &Store, content: &str) -> Descriptor {
    put(
        store,
        content.repeat(100).as_bytes(),
        media_types::OCI_LAYER_TAR,
    )
}

/// An image of plain-tar layers (diff_id = blob digest), tagged or not.
fn image(store: &Store, layers: &[&str], tag: Option<&str>, labels: serde_json::Value) -> Digest {
    let descs: Vec<Descriptor> = layers.iter().map(|l| layer(store, l)).collect();
    let diff_ids: Vec<String> = descs.iter().map(|d| d.digest.to_string()).collect();
    let config = serde_json::json!({
        "created": "2026-01-01T00:00:00Z",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "architecture": "amd64", "os": "linux",
        "nonce": layers.join("+") + tag.unwrap_or(""),
    });
    let config = put(
        store,
        &serde_json::to_vec(&config).unwrap(),
        media_types::OCI_CONFIG,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
        "config": config, "layers": descs,
    });
    let m = put(
        store,
        &serde_json::to_vec(&manifest).unwrap(),
        media_types::OCI_MANIFEST,
    );
    let tag = tag.map(|t| Reference::parse(t).unwrap());
    store.add_image(&m.digest, tag.as_ref()).unwrap();
    m.digest
}

fn layer_cache(store: &Store, key: &str, content: &str, last_used: i64) {
    let blob = layer(store, content);
    let rec = CacheRecord {
        v: 1,
        diff_id: Some(blob.digest.clone()),
        chain_id: None,
        size: blob.size,
        layer: Some(blob),
        unwritten: None,
        config_delta: serde_json::Value::Null,
        created_at: last_used,
        last_used,
    };
    store.cache_put(key, &rec).unwrap();
}

fn image_cache(store: &Store, key: &str, manifest: &Digest) {
    let rec = CacheRecord {
        v: 1,
        diff_id: None,
        chain_id: None,
        layer: None,
        unwritten: None,
        config_delta: serde_json::json!({"manifest": manifest.to_string()}),
        created_at: 1,
        last_used: 1,
        size: 0,
    };
    store.cache_put(key, &rec).unwrap();
}

fn blob_of(content: &str) -> Digest {
    Digest::sha256_of(content.repeat(100).as_bytes())
}

fn cache_keys(store: &Store) -> BTreeSet<String> {
    meta::read(store, |m| m.all(meta::CACHE))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn blobs_on_disk(store: &Store) -> u64 {
    std::fs::read_dir(store.layout().blobs_dir())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn image_prune() -> PruneOptions {
    PruneOptions {
        images: ImagePolicy::Dangling,
        cache: CachePolicy::OfPrunedImages,
        ..PruneOptions::default()
    }
}

#[test]
fn image_prune_removes_dangling_image_its_unique_layers_and_their_cache() {
    let f = fixture();
    let s = &f.store;
    let kept = image(s, &["base", "app-v2"], Some("app:1"), serde_json::json!({}));
    let gone = image(s, &["base", "app-v1"], None, serde_json::json!({}));
    layer_cache(s, "k-base", "base", 1);
    layer_cache(s, "k-v1", "app-v1", 1);
    layer_cache(s, "k-v2", "app-v2", 1);
    layer_cache(s, "k-unrelated", "failed-build", 1);
    image_cache(s, "k-img-v1", &gone);
    image_cache(s, "k-img-v2", &kept);
    let before = blobs_on_disk(s);
    let v1_size = std::fs::metadata(s.blob_path(&blob_of("app-v1")))
        .unwrap()
        .len();

    let report = s.prune(&image_prune()).unwrap();

    assert_eq!(report.images_deleted.len(), 1);
    assert_eq!(report.images_deleted[0].manifest, gone);
    let want: BTreeSet<String> = ["k-base", "k-v2", "k-unrelated", "k-img-v2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(cache_keys(s), want);
    assert!(!s.has_blob(&gone));
    assert!(!s.has_blob(&blob_of("app-v1")));
    assert!(s.has_blob(&blob_of("base")) && s.has_blob(&blob_of("app-v2")));
    assert!(
        s.has_blob(&blob_of("failed-build")),
        "cache no image used stays"
    );
    assert_eq!(s.image(&kept).unwrap().tags.len(), 1);
    // Manifest + config + the unique layer, byte for byte.
    assert_eq!(blobs_on_disk(s), before - report.reclaimed);
    assert!(report.reclaimed > v1_size);
    assert_eq!(report.blobs_removed, 3);
    // Nothing is left in the trash.
    assert_eq!(
        std::fs::read_dir(s.layout().ingest_dir()).unwrap().count(),
        0
    );
    // A second run finds nothing more.
    let again = s.prune(&image_prune()).unwrap();
    assert!(
        again.images_deleted.is_empty() && again.reclaimed == 0,
        "{again:?}"
    );
}

#[test]
fn leased_objects_survive_and_dead_leases_are_dropped() {
    let f = fixture();
    let s = &f.store;
    let leased_image = image(s, &["l1"], None, serde_json::json!({}));
    let lease = s.lease(Duration::from_secs(3600)).unwrap();
    lease.add_digest(&leased_image).unwrap();
    let dead = LeaseRecord {
        v: 1,
        pid: 4_000_000,
        created_at: 0,
        expires_at: i64::MAX,
        digests: vec![blob_of("l1")],
        snapshots: vec![],
    };
    meta::write(s, |m| m.put(meta::LEASES, "dead", &dead)).unwrap();

    let report = s
        .prune(&PruneOptions {
            images: ImagePolicy::Untagged,
            cache: CachePolicy::All,
            ..PruneOptions::default()
        })
        .unwrap();
    assert!(report.images_deleted.is_empty());
    assert_eq!(report.leases_dropped, 1);
    assert!(s.has_blob(&leased_image) && s.has_blob(&blob_of("l1")));
    drop(lease);
    let report = s.prune(&image_prune()).unwrap();
    assert_eq!(report.images_deleted.len(), 1);
    assert!(!s.has_blob(&blob_of("l1")));
}

#[test]
fn orphans_go_at_once_and_a_half_done_sweep_is_finished() {
    let f = fixture();
    let s = &f.store;
    let img = image(s, &["o1", "o2"], Some("x:1"), serde_json::json!({}));
    // A crash after the metadata transaction: records gone, files still there.
    meta::write(s, |m| {
        m.remove(meta::TAGS, "docker.io/library/x:1")?;
        m.remove(meta::MANIFESTS, &img)?;
        m.remove(meta::BLOBS, &blob_of("o1"))
    })
    .unwrap();
    let fresh = put(s, b"just written", "text/plain");
    let report = s.prune(&image_prune()).unwrap();
    assert_eq!(report.blobs_removed, 5, "{report:?}");
    assert!(!s.has_blob(&fresh.digest) && !s.has_blob(&img));
    assert_eq!(blobs_on_disk(s), 0);
    assert!(meta::read(s, |m| m.all(meta::BLOBS)).unwrap().is_empty());
    assert!(meta::read(s, |m| m.all(meta::LAYERS)).unwrap().is_empty());
}

#[test]
fn a_blob_leased_before_its_commit_survives_a_prune_until_the_lease_ends() {
    use std::io::Write;
    let f = fixture();
    let s = &f.store;
    let lease = s.lease(Duration::from_secs(3600)).unwrap();
    let mut w = s.writer(&lease).unwrap();
    w.write_all(b"a layer nothing records yet").unwrap();
    let desc = w.commit(None, None).unwrap();
    // A prune right after the commit, before any record refers to the blob.
    let report = s.prune(&image_prune()).unwrap();
    assert_eq!(report.blobs_removed, 0, "{report:?}");
    assert!(s.has_blob(&desc.digest));
    drop(lease);
    let report = s.prune(&image_prune()).unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert_eq!(report.reclaimed, desc.size);
    assert!(!s.has_blob(&desc.digest));
}

#[test]
fn filters_choose_which_dangling_images_go() {
    let f = fixture();
    let s = &f.store;
    let prod = image(s, &["p"], None, serde_json::json!({"env": "prod"}));
    let dev = image(s, &["d"], None, serde_json::json!({"env": "dev"}));
    let mut opts = image_prune();
    opts.image_filter.labels = vec![LabelFilter {
        key: "env".into(),
        value: Some("prod".into()),
        negate: true,
    }];
    let r = s.prune(&opts).unwrap();
    assert_eq!(
        r.images_deleted
            .iter()
            .map(|i| &i.manifest)
            .collect::<Vec<_>>(),
        vec![&dev]
    );
    opts.image_filter = ImageFilter {
        until: Some(
            chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
                .unwrap()
                .timestamp(),
        ),
        labels: vec![],
    };
    assert!(
        s.prune(&opts).unwrap().images_deleted.is_empty(),
        "created 2026: too new"
    );
    opts.image_filter.until = Some(meta::now());
    let r = s.prune(&opts).unwrap();
    assert_eq!(
        r.images_deleted
            .iter()
            .map(|i| &i.manifest)
            .collect::<Vec<_>>(),
        vec![&prod]
    );
}

#[test]
fn builder_prune_keep_storage_removes_least_recently_used_first() {
    let f = fixture();
    let s = &f.store;
    image(s, &["shared"], Some("keep:1"), serde_json::json!({}));
    layer_cache(s, "k-shared", "shared", 1);
    layer_cache(s, "k-old", "old", 10);
    layer_cache(s, "k-mid", "mid", 20);
    layer_cache(s, "k-new", "new", 30);
    let each = 300; // "old".repeat(100)
    let usage = s.disk_usage().unwrap();
    assert_eq!(usage.cache_size, 3 * each);
    let r = s
        .prune(&PruneOptions {
            cache: CachePolicy::Unshared,
            keep_storage: Some(2 * each),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(r.cache_deleted, vec!["k-old".to_string()]);
    assert_eq!(r.reclaimed, each);
    let r = s
        .prune(&PruneOptions {
            cache: CachePolicy::Unshared,
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(
        r.cache_deleted,
        vec!["k-mid".to_string(), "k-new".to_string()]
    );
    assert_eq!(cache_keys(s), ["k-shared".to_string()].into());
    let r = s
        .prune(&PruneOptions {
            cache: CachePolicy::All,
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(r.cache_deleted, vec!["k-shared".to_string()]);
    assert_eq!(r.reclaimed, 0, "the tagged image still holds the layer");
}

#[test]
fn disk_usage_counts_every_referenced_byte_once() {
    let f = fixture();
    let s = &f.store;
    image(s, &["base", "a"], Some("a:1"), serde_json::json!({}));
    image(s, &["base", "b"], None, serde_json::json!({}));
    layer_cache(s, "k-c", "c", 1);
    let u = s.disk_usage().unwrap();
    assert_eq!(u.images.len(), 2);
    assert_eq!(u.tagged_images(), 1);
    assert_eq!(u.images_size + u.cache_size, blobs_on_disk(s));
    assert_eq!(u.cache_size, 100);
    for i in &u.images {
        assert_eq!(i.shared_size, 400, "the base layer"); // "base" × 100
    }
    let r = s.prune(&image_prune()).unwrap();
    assert_eq!(r.reclaimed, u.images_reclaimable);
}

/// An index over `manifests` (amd64, arm64 in turn), stored and recorded with `tags`.
fn index(store: &Store, manifests: &[Digest], tags: &[&str]) -> Digest {
    let archs = ["amd64", "arm64"];
    let entries: Vec<serde_json::Value> = manifests
        .iter()
        .zip(archs)
        .map(|(m, arch)| {
            let size = store.read_blob(m).unwrap().len();
            serde_json::json!({
                "mediaType": media_types::OCI_MANIFEST, "digest": m, "size": size,
                "platform": {"os": "linux", "architecture": arch},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": entries,
    });
    let i = put(
        store,
        &serde_json::to_vec(&index).unwrap(),
        media_types::OCI_INDEX,
    );
    let tags: Vec<Reference> = tags.iter().map(|t| Reference::parse(t).unwrap()).collect();
    store.add_index(&i.digest, &tags).unwrap();
    i.digest
}

#[test]
fn an_index_is_one_image_whose_platforms_go_with_it() {
    let f = fixture();
    let amd = image(&f.store, &["a1", "shared"], None, serde_json::json!({}));
    let arm = image(&f.store, &["b1", "shared"], None, serde_json::json!({}));
    let i = index(&f.store, &[amd.clone(), arm.clone()], &["multi:1"]);
    let listed: Vec<Digest> = f
        .store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.manifest)
        .collect();
    assert_eq!(listed, vec![i.clone()], "images lists the index once");
    let rec = f.store.image(&i).unwrap();
    assert_eq!(rec.id(), &i, "the image id of an index is its digest");
    assert_eq!(
        rec.manifest_for(&crate::platform::Platform::parse("linux/arm64").unwrap()),
        Some(&arm)
    );
    let err = f.store.remove_image(amd.as_str(), true).unwrap_err();
    assert!(
        matches!(err, crate::StoreError::PartOfIndex { .. }),
        "{err}"
    );
    let before = blobs_on_disk(&f.store);

    let report = f.store.prune(&image_prune()).unwrap();
    assert!(
        report.images_deleted.is_empty(),
        "{:?}",
        report.images_deleted
    );
    assert_eq!(
        blobs_on_disk(&f.store),
        before,
        "a tagged index keeps every platform"
    );
    assert!(f.store.verify().unwrap().faults.is_empty());

    f.store.remove_image("multi:1", false).unwrap();
    assert!(
        f.store.images().unwrap().is_empty(),
        "rmi of the tag removes the lot"
    );
    f.store.prune(&image_prune()).unwrap();
    assert_eq!(blobs_on_disk(&f.store), 0, "and prune frees every blob");
}

#[test]
fn an_untagged_index_is_dangling_with_its_platforms() {
    let f = fixture();
    let amd = image(&f.store, &["a1"], None, serde_json::json!({}));
    let arm = image(&f.store, &["b1"], None, serde_json::json!({}));
    let i = index(&f.store, &[amd.clone(), arm.clone()], &[]);
    let kept = image(&f.store, &["k"], Some("keep:1"), serde_json::json!({}));
    let report = f.store.prune(&image_prune()).unwrap();
    let deleted: BTreeSet<Digest> = report
        .images_deleted
        .into_iter()
        .map(|d| d.manifest)
        .collect();
    assert_eq!(deleted, BTreeSet::from([i, amd, arm]));
    let listed: Vec<Digest> = f
        .store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.manifest)
        .collect();
    assert_eq!(listed, vec![kept]);
}

#[test]
fn an_unwritten_layer_record_holds_its_snapshot_and_no_blob() {
    let diff_id = blob_of("unwritten");
    let chain = crate::chain_id::chain_ids(std::slice::from_ref(&diff_id))
        .pop()
        .unwrap();
    let rec = CacheRecord {
        v: 1,
        diff_id: Some(diff_id.clone()),
        chain_id: Some(chain.clone()),
        layer: None,
        unwritten: Some(crate::records::UnwrittenLayer {
            source_date_epoch: None,
        }),
        config_delta: serde_json::Value::Null,
        created_at: 1,
        last_used: 1,
        size: 100,
    };
    assert!(rec.is_unwritten());
    let roots = roots::Graph::default().cache_roots(&rec);
    assert_eq!(
        roots,
        vec![roots::Node::Layer(diff_id), roots::Node::Snapshot(chain)]
    );
}
