//! Parse errors with a location, and "did you mean" suggestions.
//!
//! Like BuildKit, a location is attached once at the boundary (the instruction that failed)
//! and an error that already has one keeps it.

use std::fmt;

/// A range of 1-based lines in the Dockerfile, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            end: end.max(start),
        }
    }

    pub fn line(line: usize) -> Span {
        Span {
            start: line,
            end: line,
        }
    }
}

/// An error in a Dockerfile. Displays as `FILE:LINE: message`, the form editors and CI
/// logs turn into links.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub file: String,
    pub span: Option<Span>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.span {
            Some(span) if span.start > 0 => {
                write!(f, "{}:{}: {}", self.file, span.start, self.message)
            }
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// An error found before the file name is known: a message and maybe where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub span: Option<Span>,
    pub message: String,
}

impl Located {
    pub fn new(message: impl Into<String>) -> Located {
        Located {
            span: None,
            message: message.into(),
        }
    }

    pub fn at(message: impl Into<String>, span: Span) -> Located {
        Located {
            span: Some(span),
            message: message.into(),
        }
    }

    /// Attach `span` unless a location is already there.
    pub fn or_at(mut self, span: Span) -> Located {
        self.span.get_or_insert(span);
        self
    }

    pub fn in_file(self, file: &str) -> ParseError {
        ParseError {
            file: file.to_string(),
            span: self.span,
            message: self.message,
        }
    }
}

impl From<String> for Located {
    fn from(message: String) -> Located {
        Located::new(message)
    }
}

impl From<&str> for Located {
    fn from(message: &str) -> Located {
        Located::new(message)
    }
}

/// The closest option within edit distance 2, BuildKit's `suggest.Search`: `None` for an
/// exact match (the error is about something else) or when nothing is close.
pub fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let val = fold(value);
    let mut best: Option<(usize, String)> = None;
    for opt in options {
        let o = fold(opt);
        if o == val {
            return None;
        }
        let dist = levenshtein(&val, &o);
        if dist < best.as_ref().map_or(3, |(d, _)| *d) {
            let shown = if case_sensitive {
                o
            } else {
                match_case(&o, value)
            };
            best = Some((dist, shown));
        }
    }
    best.map(|(_, s)| s)
}

fn match_case(val: &str, orig: &str) -> String {
    if orig == orig.to_lowercase() {
        val.to_lowercase()
    } else if orig == orig.to_uppercase() {
        val.to_uppercase()
    } else {
        val.to_string()
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `message (did you mean X?)` when a close option exists.
pub fn with_suggestion(
    message: String,
    value: &str,
    options: &[&str],
    case_sensitive: bool,
) -> String {
    match suggest(value, options, case_sensitive) {
        Some(m) => format!("{message} (did you mean {m}?)"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let opts = ["RUN", "COPY", "ADD"];
        assert_eq!(suggest("RUNN", &opts, false).as_deref(), Some("RUN"));
        assert_eq!(suggest("runn", &opts, false).as_deref(), Some("run"));
        assert_eq!(suggest("RUN", &opts, false), None);
        assert_eq!(suggest("FOOBAR", &opts, false), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn display_has_file_and_line() {
        let e = Located::at("boom", Span::new(7, 9)).in_file("Dockerfile");
        assert_eq!(e.to_string(), "Dockerfile:7: boom");
        let e = Located::new("boom")
            .or_at(Span::line(2))
            .or_at(Span::line(5))
            .in_file("x");
        assert_eq!(e.to_string(), "x:2: boom");
    }
}
