//! What a build tells its user while it runs. The builder calls a `Reporter`; the binary
//! implements it with indicatif bars on a TTY or plain lines otherwise (docker's
//! `--progress plain` shape: `#3 [2/5] RUN make`, `#3 CACHED`, `#3 DONE 0.4s`).

use std::time::Duration;

/// One step as the user sees it.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// Running number over the whole build (docker's `#N`).
    pub number: usize,
    /// The stage's name (`builder`, `stage-1`); empty in a single-stage build, where
    /// docker prints just `[2/5]`.
    pub stage: String,
    /// Position inside the stage and the stage's step count: `[2/5]`.
    pub index: usize,
    pub total: usize,
    /// The instruction as written (one line, continuation joined).
    pub text: String,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// Its result came from the build cache; nothing ran.
    Cached,
    /// It ran (or changed only the config) in this time.
    Done(Duration),
    /// It failed; the build stops.
    Failed(Duration),
}

/// `Send`: the stages of a build run on threads of their own and report through one lock.
pub trait Reporter: Send {
    fn step_started(&mut self, step: &StepInfo);
    /// One line of a running RUN step's output (stdout and stderr), without its newline.
    fn step_output(&mut self, step: &StepInfo, line: &[u8]);
    fn step_finished(&mut self, step: &StepInfo, end: StepEnd);
    /// A free-form line (resolving an image, writing the image, naming it).
    fn note(&mut self, text: &str);
}

/// A reporter that prints nothing (`-q`, tests).
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn step_started(&mut self, _: &StepInfo) {}
    fn step_output(&mut self, _: &StepInfo, _: &[u8]) {}
    fn step_finished(&mut self, _: &StepInfo, _: StepEnd) {}
    fn note(&mut self, _: &str) {}
}
