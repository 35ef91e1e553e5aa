//! Per-blob progress: indicatif bars (bytes, rate) when stdout is a terminal, docker's
//! plain status lines (`abc123def456: Pull complete`) otherwise, nothing when quiet.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Bars drawn and not finished. While there are none, lines go straight to stdout, so
    /// the final lines (`digest:`, `Status:`) are plain text and not padded to the width
    /// as indicatif pads the lines it draws.
    live: Arc<AtomicUsize>,
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
        Progress {
            mode,
            multi,
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Prints a whole line (headers like `latest: Pulling from library/busybox`).
    pub fn line(&self, text: &str) {
        match (&self.mode, &self.multi) {
            (ProgressMode::Quiet, _) => {}
            (_, Some(m)) if self.live.load(Ordering::SeqCst) > 0 => above_bars(m, text),
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
            (_, Some(m)) if self.live.load(Ordering::SeqCst) > 0 => {
                above_bars(m, &format!("{id}: {status}"))
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
            self.live.fetch_add(1, Ordering::SeqCst);
            b
        });
        let b = Bar {
            id: id.to_string(),
            bar,
            multi: self.multi.clone(),
            plain: self.mode == ProgressMode::Plain,
            live: self.live.clone(),
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
    /// The display `bar` is drawn in.
    multi: Option<Arc<MultiProgress>>,
    plain: bool,
    live: Arc<AtomicUsize>,
}

impl Bar {
    /// A bar that shows nothing.
    pub fn hidden() -> Bar {
        Bar {
            id: String::new(),
            bar: None,
            multi: None,
            plain: false,
            live: Arc::new(AtomicUsize::new(0)),
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
        if let Some(b) = self.bar.as_ref().filter(|b| !b.is_finished()) {
            // The final line is printed above the live bars, where it stays as the terminal's
            // own text; the bar goes. A finished bar kept in the live area would be erased
            // and redrawn (padded to the width) by every later line.
            b.finish_and_clear();
            let line = format!("{}: {status}", self.id);
            match &self.multi {
                Some(m) => above_bars(m, &line),
                None => b.println(line),
            }
            self.live.fetch_sub(1, Ordering::SeqCst);
        } else if self.plain {
            self.print(status);
        }
    }

    fn print(&self, status: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}: {status}", self.id);
    }
}

/// Writes `text` as a plain line above the live bars: the bars are cleared, the line goes
/// straight to stdout, the bars are drawn again below it. (`MultiProgress::println` would
/// draw the line itself, padded with spaces to the terminal's width.)
fn above_bars(multi: &MultiProgress, text: &str) {
    multi.suspend(|| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    });
}
