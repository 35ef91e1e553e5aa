//! The line-level parser: text → nodes (instruction name, flags, raw arguments, heredocs,
//! line range). BuildKit's `parser.Parse`, rule for rule:
//!
//! - parser directives are read from the top until the first other line;
//! - a line ending in the escape character continues on the next line; comment lines and
//!   empty lines inside a continuation are skipped (empty ones are reported, BuildKit
//!   warns about them); a trailing escape at the end of the file is dropped;
//! - leading blanks are removed from the first line of an instruction only;
//! - heredoc bodies follow the line that opens them.

use super::directives::{DirectiveParser, Directives};
use super::error::{Located, Span};
use super::heredoc::{heredocs_from_line, Heredoc};
use super::line_parsers::node_from_line;
use super::node::Node;
use super::syntax_error::SyntaxError;

/// Everything the line-level pass finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLines {
    pub nodes: Vec<Node>,
    pub escape: char,
    pub directives: Directives,
    /// Lines where an empty line continued an instruction (NoEmptyContinuation).
    pub empty_continuations: Vec<Span>,
}

/// The parser's state across lines: the directive parser and the escape character.
struct LineState {
    directives: DirectiveParser,
    found: Directives,
    escape: char,
}

impl LineState {
    /// Trim the newline (and for a first line, leading blanks), feed the directive parser,
    /// and drop comments. Returns the line and whether it was a directive.
    fn process_line<'a>(
        &mut self,
        raw: &'a str,
        strip_left: bool,
    ) -> Result<(&'a str, bool), SyntaxError> {
        let mut token = raw.trim_end_matches(['\r', '\n']);
        if strip_left {
            token = token.trim_start();
        }
        let is_directive = match self.directives.parse_line(token)? {
            Some(d) => {
                if d.name == "escape" {
                    self.escape = escape_token(&d.value)?;
                }
                let slot = match d.name.as_str() {
                    "escape" => &mut self.found.escape,
                    "syntax" => &mut self.found.syntax,
                    _ => &mut self.found.check,
                };
                *slot = Some(d);
                true
            }
            None => false,
        };
        Ok((if is_comment(token) { "" } else { token }, is_directive))
    }

    /// Remove a trailing line-continuation escape: `(line, true)` when the line ends here.
    fn trim_continuation<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        let Some(before) = t.strip_suffix(self.escape) else {
            return (line, true);
        };
        if before.is_empty() || !before.ends_with(self.escape) {
            (before, false)
        } else {
            (line, true)
        }
    }
}

fn escape_token(value: &str) -> Result<char, SyntaxError> {
    match value {
        "`" => Ok('`'),
        "\\" => Ok('\\'),
        other => Err(SyntaxError::EscapeToken(other.to_string())),
    }
}

pub(crate) fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Split into lines that keep their newline, like BuildKit's `scanLines`.
fn physical_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Parse the whole text into nodes.
pub fn parse_lines(text: &str) -> Result<ParsedLines, Located> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = physical_lines(text);
    let mut st = LineState {
        directives: DirectiveParser::default(),
        found: Directives::default(),
        escape: '\\',
    };
    let mut nodes = Vec::new();
    let mut empty_continuations = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0usize;
    let mut idx = 0usize;
    while idx < lines.len() {
        let raw = lines[idx];
        idx += 1;
        if is_comment(raw) {
            let c = raw.trim_start()[1..].trim();
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_string());
            }
        }
        let (first, is_directive) = st
            .process_line(raw, true)
            .map_err(|e| Located::at(e.to_string(), Span::line(current + 1)))?;
        if is_directive {
            comments.pop();
        }
        current += 1;
        let start = current;
        let (first, mut end_of_line) = st.trim_continuation(first);
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut buf = first.to_string();
        let mut has_empty = false;
        while !end_of_line && idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            let (line, _) = st
                .process_line(raw, false)
                .map_err(|e| Located::at(e.to_string(), Span::line(current + 1)))?;
            current += 1;
            if is_comment(raw) {
                continue;
            }
            if line.trim_start().is_empty() {
                has_empty = true;
                continue;
            }
            let (line, eol) = st.trim_continuation(line);
            end_of_line = eol;
            buf.push_str(line);
        }
        if has_empty {
            empty_continuations.push(Span::line(current));
        }
        let span = Span::new(start, current);
        let mut node = node_from_line(&buf, st.escape, std::mem::take(&mut comments))
            .map_err(|e| Located::at(e.to_string(), span))?;
        if node.can_contain_heredoc() && buf.contains("<<") {
            let docs = heredocs_from_line(&buf).map_err(|e| Located::at(e.to_string(), span))?;
            for mut doc in docs {
                let (content, used) = read_heredoc(&lines[idx..], &doc).ok_or_else(|| {
                    Located::at(
                        "unterminated heredoc",
                        Span::new(start, current + lines.len() - idx),
                    )
                })?;
                idx += used;
                current += used;
                doc.content = content;
                node.heredocs.push(doc);
            }
        }
        node.span = Span::new(start, current);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(Located::at(
            "file with no instructions",
            Span::line(current),
        ));
    }
    Ok(ParsedLines {
        nodes,
        escape: st.escape,
        directives: st.found,
        empty_continuations,
    })
}

/// Read a heredoc body; returns it and the number of lines used (with the delimiter).
fn read_heredoc(lines: &[&str], doc: &Heredoc) -> Option<(String, usize)> {
    let mut content = String::new();
    for (i, line) in lines.iter().enumerate() {
        let mut candidate = line.trim_end_matches(['\r', '\n']);
        if doc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == doc.name {
            return Some((content, i + 1));
        }
        content.push_str(line);
    }
    None
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
