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
    /// One line above the spinners of the steps still running: they are cleared, the line
    /// goes straight to stderr as plain text, and they are drawn again below it
    /// (`MultiProgress::println` would draw it padded to the terminal's width).
    fn print(&self, line: &str) {
        let write = || {
            let _ = writeln!(std::io::stderr(), "{line}");
        };
        if self.running.is_empty() || self.bars.is_hidden() {
            write();
        } else {
            self.bars.suspend(write);
        }
    }
}

/// buildx's `--progress rawjson`: one BuildKit `SolveStatus` object per line on stderr, as
/// progressui's raw JSON display encodes each update. A step is a vertex (its digest a
/// stable id of `#N` and its name, its name `[stage i/n] INSTRUCTION`): one object when it
/// starts (`started`), one per output line (`logs`, data base64 as Go encodes `[]byte`),
/// one when it ends (`completed`, with `cached` or `error`). A note is a vertex that
/// starts and completes at once.
pub struct RawJsonReporter {
    /// When each running step started (RFC 3339), by `#N`.
    started: HashMap<usize, String>,
    /// Notes are numbered on their own, after the steps' range.
    notes: usize,
}

impl RawJsonReporter {
    pub fn new() -> RawJsonReporter {
        RawJsonReporter {
            started: HashMap::new(),
            notes: 0,
        }
    }

    fn emit(status: serde_json::Value) {
        let _ = writeln!(std::io::stderr(), "{status}");
    }
}

/// The vertex digest of a step: `sha256:` of its number and name, the same in every event.
fn vertex_digest(id: &str, name: &str) -> String {
    store::Digest::sha256_of(format!("strata-vertex\0{id}\0{name}").as_bytes()).to_string()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn step_name(step: &StepInfo) -> String {
    format!("{} {}", label(step), step.text)
}

impl Reporter for RawJsonReporter {
    fn step_started(&mut self, step: &StepInfo) {
        let name = step_name(step);
        let now = now_rfc3339();
        self.started.insert(step.number, now.clone());
        Self::emit(serde_json::json!({"vertexes": [{
            "digest": vertex_digest(&step.number.to_string(), &name),
            "name": name,
            "started": now,
        }]}));
    }

    fn step_output(&mut self, step: &StepInfo, line: &[u8]) {
        use base64::Engine;
        let mut data = line.to_vec();
        data.push(b'\n');
        Self::emit(serde_json::json!({"logs": [{
            "vertex": vertex_digest(&step.number.to_string(), &step_name(step)),
            "stream": 1,
            "data": base64::engine::general_purpose::STANDARD.encode(&data),
            "timestamp": now_rfc3339(),
        }]}));
    }

    fn step_finished(&mut self, step: &StepInfo, end: StepEnd) {
        let name = step_name(step);
        let now = now_rfc3339();
        let started = self
            .started
            .remove(&step.number)
            .unwrap_or_else(|| now.clone());
        let mut vertex = serde_json::json!({
            "digest": vertex_digest(&step.number.to_string(), &name),
            "name": name,
            "started": started,
            "completed": now,
        });
        match end {
            StepEnd::Cached => vertex["cached"] = true.into(),
            StepEnd::Done(_) => {}
            StepEnd::Failed(_) => vertex["error"] = "step failed".into(),
        }
        Self::emit(serde_json::json!({ "vertexes": [vertex] }));
    }

    fn note(&mut self, text: &str) {
        self.notes += 1;
        let now = now_rfc3339();
        Self::emit(serde_json::json!({"vertexes": [{
            "digest": vertex_digest(&format!("note-{}", self.notes), text),
            "name": text,
            "started": now,
            "completed": now,
        }]}));
    }
}

/// The digest of the `[internal] load build definition from NAME` vertex, which BuildKit's
/// frontend puts the build checks' warnings on, and its name.
pub fn definition_vertex(report: &builder::dockerfile::CheckReport) -> (String, String) {
    let name = format!("[internal] load build definition from {}", report.file_name);
    (vertex_digest("definition", &name), name)
}

/// The build checks' warnings as BuildKit's frontend reports them in a `SolveStatus`: the
/// definition vertex, then the warnings on it (see `engine::warnings`). Nothing without
/// warnings.
pub fn raw_json_warnings(report: &builder::dockerfile::CheckReport, dockerfile: &[u8]) {
    if report.warnings.is_empty() {
        return;
    }
    let (vertex, name) = definition_vertex(report);
    let now = now_rfc3339();
    RawJsonReporter::emit(serde_json::json!({"vertexes": [{
        "digest": vertex,
        "name": name,
        "started": now,
        "completed": now,
    }]}));
    let warnings = engine::warnings::vertex_warnings(report, dockerfile, &vertex);
    RawJsonReporter::emit(serde_json::json!({ "warnings": warnings }));
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
