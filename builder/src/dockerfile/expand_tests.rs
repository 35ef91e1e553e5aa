//! The expansion table: `testdata/expand/cases.txt`, one case per line.

use std::collections::HashMap;

use super::*;

const CASES: &str = include_str!("../../../testdata/expand/cases.txt");

/// `[text]` is taken verbatim (for leading or trailing spaces), `empty` is "".
fn field(s: &str) -> String {
    let t = s.trim();
    if t == "empty" {
        return String::new();
    }
    match t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner.to_string(),
        None => t.to_string(),
    }
}

fn run_case(
    lexer: &Lexer,
    mode: &str,
    input: &str,
    env: &HashMap<String, String>,
) -> Result<String, ExpandError> {
    match mode {
        "word" => lexer.process_word(input, env).map(|e| e.result),
        "words" => lexer.process_words(input, env).map(|w| w.join(",")),
        "unmatched" => lexer
            .process_word(input, env)
            .map(|e| e.unmatched.into_iter().collect::<Vec<_>>().join(",")),
        other => panic!("unknown mode {other:?}"),
    }
}

#[test]
fn expansion_table() {
    let mut env: HashMap<String, String> = HashMap::new();
    let mut lexer = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut count = 0;
    for (i, line) in CASES.lines().enumerate() {
        let at = format!("testdata/expand/cases.txt:{}", i + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("env ") {
            if rest.trim() == "-" {
                env.clear();
            } else {
                let (k, v) = rest
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{at}: env needs NAME=VALUE"));
                env.insert(k.to_string(), v.to_string());
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("escape ") {
            lexer = Lexer::new(rest.trim().chars().next().unwrap_or('\\'));
            continue;
        }
        let (mode, rest) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("{at}: want MODE | INPUT | EXPECTED"));
        let (input, expected) = rest
            .rsplit_once('|')
            .unwrap_or_else(|| panic!("{at}: want MODE | INPUT | EXPECTED"));
        let (input, expected) = (field(input), field(expected));
        count += 1;
        let got = run_case(&lexer, mode.trim(), &input, &env);
        let ok = match &got {
            Ok(v) => expected != "error" && *v == expected,
            Err(_) => expected == "error",
        };
        if !ok {
            failures.push(format!(
                "{at}: {mode} {input:?}: want {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(count >= 100, "only {count} cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn errors_name_the_word() {
    let err = expand_word("${X:?must be set}", &NoEnv, '\\').expect_err("unset X");
    assert_eq!(
        err.to_string(),
        "failed to process \"${X:?must be set}\": X: must be set"
    );
    let err = expand_word("'abc", &NoEnv, '\\').expect_err("unterminated");
    assert!(err.to_string().contains("matching single-quote"), "{err}");
}

#[test]
fn tracks_matched_and_unmatched_names() {
    let env: Vec<(String, String)> = vec![("FOO".into(), "xxyy".into())];
    let e = Lexer::new('\\')
        .process_word("${ABC:-.}${FOO%x}${ABC:-.}", &env)
        .expect("valid");
    assert_eq!(e.result, ".xxyy.");
    assert!(e.matched.contains("FOO"));
    assert!(e.unmatched.contains("ABC"));
}

#[test]
fn skip_unset_env_keeps_references() {
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let e = lex
        .process_word("$A ${B} ${C:-x} ${D/a/b}", &NoEnv)
        .expect("valid");
    assert_eq!(e.result, "$A ${B} ${C:-x} ${D/a/b}");
}

fn nested(levels: usize) -> String {
    (0..levels).fold("x".to_string(), |w, i| format!("${{a{i}:-{w}}}"))
}

#[test]
fn nesting_up_to_the_limit_expands() {
    let e = expand_word(&nested(MAX_NESTING), &NoEnv, '\\').expect("within the limit");
    assert_eq!(e, "x");
}

#[test]
fn nesting_beyond_the_limit_is_an_error() {
    let err = expand_word(&nested(MAX_NESTING + 1), &NoEnv, '\\').expect_err("too deep");
    assert_eq!(
        err.reason.to_string(),
        format!("variable substitution nested deeper than {MAX_NESTING} levels")
    );
}
