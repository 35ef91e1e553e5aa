//! A line of the Dockerfile that does not parse (BuildKit's parser wording): bad arguments,
//! a repeated or bad directive, a heredoc marker the lexer cannot read. The parser turns it
//! into a `ParseError` at the line.

use super::expand::ExpandError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// `ENV key` / `LABEL key` in the legacy form without a value; the instruction name.
    #[error("{0} must have two arguments")]
    NoValue(&'static str),
    #[error("Syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    NoEquals(String),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("invalid escape token '{0}' does not match ` or \\")]
    EscapeToken(String),
    #[error("only one {0} parser directive can be used")]
    RepeatedDirective(String),
    #[error(transparent)]
    HeredocWord(#[from] ExpandError),
    #[error("internal lexing of heredoc produced inconsistent results: {0}")]
    HeredocLexing(String),
}
