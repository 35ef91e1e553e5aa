//! Per-instruction argument syntax (BuildKit's `line_parsers.go`): how the text after the
//! instruction name becomes a list of argument strings. Quotes found here are kept; they
//! are removed later by expansion, exactly as BuildKit does.

use super::error::Span;
use super::node::{Args, Node};
use super::syntax_error::SyntaxError;

/// What a line parser returns: the arguments and whether they were a JSON array.
pub(crate) type Parsed = Result<(Args, bool), SyntaxError>;

/// A line parser receives the arguments (flags already removed) and the escape character.
pub(crate) type LineParser = fn(&str, char) -> Parsed;

/// The instruction-name table. Names not listed parse with no arguments and are rejected
/// as unknown by the typed layer, so the error can say where and suggest a name.
pub(crate) fn line_parser(lower_name: &str) -> Option<LineParser> {
    Some(match lower_name {
        "add" | "copy" | "volume" => maybe_json_to_list,
        "arg" => name_or_name_val,
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json,
        "env" => env,
        "label" => label,
        "expose" | "from" => whitespace_delimited,
        "healthcheck" => health_config,
        "maintainer" | "stopsignal" | "user" | "workdir" => string,
        "onbuild" => return None,
        _ => ignore,
    })
}

/// The characters BuildKit's `reWhitespace` splits on (`[\t\v\f\r ]`; not newline).
pub(crate) fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Go's `reWhitespace.Split(s, -1)`: blank edges give empty first or last parts.
fn split_blank(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_blank = false;
    for c in s.chars() {
        if is_blank(c) {
            if !prev_blank {
                out.push(std::mem::take(&mut cur));
            }
            prev_blank = true;
        } else {
            prev_blank = false;
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Split `line` into the instruction name, its `--flags` and the remaining arguments.
pub(crate) fn split_command(line: &str, escape: char) -> (String, Vec<String>, String) {
    let line = line.trim();
    let Some(i) = line.find(is_blank) else {
        return (line.to_string(), Vec::new(), String::new());
    };
    let (cmd, rest) = (&line[..i], line[i..].trim_start_matches(is_blank));
    let (args, flags) = extract_builder_flags(rest, escape);
    (cmd.to_string(), flags, args.trim().to_string())
}

/// Take leading `--flag[=value]` words (quotes and escapes processed); stop at the first
/// word not starting with `--`, or after a bare `--`.
fn extract_builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let (pos, ch) = chars[i];
        if !in_word {
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            if ch != '-' || chars.get(i + 1).map(|c| c.1) != Some('-') {
                return (line[pos..].to_string(), words);
            }
            in_word = true;
        }
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            } else if ch == escape {
                match chars.get(i + 1) {
                    None => quote = None,
                    Some(&(_, n)) => {
                        word.push(n);
                        i += 1;
                    }
                }
            } else {
                word.push(ch);
            }
            i += 1;
            continue;
        }
        if ch.is_whitespace() {
            if word == "--" {
                return (line[pos..].to_string(), words);
            }
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.clear();
            blank_ok = false;
            in_word = false;
        } else if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        } else if ch == escape {
            if let Some(&(_, n)) = chars.get(i + 1) {
                word.push(n);
                i += 1;
            }
        } else {
            word.push(ch);
        }
        i += 1;
    }
    if in_word && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (String::new(), words)
}

/// Split on blanks outside quotes, keeping quotes and escapes in the words.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        let last = i + 1 == chars.len();
        i += 1;
        if !in_word && quote.is_none() {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        // The escape stays in the word with the character it escapes (expansion unescapes
        // later); inside single quotes it is literal. A trailing one is dropped and ends
        // an open quote.
        if ch == escape && quote != Some('\'') {
            if last {
                quote = None;
                continue;
            }
            word.push(ch);
            word.push(chars[i]);
            i += 1;
            continue;
        }
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            word.push(ch);
            continue;
        }
        if ch.is_whitespace() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
        }
        word.push(ch);
    }
    if (in_word || quote.is_some()) && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

fn ignore(_: &str, _: char) -> Parsed {
    Ok((Args::List(Vec::new()), false))
}

/// ENV and LABEL: `key=value ...` or the legacy `key value`. Each pair becomes three
/// arguments: key, value and the separator (`=` or empty for the legacy form).
fn env(rest: &str, escape: char) -> Parsed {
    name_val(rest, "ENV", escape)
}

fn label(rest: &str, escape: char) -> Parsed {
    name_val(rest, "LABEL", escape)
}

fn name_val(rest: &str, key: &'static str, escape: char) -> Parsed {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok((Args::List(Vec::new()), false));
    };
    if !first.contains('=') {
        let parts = split_blank_n2(rest);
        let Some((k, v)) = parts else {
            return Err(SyntaxError::NoValue(key));
        };
        return Ok((Args::List(vec![k, v, String::new()]), false));
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(SyntaxError::NoEquals(word));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok((Args::List(out), false))
}

/// `reWhitespace.Split(rest, 2)`: the first word and everything after the blanks.
fn split_blank_n2(rest: &str) -> Option<(String, String)> {
    let i = rest.find(is_blank)?;
    let value = rest[i..].trim_start_matches(is_blank);
    Some((rest[..i].to_string(), value.to_string()))
}

fn name_or_name_val(rest: &str, escape: char) -> Parsed {
    Ok((Args::List(parse_words(rest, escape)), false))
}

fn whitespace_delimited(rest: &str, _: char) -> Parsed {
    if rest.is_empty() {
        return Ok((Args::List(Vec::new()), false));
    }
    Ok((Args::List(split_blank(rest)), false))
}

fn string(rest: &str, _: char) -> Parsed {
    let args = if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    };
    Ok((Args::List(args), false))
}

/// `Ok(Some(..))` for a JSON array of strings, `Ok(None)` when the text is not JSON (the
/// caller falls back to shell form), an error for a JSON array holding non-strings.
pub(crate) fn parse_json(rest: &str) -> Result<Option<Vec<String>>, SyntaxError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(SyntaxError::NotStringArray),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn maybe_json(rest: &str, _: char) -> Parsed {
    if rest.is_empty() {
        return Ok((Args::List(Vec::new()), false));
    }
    match parse_json(rest)? {
        Some(list) => Ok((Args::List(list), true)),
        None => Ok((Args::List(vec![rest.to_string()]), false)),
    }
}

fn maybe_json_to_list(rest: &str, escape: char) -> Parsed {
    match parse_json(rest)? {
        Some(list) => Ok((Args::List(list), true)),
        None => whitespace_delimited(rest, escape),
    }
}

/// HEALTHCHECK: the type word (`CMD` or `NONE`) then a maybe-JSON command.
fn health_config(rest: &str, escape: char) -> Parsed {
    let sep = rest
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Args::List(Vec::new()), false));
    }
    let typ = rest[..sep].to_string();
    let cmd = rest[sep..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (args, json) = maybe_json(cmd, escape)?;
    let mut list = vec![typ];
    if let Args::List(more) = args {
        list.extend(more);
    }
    Ok((Args::List(list), json))
}

/// The node for an ONBUILD trigger, parsed like a line of its own.
pub(crate) fn sub_command(rest: &str, escape: char) -> Result<Option<Node>, SyntaxError> {
    if rest.is_empty() {
        return Ok(None);
    }
    node_from_line(rest, escape, Vec::new()).map(Some)
}

/// Build a node from one logical line: split off the name and flags, then run the
/// instruction's line parser.
pub(crate) fn node_from_line(
    line: &str,
    escape: char,
    comments: Vec<String>,
) -> Result<Node, SyntaxError> {
    let (keyword, flags, rest) = split_command(line, escape);
    let lower = keyword.to_ascii_lowercase();
    let (args, is_json) = match line_parser(&lower) {
        Some(parse) => parse(&rest, escape)?,
        None => (Args::Sub(sub_command(&rest, escape)?.map(Box::new)), false),
    };
    Ok(Node {
        keyword,
        flags,
        args,
        is_json,
        original: line.to_string(),
        heredocs: Vec::new(),
        span: Span::default(),
        comments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a "b c" d\ e 'f\'"#, '\\'),
            vec!["a", "\"b c\"", "d\\ e", "'f\\'"]
        );
        assert_eq!(parse_words("x=\"\"", '\\'), vec!["x=\"\""]);
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
    }

    #[test]
    fn flags_are_split_off() {
        let (cmd, flags, args) = split_command("COPY --from=build --chown=\"a b\" src /dst", '\\');
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, vec!["--from=build", "--chown=a b"]);
        assert_eq!(args, "src /dst");
        let (_, flags, args) = split_command("RUN -- --not-a-flag", '\\');
        assert!(flags.is_empty());
        assert_eq!(args, "--not-a-flag");
        let (_, flags, args) = split_command("RUN --network=none", '\\');
        assert_eq!(flags, vec!["--network=none"]);
        assert_eq!(args, "");
    }

    #[test]
    fn json_or_shell() {
        assert_eq!(
            parse_json(r#"["a", "b"]"#),
            Ok(Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse_json("[\"a\" 'b']"), Ok(None));
        assert_eq!(parse_json("echo hi"), Ok(None));
        assert!(parse_json("[1, 2]").is_err());
        assert_eq!(split_blank("a  b\tc "), vec!["a", "b", "c", ""]);
    }
}
