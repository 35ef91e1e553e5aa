//! The line-level parser: comments, directives, continuations, escapes, node spans.

use super::*;
use crate::dockerfile::dump::dump_node;

fn nodes(text: &str) -> Vec<Node> {
    parse_lines(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
        .nodes
}

fn dumps(text: &str) -> Vec<String> {
    nodes(text).iter().map(dump_node).collect()
}

#[test]
fn node_arguments_by_instruction() {
    let cases = [
        ("FROM alpine AS x", "from \"alpine\" \"AS\" \"x\""),
        (
            "ENV A=1 B=\"2 3\"",
            "env \"A\" \"1\" \"=\" \"B\" \"\\\"2 3\\\"\" \"=\"",
        ),
        ("ENV A 1 2", "env \"A\" \"1 2\" \"\""),
        ("LABEL \"a b\"=c", "label \"\\\"a b\\\"\" \"c\" \"=\""),
        ("ARG A B=2", "arg \"A\" \"B=2\""),
        ("EXPOSE 80 443/udp", "expose \"80\" \"443/udp\""),
        ("COPY [\"a\", \"b\"]", "copy \"a\" \"b\""),
        ("COPY a  b", "copy \"a\" \"b\""),
        ("RUN echo  hi", "run \"echo  hi\""),
        ("CMD [\"a\",\"b\"]", "cmd \"a\" \"b\""),
        (
            "HEALTHCHECK --retries=3 CMD [\"x\"]",
            "healthcheck [\"--retries=3\"] \"CMD\" \"x\"",
        ),
        ("ONBUILD ADD . /app", "onbuild (add \".\" \"/app\")"),
        ("USER  me:me ", "user \"me:me\""),
        ("BOGUS a b", "bogus"),
    ];
    for (line, want) in cases {
        assert_eq!(
            dumps(&format!("{line}\n")),
            vec![want.to_string()],
            "{line}"
        );
    }
}

#[test]
fn comments_attach_to_the_next_instruction() {
    let n = nodes("# check=skip=X\nFROM a\n# first\n# second\nRUN x\n#\n# after empty comment\nRUN y\n\nRUN z\n");
    // the directive line is not a comment of FROM
    assert!(n[0].comments.is_empty());
    assert_eq!(n[1].comments, vec!["first", "second"]);
    // an empty `#` line resets the comments
    assert_eq!(n[2].comments, vec!["after empty comment"]);
    assert!(n[3].comments.is_empty());
}

#[test]
fn spans_cover_continuations_and_heredocs() {
    let n = nodes("FROM a\n\nRUN a \\\n  b \\\n  c\nRUN <<E\nx\nE\nCMD d\n");
    let spans: Vec<(usize, usize)> = n.iter().map(|n| (n.span.start, n.span.end)).collect();
    assert_eq!(spans, vec![(1, 1), (3, 5), (6, 8), (9, 9)]);
}

#[test]
fn escape_directive_changes_continuation() {
    // with backtick escape, a trailing backslash is literal
    let n = nodes("# escape=`\nFROM a\nRUN dir c:\\\nRUN a `\n b\n");
    assert_eq!(dump_node(&n[1]), "run \"dir c:\\\\\"");
    assert_eq!(dump_node(&n[2]), "run \"a  b\"");
}

#[test]
fn escaped_escape_is_not_a_continuation() {
    let n = nodes("FROM a\nENV C=x\\\\\nENV D=y\n");
    assert_eq!(n.len(), 3);
    assert_eq!(dump_node(&n[1]), "env \"C\" \"x\\\\\\\\\" \"=\"");
}

#[test]
fn leading_whitespace_and_case() {
    let n = nodes("   from a\n\t run x\n");
    assert_eq!(
        (n[0].keyword.as_str(), n[1].keyword.as_str()),
        ("from", "run")
    );
    assert_eq!(n[1].original, "run x");
}

#[test]
fn empty_continuation_lines_are_reported() {
    let p = parse_lines("FROM a\nRUN a \\\n\n   \n b\n").expect("valid");
    assert_eq!(p.empty_continuations, vec![Span::line(5)]);
    assert_eq!(dump_node(&p.nodes[1]), "run \"a  b\"");
}
