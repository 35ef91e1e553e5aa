//! Per-blob progress: indicatif bars (bytes, rate) when stdout is a terminal, docker's
//! plain status lines (`abc123def456: Pull complete`) otherwise, nothing when quiet.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    Bars,
    Plain,
    Quiet,
}

/// The progress display of one command.
#[derive(Clone)]
pub struct Progress {
    mode: ProgressMode,
    multi: Option<Arc<MultiProgress>>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stdout().is_terminal() => ProgressMode::Bars,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        let multi = (mode == ProgressMode::Bars)
            .then(|| Arc::new(MultiProgress::with_draw_target(ProgressDrawTarget::stdout())));
        Progress { mode, multi }
    }

    /// Prints a whole line (headers like `latest: Pulling from library/busybox`).
    pub fn line(&self, text: &str) {
        match (&self.mode, &self.multi) {
            (ProgressMode::Quiet, _) => {}
            (_, Some(m)) => {
                let _ = m.println(text);
            }
            _ => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// A finished line for a blob that needs no transfer (`Already exists`).
    pub fn done(&self, id: &str, status: &str) {
        match (&self.mode, &self.multi) {
            (ProgressMode::Quiet, _) => {}
            (_, Some(m)) => {
                let b = m.add(ProgressBar::new(0));
                b.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}").expect("the template is valid"),
                );
                b.set_prefix(id.to_string());
                b.finish_with_message(status.to_string());
            }
            _ => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{id}: {status}");
            }
        }
    }

    /// A bar for one blob, labelled with its short id, starting with `status`.
    pub fn bar(&self, id: &str, total: u64, status: &str) -> Bar {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(total));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            b.set_prefix(id.to_string());
            b.set_message(status.to_string());
            b
        });
        let b = Bar {
            id: id.to_string(),
            bar,
            plain: self.mode == ProgressMode::Plain,
        };
        if b.plain {
            b.print(status);
        }
        b
    }
}

/// One blob's line. Cheap to clone; all clones drive the same bar.
#[derive(Clone)]
pub struct Bar {
    id: String,
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Bar {
    /// A bar that shows nothing.
    pub fn hidden() -> Bar {
        Bar {
            id: String::new(),
            bar: None,
            plain: false,
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Changes the total (a layer compressed before its upload gets smaller).
    pub fn set_length(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    pub fn status(&self, status: &str) {
        if let Some(b) = &self.bar {
            b.set_message(status.to_string());
        } else if self.plain {
            self.print(status);
        }
    }

    /// Ends the bar with a final status (`Pull complete`, `Pushed`, `Already exists`).
    pub fn finish(&self, status: &str) {
        if let Some(b) = &self.bar {
            b.set_style(
                ProgressStyle::with_template("{prefix}: {msg}").expect("the template is valid"),
            );
            b.finish_with_message(status.to_string());
        } else if self.plain {
            self.print(status);
        }
    }

    fn print(&self, status: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}: {status}", self.id);
    }
}
