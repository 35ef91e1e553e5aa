//! Parser directives: `# syntax=`, `# escape=`, `# check=` at the top of a Dockerfile.
//!
//! BuildKit's rules: directives are `# name=value` comment lines before anything else;
//! the first line that is not one (an instruction, a blank line, an ordinary comment or
//! an unknown directive name) ends the directive section for good. Names are
//! case-insensitive, each may appear once, and `escape` takes only `\` or `` ` ``.

use std::collections::BTreeSet;

use super::error::Span;
use super::syntax_error::SyntaxError;

/// One directive as written: lower-cased name, value, and its line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directive {
    pub name: String,
    pub value: String,
    pub span: Span,
}

/// The directives a Dockerfile declared.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Directives {
    pub syntax: Option<Directive>,
    pub escape: Option<Directive>,
    pub check: Option<Directive>,
}

const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// Reads directives one line at a time, remembering when the section has ended.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    line: usize,
    done: bool,
    seen: BTreeSet<String>,
}

impl DirectiveParser {
    /// Feed the next physical line (without its newline, leading blanks already trimmed).
    pub fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, SyntaxError> {
        self.line += 1;
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = line
            .strip_prefix('#')
            .and_then(|rest| split_directive(rest.trim_start()))
        else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if !self.seen.insert(name.clone()) {
            return Err(SyntaxError::RepeatedDirective(name));
        }
        Ok(Some(Directive {
            name,
            value: value.to_string(),
            span: Span::line(self.line),
        }))
    }
}

/// `name = value` with BuildKit's regex `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
pub(crate) fn split_directive(s: &str) -> Option<(&str, &str)> {
    let name_len = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(s.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = s.split_at(name_len);
    let rest = rest.trim_start_matches(is_go_space).strip_prefix('=')?;
    let value = rest.trim_matches(is_go_space);
    (!value.is_empty() && !value.contains('\n')).then_some((name, value))
}

fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// The `# check=` options (BuildKit's `ParseLintOptions`):
/// `skip=Rule1,Rule2` or `skip=all`, `error=true`, `experimental=Rule|all`, `;`-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckConfig {
    pub skip: Vec<String>,
    pub skip_all: bool,
    pub experimental: Vec<String>,
    pub experimental_all: bool,
    pub error: bool,
}

/// A `# check=` option BuildKit refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckOptionError {
    #[error("invalid check option {0:?}")]
    Invalid(String),
    #[error("failed to parse check option {option:?}: invalid syntax {value:?}")]
    Bool { option: String, value: String },
}

impl CheckConfig {
    pub fn parse(options: &str) -> Result<CheckConfig, CheckOptionError> {
        let mut cfg = CheckConfig::default();
        let options = options.trim();
        if options.is_empty() {
            return Ok(cfg);
        }
        for part in options.splitn(3, ';') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| CheckOptionError::Invalid(part.to_string()))?;
            let v = v.trim();
            let list = || {
                v.split(',')
                    .map(|r| r.trim().to_string())
                    .collect::<Vec<_>>()
            };
            match k.trim() {
                "skip" if v == "all" => cfg.skip_all = true,
                "skip" => cfg.skip = list(),
                "experimental" if v == "all" => cfg.experimental_all = true,
                "experimental" => cfg.experimental = list(),
                "error" => {
                    cfg.error = parse_go_bool(v).ok_or_else(|| CheckOptionError::Bool {
                        option: part.to_string(),
                        value: v.to_string(),
                    })?
                }
                other => return Err(CheckOptionError::Invalid(other.to_string())),
            }
        }
        Ok(cfg)
    }

    pub fn is_skipped(&self, rule: &str) -> bool {
        self.skip_all || self.skip.iter().any(|r| r == rule)
    }

    pub fn is_experimental_enabled(&self, rule: &str) -> bool {
        self.experimental_all || self.experimental.iter().any(|r| r == rule)
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(lines: &[&str]) -> Result<Vec<(String, String)>, SyntaxError> {
        let mut p = DirectiveParser::default();
        let mut out = Vec::new();
        for l in lines {
            if let Some(d) = p.parse_line(l.trim_start())? {
                out.push((d.name, d.value));
            }
        }
        Ok(out)
    }

    #[test]
    fn directive_forms() {
        let got = parse_all(&[
            "# syntax = docker/dockerfile:1",
            "#ESCAPE=`",
            "# check=skip=A,B",
        ])
        .expect("valid");
        assert_eq!(got[0], ("syntax".into(), "docker/dockerfile:1".into()));
        assert_eq!(got[1], ("escape".into(), "`".into()));
        assert_eq!(got[2], ("check".into(), "skip=A,B".into()));
    }

    #[test]
    fn section_ends_at_first_other_line() {
        // an ordinary comment, a blank line, an unknown directive or an instruction ends it
        for first in ["# a comment", "", "# foo=bar", "FROM x"] {
            let got = parse_all(&[first, "# escape=`"]).expect("valid");
            assert!(got.is_empty(), "after {first:?}: {got:?}");
        }
    }

    #[test]
    fn repeated_directive_is_an_error() {
        let err = parse_all(&["# escape=`", "# escape=\\"]).expect_err("repeat");
        assert_eq!(
            err.to_string(),
            "only one escape parser directive can be used"
        );
    }

    #[test]
    fn empty_value_is_not_a_directive() {
        assert_eq!(split_directive("escape="), None);
        assert_eq!(split_directive("1x=y"), None);
        assert_eq!(split_directive("x1 = y  "), Some(("x1", "y")));
    }

    #[test]
    fn check_options() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true")
            .expect("valid");
        assert_eq!(c.skip, vec!["JSONArgsRecommended", "StageNameCasing"]);
        assert!(c.error && !c.skip_all);
        assert!(CheckConfig::parse("skip=all")
            .expect("valid")
            .is_skipped("Anything"));
        assert!(CheckConfig::parse("error=maybe").is_err());
        assert!(CheckConfig::parse("bogus=1").is_err());
        assert!(CheckConfig::parse("noequals").is_err());
    }
}
