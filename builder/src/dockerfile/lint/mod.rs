//! Build checks (`strata build --check`): BuildKit's linter rules, run over a parsed
//! Dockerfile while its stages are evaluated (ARG/ENV expansion, `--target`, build args)
//! without building anything.
//!
//! Warnings never fail a check unless the Dockerfile says `# check=error=true`; errors
//! (anything the build itself would reject) always do. `# check=skip=Rule1,Rule2` and
//! `skip=all` silence rules; a `# check=` comment right above an instruction applies to
//! that instruction only.

mod eval;
pub mod rules;
pub mod support;

use std::collections::BTreeSet;

use serde::Serialize;

use super::directives::{split_directive, CheckConfig};
use super::error::{Located, ParseError, Span};
use rules::Rule;

/// What `--check` was asked for.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// `--build-arg` values.
    pub build_args: Vec<(String, String)>,
    /// `--target`: must name a stage.
    pub target: Option<String>,
}

/// One warning: which rule, what it says, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub description: &'static str,
    pub url: &'static str,
    pub message: String,
    pub span: Span,
}

/// The verdict: warnings, and the error that fails the check if there is one.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub file_name: String,
    pub warnings: Vec<Finding>,
    pub error: Option<ParseError>,
    /// Whether `error` is the `# check=error=true` verdict on the warnings (a build fails
    /// on it), not a parse or evaluation error (which the build reports itself).
    pub is_violation: bool,
}

impl CheckReport {
    /// docker's exit status for `--check`: 1 on an error or a warning, else 0 (BuildKit's
    /// lint result status code).
    pub fn exit_code(&self) -> i32 {
        i32::from(self.error.is_some() || !self.warnings.is_empty())
    }
}

/// Parse and evaluate `text` and run every enabled rule.
pub fn check(text: &str, file_name: &str, opts: &CheckOptions) -> CheckReport {
    let mut report = CheckReport {
        file_name: file_name.to_string(),
        ..CheckReport::default()
    };
    let df = match super::parse(text, file_name) {
        Ok(df) => df,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let config = df
        .directives
        .check
        .as_ref()
        .and_then(|d| CheckConfig::parse(d.value.split(' ').next().unwrap_or_default()).ok())
        .unwrap_or_default();
    let mut linter = Linter::new(config);
    let result = eval::run(&df, opts, &mut linter);
    report.warnings = linter.findings();
    report.error = match result {
        Err(e) => Some(e.in_file(file_name)),
        Ok(()) => {
            let violation = linter.violation();
            report.is_violation = violation.is_some();
            violation.map(|msg| Located::new(msg).in_file(file_name))
        }
    };
    report
}

/// Collects findings, honouring the file's and each instruction's `# check=` config.
pub(crate) struct Linter {
    base: CheckConfig,
    findings: Vec<Finding>,
    called: BTreeSet<&'static str>,
}

impl Linter {
    fn new(base: CheckConfig) -> Linter {
        Linter {
            base,
            findings: Vec::new(),
            called: BTreeSet::new(),
        }
    }

    /// The config for an instruction: the file's, plus a `check=` comment above it.
    pub fn config_for(&self, comments: &[String]) -> CheckConfig {
        let mut cfg = self.base.clone();
        let extra = comments.iter().find_map(|c| match split_directive(c) {
            Some((name, value)) if name.eq_ignore_ascii_case("check") => {
                Some(value.split(' ').next().unwrap_or_default())
            }
            _ => None,
        });
        if let Some(Ok(other)) = extra.map(CheckConfig::parse) {
            cfg.skip_all |= other.skip_all;
            cfg.experimental_all |= other.experimental_all;
            cfg.skip.extend(other.skip);
            cfg.experimental.extend(other.experimental);
        }
        cfg
    }

    pub fn warn(&mut self, cfg: &CheckConfig, rule: &'static Rule, span: Span, args: &[&str]) {
        let enabled = if rule.experimental {
            cfg.is_experimental_enabled(rule.name)
        } else {
            !cfg.is_skipped(rule.name)
        };
        if !enabled {
            return;
        }
        self.called.insert(rule.name);
        let finding = Finding {
            rule: rule.name,
            description: rule.description,
            url: rule.url,
            message: (rule.format)(args),
            span,
        };
        if !self.findings.contains(&finding) {
            self.findings.push(finding);
        }
    }

    /// Findings in line order (stable for findings on the same line).
    fn findings(&self) -> Vec<Finding> {
        let mut out = self.findings.clone();
        out.sort_by_key(|f| f.span.start);
        out
    }

    /// With `error=true`, any warning fails the check.
    fn violation(&self) -> Option<String> {
        if !self.base.error || self.called.is_empty() {
            return None;
        }
        let rules: Vec<&str> = self.called.iter().copied().collect();
        Some(format!(
            "lint violation found for rules: {}",
            rules.join(", ")
        ))
    }
}

/// docker's text form: one `WARNING: Rule - message (line N)` per finding, then the error
/// as `FILE:LINE: message`.
pub fn format_text(report: &CheckReport) -> String {
    let mut out = String::new();
    for w in &report.warnings {
        out.push_str(&format!(
            "WARNING: {} - {} (line {})\n",
            w.rule, w.message, w.span.start
        ));
    }
    if let Some(e) = &report.error {
        out.push_str(&format!("ERROR: {e}\n"));
    }
    out
}

/// The warnings as docker prints them after a build (buildx's `printWarnings`):
/// `\n 2 warnings found (use docker --debug to expand):\n - Rule: message (line N)\n…`;
/// empty without warnings.
pub fn format_build_summary(report: &CheckReport) -> String {
    let n = report.warnings.len();
    if n == 0 {
        return String::new();
    }
    let mut out = match n {
        1 => "\n 1 warning found".to_string(),
        n => format!("\n {n} warnings found"),
    };
    out.push_str(" (use docker --debug to expand):\n");
    for w in &report.warnings {
        out.push_str(&format!(
            " - {}: {} (line {})\n",
            w.rule, w.message, w.span.start
        ));
    }
    out
}

/// The machine form, shaped like BuildKit's lint result (`--call=check,format=json`).
pub fn format_json(report: &CheckReport) -> String {
    let range =
        |s: Span| serde_json::json!([{ "start": { "line": s.start }, "end": { "line": s.end } }]);
    let warnings: Vec<serde_json::Value> = report
        .warnings
        .iter()
        .map(|w| {
            serde_json::json!({
                "ruleName": w.rule,
                "description": w.description,
                "url": w.url,
                "detail": w.message,
                "location": { "file": report.file_name, "ranges": range(w.span) },
            })
        })
        .collect();
    let error = report.error.as_ref().map(|e| {
        serde_json::json!({
            "message": e.message,
            "location": e.span.map(|s| serde_json::json!({ "file": e.file, "ranges": range(s) })),
        })
    });
    let doc = serde_json::json!({ "file": report.file_name, "warnings": warnings, "error": error });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests;
