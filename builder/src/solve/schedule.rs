//! Running the stages of a build as a graph, BuildKit's way: a stage starts once the stage
//! it builds on (`FROM stage`) is done and every stage it takes files from (`COPY
//! --from`, `RUN --mount=from=`) has started, at most `jobs` at once, each on a thread of
//! its own; it waits for one of those only at the step that reads it ([`Done::get`]), as
//! BuildKit runs every vertex whose own inputs are ready (a stage's `RUN apt-get install`
//! overlaps the stage it later copies a binary from). Among the stages that are ready,
//! the earliest in the Dockerfile starts first, so `jobs = 1` builds them one after
//! another in Dockerfile order.
//!
//! Waiting cannot deadlock: a stage waits only for stages that have started, which are
//! earlier in the Dockerfile, so every chain of waits ends at a stage that is running.
//!
//! The first stage to fail fails the build: the [`Stopper`] fires, so the running stages
//! end at their next step (their running RUN is killed, a stage waiting for another's
//! result gets [`BuildError::Stopped`]), no further stage starts, and the first error is
//! returned once every started stage has ended and cleaned up after itself.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Condvar, Mutex, MutexGuard};

use super::{BuildError, Result, StageResult};
use crate::exec::Stopper;

/// How many stages run at once when `--jobs` is not given: twice the cores, since a
/// stage spends much of its time waiting (a RUN's network, sleep or disk), not computing.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 2
}

/// The results of the stages built so far, shared by the running stages.
struct Shared {
    results: Mutex<Vec<Option<StageResult>>>,
    /// Signalled when a stage is done and when the build stops.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Option<StageResult>>> {
        // A stage that panicked holding the lock left the results as they were.
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records stage `i`'s result and wakes the stages waiting for one.
    fn publish(&self, i: usize, result: StageResult) {
        self.lock()[i] = Some(result);
        self.changed.notify_all();
    }

    /// Wakes every waiting stage once the build has stopped. Under the lock: a waiter has
    /// either seen the stop or is waiting, and so is woken.
    fn wake_all(&self) {
        drop(self.lock());
        self.changed.notify_all();
    }
}

/// What a running stage sees of the others: the results of the stages it needs.
pub struct Done<'a> {
    shared: &'a Shared,
    deps: &'a [usize],
    stop: &'a Stopper,
}

impl Done<'_> {
    /// The result of stage `i`, waiting until it is built when this stage needs it (it
    /// is one of the stage's dependencies); `None` for a stage it does not need.
    /// `Err(Stopped)` when the build stops first.
    pub fn get(&self, i: usize) -> Result<Option<StageResult>> {
        if !self.deps.contains(&i) {
            return Ok(None);
        }
        let mut results = self.shared.lock();
        loop {
            if let Some(r) = &results[i] {
                return Ok(Some(r.clone()));
            }
            if self.stop.is_stopped() {
                return Err(BuildError::Stopped);
            }
            results = self
                .shared
                .changed
                .wait(results)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Builds the stages in `order` (the stages the target needs, in Dockerfile order);
/// `deps[i]` are the stages stage `i` needs, `starts_after[i]` those of them that must be
/// done before it starts (its `FROM stage`); the others must have started. `build(i,
/// done)` builds stage `i`, getting the results of `deps[i]` from `done`, and returns its
/// result and what else the caller wants back from it (`T`).
///
/// Returns every stage's result (indexed by stage) and the `T`s in `order`.
pub fn run<T: Send>(
    order: &[usize],
    deps: &[Vec<usize>],
    starts_after: &[Vec<usize>],
    jobs: usize,
    stop: &Stopper,
    build: impl Fn(usize, &Done) -> Result<(StageResult, T)> + Sync,
) -> Result<(Vec<Option<StageResult>>, Vec<T>)> {
    let jobs = jobs.max(1);
    let shared = Shared {
        results: Mutex::new(vec![None; deps.len()]),
        changed: Condvar::new(),
    };
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
                let results = shared.lock();
                for &i in order {
                    if running >= jobs {
                        break;
                    }
                    let is_ready = starts_after[i].iter().all(|d| results[*d].is_some())
                        && deps[i].iter().all(|d| is_started[*d]);
                    if is_started[i] || !is_ready {
                        continue;
                    }
                    is_started[i] = true;
                    running += 1;
                    let done = Done {
                        shared: &shared,
                        deps: &deps[i],
                        stop,
                    };
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let out = panic::catch_unwind(AssertUnwindSafe(|| build(i, &done)));
                        // The receiver lives until every started stage has reported.
                        let _ = tx.send((i, out));
                    });
                }
                drop(results);
            }
            if running == 0 {
                break;
            }
            let Ok((i, out)) = rx.recv() else { break };
            running -= 1;
            match out {
                Ok(Ok((result, extra))) => {
                    shared.publish(i, result);
                    extras[i] = Some(extra);
                }
                Ok(Err(e)) => {
                    stop.stop();
                    shared.wake_all();
                    // A stage stopped because of the first failure reports `Stopped`;
                    // the first real error is the build's.
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
                Err(payload) => {
                    stop.stop();
                    shared.wake_all();
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
    let results = shared
        .results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    Ok((results, extras))
}
