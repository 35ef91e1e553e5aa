//! Build progress on the terminal: indicatif spinners on a TTY, docker's `--progress plain`
//! lines otherwise (`#3 [2/5] RUN make`, output lines prefixed with the step number and the
//! elapsed time, `#3 CACHED`, `#3 DONE 0.4s`). Stages that build side by side have several
//! steps running at once: plain lines interleave, each carrying its step's `#N` (as
//! BuildKit's do), and the TTY view shows one spinner per running step.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use builder::progress::{Reporter, StepEnd, StepInfo};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// docker's plain progress.
pub struct PlainReporter {
    /// When each running step started, by `#N`.
    started: HashMap<usize, Instant>,
}

impl PlainReporter {
    pub fn new() -> PlainReporter {
        PlainReporter {
            started: HashMap::new(),
        }
    }

    fn elapsed(&self, step: &StepInfo) -> f64 {
        self.started
            .get(&step.number)
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

impl Reporter for PlainReporter {
    fn step_started(&mut self, step: &StepInfo) {
        self.started.insert(step.number, Instant::now());
        eprintln!("#{} {} {}", step.number, label(step), step.text);
    }

    fn step_output(&mut self, step: &StepInfo, line: &[u8]) {
        eprintln!(
            "#{} {:.3} {}",
            step.number,
            self.elapsed(step),
            String::from_utf8_lossy(line)
        );
    }

    fn step_finished(&mut self, step: &StepInfo, end: StepEnd) {
        self.started.remove(&step.number);
        match end {
            StepEnd::Cached => eprintln!("#{} CACHED", step.number),
            StepEnd::Done(d) => eprintln!("#{} DONE {}", step.number, secs(d)),
            StepEnd::Failed(d) => eprintln!("#{} ERROR after {}", step.number, secs(d)),
        }
        eprintln!();
    }

    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// A spinner per running step; finished steps stay as one line each, like BuildKit's TTY view.
pub struct TtyReporter {
    bars: MultiProgress,
    /// The spinner of each running step, by `#N`.
    running: HashMap<usize, ProgressBar>,
}

impl TtyReporter {
    pub fn new() -> TtyReporter {
        TtyReporter {
            bars: MultiProgress::new(),
            running: HashMap::new(),
        }
    }
}

impl Reporter for TtyReporter {
    fn step_started(&mut self, step: &StepInfo) {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                " => {spinner} {prefix} {elapsed_precise:.dim} {wide_msg:.dim}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{} {}", label(step), step.text));
        bar.enable_steady_tick(Duration::from_millis(100));
        self.running.insert(step.number, bar);
    }

    fn step_output(&mut self, step: &StepInfo, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if !text.trim().is_empty() {
            if let Some(bar) = self.running.get(&step.number) {
                bar.set_message(text.into_owned());
            }
        }
    }

    fn step_finished(&mut self, step: &StepInfo, end: StepEnd) {
        let status = match end {
            StepEnd::Cached => "CACHED".to_string(),
            StepEnd::Done(d) => secs(d),
            StepEnd::Failed(d) => format!("ERROR after {}", secs(d)),
        };
        if let Some(bar) = self.running.remove(&step.number) {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
        self.print(&format!(" => {} {} {}", label(step), step.text, status));
    }

    fn note(&mut self, text: &str) {
        self.print(text);
    }
}

impl TtyReporter {
    /// One line above the spinners of the steps still running (straight to stderr when
    /// none runs, or when the spinners are not drawn).
    fn print(&self, line: &str) {
        let is_drawn = !self.running.is_empty() && !self.bars.is_hidden();
        if !is_drawn || self.bars.println(line).is_err() {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// docker's step label: `[2/5]` in a single-stage build, `[builder 2/5]` otherwise.
fn label(step: &StepInfo) -> String {
    if step.stage.is_empty() {
        format!("[{}/{}]", step.index, step.total)
    } else {
        format!("[{} {}/{}]", step.stage, step.index, step.total)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
