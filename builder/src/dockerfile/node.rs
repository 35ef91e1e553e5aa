//! A Dockerfile instruction as written, before typing (BuildKit's `parser.Node`): what the
//! line-level parser (parse.rs) produces and the typed layer (convert.rs) reads.

use super::error::Span;
use super::heredoc::Heredoc;

/// The arguments of a node: a list of strings, or for ONBUILD the nested instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    List(Vec<String>),
    Sub(Option<Box<Node>>),
}

/// One instruction as written, before typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction name with its original casing.
    pub keyword: String,
    pub flags: Vec<String>,
    pub args: Args,
    /// The arguments were a JSON array (exec form).
    pub is_json: bool,
    /// The logical line: continuations joined, comments removed, heredoc bodies excluded.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    pub span: Span,
    /// Comment lines directly above the instruction (`# check=` may be among them).
    pub comments: Vec<String>,
}

impl Node {
    pub fn lower_name(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// Flattened arguments; for ONBUILD the trigger's name then its arguments.
    pub fn arg_list(&self) -> Vec<String> {
        match &self.args {
            Args::List(l) => l.clone(),
            Args::Sub(None) => Vec::new(),
            Args::Sub(Some(n)) => std::iter::once(n.keyword.clone())
                .chain(n.arg_list())
                .collect(),
        }
    }

    pub(super) fn can_contain_heredoc(&self) -> bool {
        let node = match &self.args {
            Args::Sub(Some(child)) => child,
            _ => self,
        };
        matches!(node.lower_name().as_str(), "run" | "copy" | "add") && !node.is_json
    }
}
