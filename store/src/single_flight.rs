//! One piece of work at a time per key among the threads of a process.
//!
//! The stages of a build run on threads of their own and often need the same snapshot
//! (three stages `FROM` one base). Unpacking it three times at once costs three times the
//! disk work, and the losers of the rename race throw their copies away. A
//! [`SingleFlight`] lets the first thread do the work while the others wait for it, then
//! look again. Other processes are not covered: across processes the store's
//! rename-into-place keeps one copy and the loser discards its own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};

/// Keys (paths of what is being made) that a thread of this process is working on.
#[derive(Default)]
pub struct SingleFlight {
    working: Mutex<HashSet<PathBuf>>,
    finished: Condvar,
}

impl SingleFlight {
    /// Runs `work` for `key` unless `is_done()` says the result already exists. While
    /// another thread runs work for the same key, waits for it and asks `is_done()`
    /// again, so a failed attempt by one thread is retried by the next. Returns `None`
    /// when the work was not needed.
    pub fn run<R>(
        &self,
        key: &Path,
        is_done: impl Fn() -> bool,
        work: impl FnOnce() -> R,
    ) -> Option<R> {
        {
            let mut working = self.working.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if is_done() {
                    return None;
                }
                if working.insert(key.to_path_buf()) {
                    break;
                }
                working = self
                    .finished
                    .wait(working)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        // Removes the key even if `work` panics, so waiters never hang.
        struct Release<'a>(&'a SingleFlight, &'a Path);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let mut working = self
                    .0
                    .working
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                working.remove(self.1);
                self.0.finished.notify_all();
            }
        }
        let _release = Release(self, key);
        Some(work())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn a_thread_wanting_a_key_in_work_waits_instead_of_working() {
        let flight = SingleFlight::default();
        let done = AtomicBool::new(false);
        let runs = AtomicUsize::new(0);
        let (checked_tx, checked_rx) = mpsc::channel();
        std::thread::scope(|s| {
            let second = flight.run(
                Path::new("/k"),
                || done.load(Ordering::SeqCst),
                || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let second = s.spawn(|| {
                        flight.run(
                            Path::new("/k"),
                            || {
                                let _ = checked_tx.send(());
                                done.load(Ordering::SeqCst)
                            },
                            || runs.fetch_add(1, Ordering::SeqCst),
                        )
                    });
                    // The second thread has seen the work unfinished; finish it.
                    checked_rx.recv().expect("second thread checks");
                    done.store(true, Ordering::SeqCst);
                    second
                },
            );
            let second = second.expect("the first thread works").join();
            assert_eq!(
                second.ok(),
                Some(None),
                "the second thread found the work done"
            );
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_attempt_is_retried_by_the_next_thread() {
        let flight = SingleFlight::default();
        let first = flight.run(Path::new("/k"), || false, || Err::<(), &str>("disk full"));
        assert_eq!(first, Some(Err("disk full")));
        let second = flight.run(Path::new("/k"), || false, || Ok::<(), &str>(()));
        assert_eq!(second, Some(Ok(())));
        assert_eq!(flight.run(Path::new("/k"), || true, || ()), None);
    }
}
