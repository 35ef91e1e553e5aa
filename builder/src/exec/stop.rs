//! Stopping running steps from another thread: a build whose stage failed stops the RUN
//! steps its other stages are running (BuildKit cancels the rest of the solve the same way).
//!
//! A [`Stopper`] is shared by every step of one build. The sandbox registers the helper
//! process of each running step with it; [`Stopper::stop`] sends SIGKILL to every registered
//! helper and to any registered later. The step itself is pid 1 of the helper's pid namespace
//! and dies with it (PR_SET_PDEATHSIG), so the whole step goes; `run_step` then returns an
//! error and the caller removes the step's directories as after any failed step.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, Default)]
pub struct Stopper {
    state: Arc<Mutex<StopState>>,
}

#[derive(Debug, Default)]
struct StopState {
    is_stopped: bool,
    /// The helper (child A) of every step running now.
    running: HashSet<libc::pid_t>,
}

impl Stopper {
    pub fn new() -> Stopper {
        Stopper::default()
    }

    /// Kill every registered step and every step registered from now on.
    pub fn stop(&self) {
        let mut state = self.lock();
        state.is_stopped = true;
        for pid in &state.running {
            kill(*pid);
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.lock().is_stopped
    }

    /// A step's helper started; it is killed at once when the stopper has fired already.
    pub(super) fn register(&self, pid: libc::pid_t) {
        let mut state = self.lock();
        if state.is_stopped {
            kill(pid);
        }
        state.running.insert(pid);
    }

    /// A step's helper was reaped (its pid may be reused from now on).
    pub(super) fn unregister(&self, pid: libc::pid_t) {
        self.lock().running.remove(&pid);
    }

    fn lock(&self) -> MutexGuard<'_, StopState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn kill(pid: libc::pid_t) {
    // SAFETY: a plain syscall on a child of this process that is not reaped yet (it stays
    // registered until `unregister`, which comes after waitpid), so the pid is still ours.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}
