//! Shell-word expansion with BuildKit's semantics (its `shell.Lex`).
//!
//! The builder expands the arguments of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL,
//! USER, VOLUME, WORKDIR, ARG defaults and RUN `--mount` values; RUN, CMD and ENTRYPOINT
//! are left to the shell in the container. Quotes are removed, the escape character
//! (`\` or the `# escape=` one) escapes the next character, and these forms are
//! supported: `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?msg}`,
//! `${V?msg}`, `${V#pat}`, `${V##pat}`, `${V%pat}`, `${V%%pat}`, `${V/pat/repl}`,
//! `${V//pat/repl}`. Anything else inside `${}` is an error, as in BuildKit.
//!
//! A `${…}` word may nest another (`${a:-${b:-x}}`); nesting deeper than
//! [`MAX_NESTING`] is an error, so a hostile Dockerfile cannot exhaust the stack.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::pattern::Pattern;

/// How deep `${…}` words may nest inside each other. Real Dockerfiles use two or three
/// levels; the limit only stops a word built to overflow the stack of the recursive lexer.
pub const MAX_NESTING: usize = 64;

/// Where variable values come from: the stage's ENV and ARGs, or build args.
pub trait EnvLookup {
    fn lookup(&self, name: &str) -> Option<String>;
}

impl EnvLookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl EnvLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl EnvLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.as_slice().lookup(name)
    }
}

/// An environment with nothing in it.
pub struct NoEnv;

impl EnvLookup for NoEnv {
    fn lookup(&self, _: &str) -> Option<String> {
        None
    }
}

/// A failed expansion: `failed to process "WORD": REASON`, as BuildKit words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    pub word: String,
    pub reason: ExpandReason,
}

/// Why a word did not expand (BuildKit's shell lexer wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandReason {
    #[error("variable substitution nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// A quote or `${…}` never closed; what was looked for.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(String),
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    Modifier(String),
    /// `${NAME?message}` / `${NAME:?message}` of an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    Pattern {
        pattern: String,
        reason: super::pattern::PatternError,
    },
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to process {:?}: {}", self.word, self.reason)
    }
}

impl std::error::Error for ExpandError {}

/// The result of expanding one word, with the variable names it used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    pub result: String,
    pub words: Vec<String>,
    /// Names that were looked up and found.
    pub matched: BTreeSet<String>,
    /// Names that were looked up and not found (for the UndefinedVar check).
    pub unmatched: BTreeSet<String>,
}

/// The lexer's knobs. `Lexer::new(escape)` is what the builder uses; the raw modes exist
/// for heredoc detection, which must see quotes and escapes unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    pub escape: char,
    pub raw_quotes: bool,
    pub raw_escapes: bool,
    pub skip_process_quotes: bool,
    pub skip_unset_env: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expand `word` to one string (BuildKit's `ProcessWord`): spaces are kept.
    pub fn process_word<E: EnvLookup + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Expansion, ExpandError> {
        let mut sw = ShellWord::new(self, word, env);
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(reason) => Err(ExpandError {
                word: word.to_string(),
                reason,
            }),
        }
    }

    /// Expand `word` and split it into words on unquoted whitespace (`ProcessWords`).
    /// Splitting happens after substitution, so `$X` with spaces gives several words.
    pub fn process_words<E: EnvLookup + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Vec<String>, ExpandError> {
        self.process_word(word, env).map(|e| e.words)
    }
}

/// Expand one word; `escape` is the Dockerfile's escape character (`\\` or the
/// `# escape=` one), as BuildKit expands every instruction with the file's own.
pub fn expand_word<E: EnvLookup + ?Sized>(
    word: &str,
    env: &E,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(escape).process_word(word, env).map(|e| e.result)
}

/// Expand and split into words, with the Dockerfile's escape character as [`expand_word`].
pub fn expand_words<E: EnvLookup + ?Sized>(
    word: &str,
    env: &E,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process_words(word, env)
}

/// Collects the split words while the expansion runs (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct ShellWord<'a, E: ?Sized> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a E,
    raw_escapes: bool,
    /// How many `${…}` words enclose the current position.
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

type Step = Result<String, ExpandReason>;

/// BuildKit's error for a quote that is never closed.
fn unterminated(quote: &str) -> ExpandReason {
    ExpandReason::Unterminated(quote.to_string())
}

impl<'a, E: EnvLookup + ?Sized> ShellWord<'a, E> {
    fn new(lex: &'a Lexer, word: &str, env: &'a E) -> ShellWord<'a, E> {
        ShellWord {
            lex,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: lex.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = self.env.lookup(name);
        if v.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        v
    }

    /// Process until the end of input or `stop` (consumed). Returns the joined result and
    /// the split words. Each call with a `stop` is one level of `${…}` nesting.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandReason> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandReason::TooDeep);
        }
        let saved = (self.raw_escapes, self.depth);
        self.raw_escapes = raw_escapes;
        self.depth += usize::from(stop.is_some());
        let out = self.stop_on_inner(stop);
        (self.raw_escapes, self.depth) = saved;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ExpandReason> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(self.possible_heredoc()),
                '\'' if !self.lex.skip_process_quotes => Some(self.single_quote()?),
                '"' if !self.lex.skip_process_quotes => Some(self.double_quote()?),
                _ => None,
            };
            if let Some(tmp) = special {
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            self.next();
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // The escape character escapes the next one; at the end it is dropped.
                let Some(escaped) = self.next() else { break };
                words.add_raw_char(escaped);
                result.push(escaped);
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(ExpandReason::Unterminated(stop.to_string()));
        }
        Ok((result, words.finish()))
    }

    /// Consumes an opening quote; the text so far is the quote itself when quotes are kept.
    fn open_quote(&mut self) -> String {
        let open = self.next();
        if self.lex.raw_quotes {
            open.into_iter().collect()
        } else {
            String::new()
        }
    }

    /// Ends a quoted text at its closing `quote` (kept when quotes are kept).
    fn close_quote(&self, mut out: String, quote: char) -> Step {
        if self.lex.raw_quotes {
            out.push(quote);
        }
        Ok(out)
    }

    /// Single quotes keep everything literally; a single quote cannot be escaped inside.
    fn single_quote(&mut self) -> Step {
        let mut out = self.open_quote();
        loop {
            match self.next() {
                None => return Err(unterminated("single-quote")),
                Some('\'') => return self.close_quote(out, '\''),
                Some(c) => out.push(c),
            }
        }
    }

    /// Double quotes expand `$` and let the escape character quote only `"`, `$` and itself.
    fn double_quote(&mut self) -> Step {
        let mut out = self.open_quote();
        loop {
            match self.peek() {
                None => return Err(unterminated("double-quote")),
                Some('"') => {
                    self.next();
                    return self.close_quote(out, '"');
                }
                Some('$') => out.push_str(&self.process_dollar()?),
                Some(_) => {
                    let mut ch = self.next().expect("peeked a character");
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = self.next().expect("peeked a character");
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `<<` is kept together with the blanks after it so heredoc words stay whole.
    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn process_dollar(&mut self) -> Step {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return match self.get_env(&name) {
                None if self.lex.skip_unset_env => Ok(format!("${name}")),
                v => Ok(v.unwrap_or_default()),
            };
        }
        self.next();
        match self.peek() {
            None => return Err(ExpandReason::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandReason::BadSubstitution),
            _ => {}
        }
        let name = self.process_name();
        let ch = self.next();
        match ch {
            None => Err(ExpandReason::MissingBrace),
            Some('}') => match self.get_env(&name) {
                None if self.lex.skip_unset_env => Ok(format!("${{{name}}}")),
                v => Ok(v.unwrap_or_default()),
            },
            Some(':') => {
                let modifier = self.next();
                self.modifier(&name, modifier, true)
            }
            Some(c @ ('+' | '-' | '?' | '#' | '%')) => self.modifier(&name, Some(c), false),
            Some('/') => self.replace(&name),
            other => Err(unsupported(&show(other))),
        }
    }

    fn modifier(&mut self, name: &str, ch: Option<char>, null_is_unset: bool) -> Step {
        let chs = format!("{}{}", if null_is_unset { ":" } else { "" }, show(ch));
        let Some(ch) = ch else {
            return Err(ExpandReason::MissingBrace);
        };
        let raw = ch == '#' || ch == '%';
        if null_is_unset && raw {
            return Err(unsupported(&chs));
        }
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(ExpandReason::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match ch {
            '-' => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                let default = match value {
                    None => "is not allowed to be unset",
                    Some(_) if unset => "is not allowed to be empty",
                    Some(v) => return Ok(v),
                };
                let message = if word.is_empty() {
                    default
                } else {
                    word.as_str()
                };
                Err(ExpandReason::Required {
                    name: name.to_string(),
                    message: message.to_string(),
                })
            }
            '#' | '%' => {
                let (longest, pat) = match word.strip_prefix(ch) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = Pattern::compile(pat).map_err(|reason| ExpandReason::Pattern {
                    pattern: pat.to_string(),
                    reason,
                })?;
                let value = value.unwrap_or_default();
                Ok(if ch == '%' {
                    pattern.trim_suffix(&value, longest)
                } else {
                    pattern.trim_prefix(&value, longest)
                })
            }
            _ => Err(unsupported(&chs)),
        }
    }

    fn replace(&mut self, name: &str) -> Step {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            Err(_) if self.peek().is_none() => return Err(ExpandReason::MissingSlash),
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(_) if self.peek().is_none() => return Err(ExpandReason::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let compiled = Pattern::compile(&pattern).map_err(|reason| ExpandReason::Pattern {
            pattern: pattern.clone(),
            reason,
        })?;
        Ok(compiled.replace(&value.unwrap_or_default(), &replacement, all))
    }
}

fn show(c: Option<char>) -> String {
    c.map(String::from).unwrap_or_else(|| "end of input".into())
}

fn unsupported(modifier: &str) -> ExpandReason {
    ExpandReason::Modifier(modifier.to_string())
}

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
