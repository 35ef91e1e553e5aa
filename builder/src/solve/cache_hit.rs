//! The cache-hit policy of a step and the recording of its layer, beside the key
//! derivation (`crate::cache`): a key hits the local `cache` tree when its record's layer
//! blob is still in the store (or, for a layer recorded unwritten, its snapshot: §4.8),
//! else an imported `--cache-from` record, whose layer download starts at once and overlaps
//! the next steps' lookups (docs/design.md §4.3). Every layer step, hit or built, ends in
//! [`add_layer`].

use store::{CacheRecord, ChainId, LayerRef, Store, UnwrittenLayer};

use super::history_text::push_history;
use super::state::{now_or_epoch, BuildRun, StageState};
use super::Result;
use crate::cache::CacheKey;

/// Where a step's layer came from, and so whether `add_layer` records it in the cache.
#[derive(Debug, Clone, Copy)]
pub(super) enum Origin {
    /// Built by this step now: recorded, stamped now (or SOURCE_DATE_EPOCH).
    Built,
    /// Built by this step now, its blob not written (a stage the build does not export,
    /// docs/design.md §4.8): recorded as its snapshot, diff_id and size, like `Built`.
    BuiltUnwritten,
    /// The local cache's record, first built at this time: already recorded.
    Cached(i64),
    /// An imported (`--cache-from`) record, first built at this time: recorded locally
    /// so the next build finds it without the registry.
    Imported(i64),
}

/// A cache hit: the record's layer, if its blob is still in the store; else, with
/// `--cache-from`, an imported record's layer, whose download starts now.
pub(super) fn cache_hit(run: &mut BuildRun, key: &CacheKey) -> Result<Option<(LayerRef, Origin)>> {
    if run.build.opts.no_cache || run.is_cache_ignored {
        return Ok(None);
    }
    if let Some(rec) = run.build.store.cache_get(key.as_str())? {
        if rec.is_unwritten() {
            if let Some(hit) = unwritten_hit(run, key, rec)? {
                return Ok(Some(hit));
            }
        } else if let (Some(blob), Some(diff_id)) = (rec.layer, rec.diff_id) {
            // Lease first, then check: a prune that starts in between sees the lease.
            run.build.lease.add_digest(&blob.digest)?;
            if run.build.store.has_blob(&blob.digest) {
                return Ok(Some((
                    LayerRef { blob, diff_id },
                    Origin::Cached(rec.created_at),
                )));
            }
        }
    }
    let Some(cache) = run.build.remote.cache() else {
        return Ok(None);
    };
    let Some(remote) = cache.lookup(key) else {
        return Ok(None);
    };
    run.build.lease.add_digest(&remote.layer.digest)?;
    if !run.build.store.has_blob(&remote.layer.digest) {
        if let Err(e) = cache.fetch(run.build.lease, &remote) {
            // As BuildKit does: a cache that cannot be read is a miss, not a failure.
            run.note(&format!(
                "WARNING: importing cache layer {}: {}",
                remote.layer.digest,
                crate::remote::error_chain(e.as_ref())
            ));
            return Ok(None);
        }
    }
    let layer = LayerRef {
        blob: remote.layer,
        diff_id: remote.diff_id,
    };
    Ok(Some((layer, Origin::Imported(remote.created_at))))
}

/// A hit on a record whose layer is not written: it hits while its snapshot is there. A
/// stage the build exports needs the blob, which is made now (and refused if the snapshot
/// no longer gives the recorded diff_id); another stage goes on with the snapshot.
fn unwritten_hit(
    run: &mut BuildRun,
    key: &CacheKey,
    rec: CacheRecord,
) -> Result<Option<(LayerRef, Origin)>> {
    let (Some(diff_id), Some(chain)) = (rec.diff_id.clone(), rec.chain_id.clone()) else {
        return Ok(None);
    };
    // Lease first, then check: a prune that starts in between sees the lease.
    run.build.lease.add_snapshot(&chain)?;
    if !run.build.store.snapshot_dir(&chain).is_dir() {
        return Ok(None);
    }
    let origin = Origin::Cached(rec.created_at);
    let blob = if run.writes_layers {
        crate::unwritten::materialise_record(run.build.store, run.build.lease, key.as_str(), rec)?
    } else {
        crate::unwritten::planned_blob(&diff_id, rec.size)
    };
    Ok(Some((LayerRef { blob, diff_id }, origin)))
}

/// Record a new layer step in the cache and the stage.
pub(super) fn add_layer(
    run: &mut BuildRun,
    state: &mut StageState,
    key: CacheKey,
    layer: LayerRef,
    created_by: &str,
    origin: Origin,
) -> Result<()> {
    let now = now_or_epoch(None);
    let created_at = match origin {
        Origin::Built | Origin::BuiltUnwritten => now_or_epoch(run.build.opts.source_date_epoch),
        Origin::Cached(t) | Origin::Imported(t) => t,
    };
    let key = match origin {
        Origin::Built | Origin::BuiltUnwritten if run.is_cache_ignored => {
            CacheKey::for_rebuilt(&key, &layer.diff_id.to_string())
        }
        _ => key,
    };
    let chain = chain_of(&state.layers, &layer);
    let written = !matches!(origin, Origin::BuiltUnwritten);
    if !matches!(origin, Origin::Cached(_)) {
        let unwritten = (!written).then_some(UnwrittenLayer {
            source_date_epoch: run.build.opts.source_date_epoch,
        });
        let rec = CacheRecord {
            v: 1,
            diff_id: Some(layer.diff_id.clone()),
            chain_id: Some(chain.clone()),
            layer: written.then(|| layer.blob.clone()),
            unwritten,
            config_delta: serde_json::Value::Null,
            created_at,
            last_used: now,
            size: layer.blob.size,
        };
        run.build.store.cache_put(key.as_str(), &rec)?;
    }
    if written {
        run.build.lease.add_digest(&layer.blob.digest)?;
    }
    run.build.lease.add_snapshot(&chain)?;
    run.note_layer_step(&key, &layer, created_at);
    state.layers.push(layer);
    state.key = key;
    push_history(&mut state.config.history, created_by, created_at, false);
    Ok(())
}

pub(super) fn chain_of(below: &[LayerRef], top: &LayerRef) -> ChainId {
    let mut ids: Vec<store::Digest> = below.iter().map(|l| l.diff_id.clone()).collect();
    ids.push(top.diff_id.clone());
    Store::chain_ids(&ids).pop().expect("one id per layer")
}
