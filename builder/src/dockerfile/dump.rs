//! A stable text dump of parsed nodes in BuildKit's s-expression form (its `Node.Dump`),
//! used by the golden fixtures so our parse trees can be compared with BuildKit's.

use std::fmt::Write;

use super::node::{Args, Node};

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One node as BuildKit dumps it: `(run "echo hi")`, `(onbuild (run "x"))`.
pub fn dump_node(node: &Node) -> String {
    let mut s = node.keyword.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        let _ = write!(s, " [{}]", flags.join(" "));
    }
    match &node.args {
        Args::List(list) => {
            for a in list {
                s.push(' ');
                s.push_str(&go_quote(a));
            }
        }
        Args::Sub(Some(child)) => {
            let _ = write!(s, " ({})", dump_node(child));
        }
        Args::Sub(None) => {}
    }
    s.trim().to_string()
}

/// All nodes, one `(…)` per line, with heredoc bodies shown after their instruction.
pub fn dump_nodes(nodes: &[Node]) -> String {
    let mut out = String::new();
    for n in nodes {
        let _ = writeln!(out, "({})", dump_node(n));
        for h in &n.heredocs {
            let _ = writeln!(
                out,
                "  heredoc name={} fd={} expand={} chomp={} content={}",
                go_quote(&h.name),
                h.fd,
                h.expand,
                h.chomp,
                go_quote(&h.content)
            );
        }
    }
    out
}
