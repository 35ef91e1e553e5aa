//! The close-on-exec pipes a step's start is ordered with: the sandbox's output, status and
//! go pipes, and slirp4netns's ready and exit pipes (network.rs).

use std::os::fd::OwnedFd;

use super::{ExecError, Result};

/// A close-on-exec pipe: `(read end, write end)`.
pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| ExecError::Setup {
        step: "creating a pipe".into(),
        source: e.into(),
    })
}
