//! Dockerfile front end: parser, typed instructions, shell-word expansion, build checks.
//!
//! ```text
//! text ──parse::parse_lines──▶ nodes ──convert──▶ Dockerfile { meta_args, stages[instructions] }
//!                                                        │
//!                          expand (BuildKit's shell lexer) + lint (build checks) ◀──┘
//! ```
//!
//! BuildKit is the reference for every verdict: what parses, what is rejected and with
//! which message, how words expand, and which checks warn. Errors display as
//! `FILE:LINE: message`.

mod convert;
pub mod directives;
pub mod dump;
mod duration;
pub mod error;
pub mod expand;
mod flags;
pub mod heredoc;
pub mod instructions;
mod line_parsers;
pub mod lint;
pub mod mount;
pub mod node;
pub mod parse;
pub mod pattern;
mod syntax_error;

pub use directives::{CheckConfig, Directive, Directives};
pub use error::{ParseError, Span};
pub use expand::{
    expand_word, expand_words, EnvLookup, ExpandError, ExpandReason, Expansion, Lexer,
};
pub use heredoc::Heredoc;
pub use instructions::*;
pub use lint::{check, CheckOptions, CheckReport, Finding};

use error::Located;

/// Parse a Dockerfile. `file_name` is only used in error messages.
///
/// Fails like BuildKit on an empty file, a file with only comments, a bad directive, an
/// unknown instruction or flag, malformed arguments, or an instruction before the first
/// FROM other than ARG.
pub fn parse(text: &str, file_name: &str) -> Result<Dockerfile, ParseError> {
    parse_located(text)
        .map_err(|e| e.in_file(file_name))
        .map(|mut d| {
            d.file_name = file_name.to_string();
            d
        })
}

fn parse_located(text: &str) -> Result<Dockerfile, Located> {
    if text.is_empty() {
        return Err(Located::new("the Dockerfile cannot be empty"));
    }
    let lines = parse::parse_lines(text)?;
    if let Some(d) = &lines.directives.check {
        let options = d.value.split(' ').next().unwrap_or_default();
        CheckConfig::parse(options)
            .map_err(|e| Located::at(format!("failed to parse check options: {e}"), d.span))?;
    }
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &lines.nodes {
        if node.lower_name() == "from" {
            stages.push(convert::parse_from(node)?);
            continue;
        }
        let inst = convert::instruction(node)?;
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(inst),
            None if matches!(inst.command, Command::Arg(_)) => meta_args.push(inst),
            None => return Err(Located::at("no build stage in current context", node.span)),
        }
    }
    if stages.is_empty() {
        return Err(Located::new("dockerfile contains no stages to build"));
    }
    Ok(Dockerfile {
        file_name: String::new(),
        directives: lines.directives,
        escape: lines.escape,
        meta_args,
        stages,
        empty_continuations: lines.empty_continuations,
    })
}

#[cfg(test)]
#[path = "parse_typed_tests.rs"]
mod typed_tests;

#[cfg(test)]
#[path = "golden_tests.rs"]
mod golden_tests;
