//! Shell wildcard patterns for `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`.
//!
//! BuildKit converts these patterns to Go regular expressions: `*` is any run of characters,
//! `?` one character, `\*`, `\?` and `\\` are literals, and `\}` / `\/` stand for `}` / `/`
//! (they had to be escaped to get past the `${…}` lexer). There are no bracket expressions.
//! We match the same language with a small backtracking matcher instead of pulling in a
//! regex engine: the patterns are tiny and the values are short.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Char(char),
}

/// A compiled shell pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

/// A pattern with an escape BuildKit refuses (`\x` for any x other than `*`, `?`, `\`, `}`, `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub escaped: Option<char>,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.escaped {
            Some(c) => write!(f, "invalid escape '\\{c}'"),
            None => write!(f, "invalid escape '\\' at end of pattern"),
        }
    }
}

impl Pattern {
    pub fn compile(pattern: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => match chars.get(i) {
                    // `}` and `/` were escaped for the `${}` lexer; the escape is not part
                    // of the pattern, the character is matched normally next round.
                    Some('}') | Some('/') => {}
                    Some(&e @ ('*' | '?' | '\\')) => {
                        tokens.push(Token::Char(e));
                        i += 1;
                    }
                    other => {
                        return Err(PatternError {
                            escaped: other.copied(),
                        })
                    }
                },
                c => tokens.push(Token::Char(c)),
            }
        }
        Ok(Pattern { tokens })
    }

    /// Every end (in chars) of a match of the pattern starting at `start` of `value`.
    fn match_ends(&self, value: &[char], start: usize) -> Vec<usize> {
        let mut ends = Vec::new();
        self.walk(value, 0, start, &mut ends);
        ends.sort_unstable();
        ends.dedup();
        ends
    }

    fn walk(&self, value: &[char], t: usize, v: usize, ends: &mut Vec<usize>) {
        let Some(tok) = self.tokens.get(t) else {
            ends.push(v);
            return;
        };
        match tok {
            Token::Star => {
                for next in v..=value.len() {
                    self.walk(value, t + 1, next, ends);
                }
            }
            Token::Any => {
                if v < value.len() {
                    self.walk(value, t + 1, v + 1, ends);
                }
            }
            Token::Char(c) => {
                if value.get(v) == Some(c) {
                    self.walk(value, t + 1, v + 1, ends);
                }
            }
        }
    }

    /// `${VAR#pat}` (shortest) and `${VAR##pat}` (longest): remove a matching prefix.
    pub fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = self.match_ends(&chars, 0);
        let cut = if longest { ends.last() } else { ends.first() };
        match cut {
            Some(&n) => chars[n..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${VAR%pat}` (shortest) and `${VAR%%pat}` (longest): remove a matching suffix.
    pub fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let is_suffix = |start: usize| self.match_ends(&chars, start).contains(&n);
        let start = if longest {
            (0..=n).find(|&s| is_suffix(s))
        } else {
            (0..=n).rev().find(|&s| is_suffix(s))
        };
        match start {
            Some(s) => chars[..s].iter().collect(),
            None => value.to_string(),
        }
    }

    /// The leftmost match at or after `from`, longest at that start (greedy `*`).
    fn find(&self, chars: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=chars.len()).find_map(|s| self.match_ends(chars, s).last().map(|&e| (s, e)))
    }

    /// `${VAR/pat/repl}` (first match) and `${VAR//pat/repl}` (every match).
    pub fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::with_capacity(value.len());
        let mut pos = 0;
        let mut last_match_end: Option<usize> = None;
        while pos <= chars.len() {
            let Some((s, e)) = self.find(&chars, pos) else {
                break;
            };
            // Like Go's ReplaceAll: an empty match right after the previous match is skipped.
            if s == e && last_match_end == Some(s) {
                if s < chars.len() {
                    out.push(chars[s]);
                }
                pos = s + 1;
                continue;
            }
            out.extend(&chars[pos..s]);
            out.push_str(replacement);
            last_match_end = Some(e);
            if s == e {
                if s < chars.len() {
                    out.push(chars[s]);
                }
                pos = e + 1;
            } else {
                pos = e;
            }
            if !all {
                break;
            }
        }
        if pos < chars.len() {
            out.extend(&chars[pos..]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_suffix_and_replace() {
        let p = |s: &str| Pattern::compile(s).expect("valid pattern");
        assert_eq!(p("*x*y").trim_prefix("xxyy", false), "y");
        assert_eq!(p("*x").trim_prefix("xxyy", true), "yy");
        assert_eq!(p("*").trim_prefix("xxyy", false), "xxyy");
        assert_eq!(p("\\**").trim_suffix("xx**", true), "xx");
        assert_eq!(p("\\**\\*").trim_suffix("a***yy*", true), "a");
        assert_eq!(p("y*").trim_suffix("xyxy", false), "xyx");
        assert_eq!(p("y*").trim_suffix("xyxy", true), "x");
        assert_eq!(
            p("/tmp").replace("/tmp/tmp/bar.txt", "", false),
            "/tmp/bar.txt"
        );
        assert_eq!(p("/tmp").replace("/tmp/tmp/bar.txt", "", true), "/bar.txt");
        assert_eq!(p("/?/").replace("/a/foo/b/c.txt", "/", true), "/foo/c.txt");
        assert_eq!(p("").replace("xxyy", "ww", false), "wwxxyy");
        assert!(Pattern::compile("\\a").is_err());
    }
}
