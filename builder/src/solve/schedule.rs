//! Running the stages of a build as a graph, BuildKit's way: a stage starts once every
//! stage it builds on (`FROM stage`) or takes files from (`COPY --from`, `RUN
//! --mount=from=`) is done, at most `jobs` at once, each on a thread of its own. Among
//! the stages that are ready, the earliest in the Dockerfile starts first, so `jobs = 1`
//! builds them one after another in Dockerfile order.
//!
//! The first stage to fail fails the build: the [`Stopper`] fires, so the running stages
//! end at their next step (their running RUN is killed), no further stage starts, and
//! the first error is returned once every started stage has ended and cleaned up after
//! itself.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;

use super::{Result, StageResult};
use crate::exec::Stopper;

/// How many stages run at once when `--jobs` is not given: twice the cores, since a
/// stage spends much of its time waiting (a RUN's network, sleep or disk), not computing.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 2
}

/// Builds the stages in `order` (the stages the target needs, in Dockerfile order);
/// `deps[i]` are the stages stage `i` needs first. `build(i, done)` builds stage `i`,
/// with `done[d]` set for every `d` in `deps[i]`, and returns its result and what else
/// the caller wants back from it (`T`).
///
/// Returns every stage's result (indexed by stage) and the `T`s in `order`.
pub fn run<T: Send>(
    order: &[usize],
    deps: &[Vec<usize>],
    jobs: usize,
    stop: &Stopper,
    build: impl Fn(usize, &[Option<StageResult>]) -> Result<(StageResult, T)> + Sync,
) -> Result<(Vec<Option<StageResult>>, Vec<T>)> {
    let jobs = jobs.max(1);
    let mut results: Vec<Option<StageResult>> = vec![None; deps.len()];
    let mut extras: Vec<Option<T>> = (0..deps.len()).map(|_| None).collect();
    let mut first_error = None;
    let mut panicked = None;
    let build = &build;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let mut is_started = vec![false; deps.len()];
        let mut running = 0;
        loop {
            if first_error.is_none() && panicked.is_none() {
                for &i in order {
                    if running >= jobs {
                        break;
                    }
                    let is_ready = deps[i].iter().all(|d| results[*d].is_some());
                    if is_started[i] || !is_ready {
                        continue;
                    }
                    is_started[i] = true;
                    running += 1;
                    let mut done: Vec<Option<StageResult>> = vec![None; deps.len()];
                    for d in &deps[i] {
                        done[*d] = results[*d].clone();
                    }
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let out = panic::catch_unwind(AssertUnwindSafe(|| build(i, &done)));
                        // The receiver lives until every started stage has reported.
                        let _ = tx.send((i, out));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, out)) = rx.recv() else { break };
            running -= 1;
            match out {
                Ok(Ok((result, extra))) => {
                    results[i] = Some(result);
                    extras[i] = Some(extra);
                }
                Ok(Err(e)) => {
                    stop.stop();
                    // A stage stopped because of the first failure reports `Stopped`;
                    // the first real error is the build's.
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
                Err(payload) => {
                    stop.stop();
                    panicked.get_or_insert(payload);
                }
            }
        }
    });
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let extras = order.iter().filter_map(|i| extras[*i].take()).collect();
    Ok((results, extras))
}
