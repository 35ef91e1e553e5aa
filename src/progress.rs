//! Build progress on the terminal: indicatif spinners on a TTY, docker's `--progress plain`
//! lines otherwise (`#3 [2/5] RUN make`, output lines prefixed with the step number and the
//! elapsed time, `#3 CACHED`, `#3 DONE 0.4s`).

use std::io::Write;
use std::time::{Duration, Instant};

use builder::progress::{Reporter, StepEnd, StepInfo};
use indicatif::{ProgressBar, ProgressStyle};

/// docker's plain progress.
pub struct PlainReporter {
    started: Instant,
}

impl PlainReporter {
    pub fn new() -> PlainReporter {
        PlainReporter {
            started: Instant::now(),
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Reporter for PlainReporter {
    fn step_started(&mut self, step: &StepInfo) {
        self.started = Instant::now();
        eprintln!("#{} {} {}", step.number, label(step), step.text);
    }

    fn step_output(&mut self, step: &StepInfo, line: &[u8]) {
        eprintln!(
            "#{} {:.3} {}",
            step.number,
            self.elapsed(),
            String::from_utf8_lossy(line)
        );
    }

    fn step_finished(&mut self, step: &StepInfo, end: StepEnd) {
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
    bar: Option<ProgressBar>,
    last_line: String,
}

impl TtyReporter {
    pub fn new() -> TtyReporter {
        TtyReporter {
            bar: None,
            last_line: String::new(),
        }
    }
}

impl Reporter for TtyReporter {
    fn step_started(&mut self, step: &StepInfo) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                " => {spinner} {prefix} {elapsed_precise:.dim} {wide_msg:.dim}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{} {}", label(step), step.text));
        bar.enable_steady_tick(Duration::from_millis(100));
        self.bar = Some(bar);
        self.last_line.clear();
    }

    fn step_output(&mut self, _: &StepInfo, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if !text.trim().is_empty() {
            self.last_line = text.into_owned();
            if let Some(bar) = &self.bar {
                bar.set_message(self.last_line.clone());
            }
        }
    }

    fn step_finished(&mut self, step: &StepInfo, end: StepEnd) {
        let status = match end {
            StepEnd::Cached => "CACHED".to_string(),
            StepEnd::Done(d) => secs(d),
            StepEnd::Failed(d) => format!("ERROR after {}", secs(d)),
        };
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let _ = writeln!(
            std::io::stderr(),
            " => {} {} {}",
            label(step),
            step.text,
            status
        );
    }

    fn note(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
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
