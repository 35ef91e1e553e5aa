//! Heredocs at build time: what `RUN <<EOF` executes and what `COPY <<EOF /dst` writes.
//!
//! RUN follows BuildKit's `dispatchRun`:
//! - the command line is exactly one heredoc marker (`RUN <<EOF`): a body starting with `#!`
//!   is written to `/dev/pipes/NAME` (mode 0755) and executed directly, so its interpreter
//!   line picks the program; any other body is passed to the stage's shell as `-c BODY`;
//! - otherwise (`RUN cat <<A <<B > /x`, `RUN python3 <<EOF`): the line and every body with
//!   its delimiter are joined back into one script for the shell, which handles the
//!   heredocs itself (expansion, `<<-`, quoted delimiters).

use crate::dockerfile::heredoc::parse_heredoc;
use crate::dockerfile::{expand_word, Heredoc};
use crate::solve::StepError;

/// Where a shebang heredoc is put inside the step (BuildKit's path).
pub const PIPES_DIR: &str = "/dev/pipes";

/// What a RUN with heredocs executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunScript {
    pub argv: Vec<String>,
    /// A file to place in the step (target path, bytes, mode 0755) for a `#!` body.
    pub file: Option<(String, Vec<u8>)>,
}

/// The argv of `RUN <cmdline>` with `heredocs`; `shell` is the stage's SHELL.
pub fn run_script(shell: &[String], cmdline: &str, heredocs: &[Heredoc]) -> RunScript {
    let with_shell = |arg: String| {
        let mut v = shell.to_vec();
        v.push(arg);
        v
    };
    let single = parse_heredoc(cmdline.trim()).ok().flatten();
    match (single, heredocs) {
        (Some(_), [doc]) => {
            let body = doc.body();
            if body.starts_with("#!") {
                let target = format!("{PIPES_DIR}/{}", doc.name);
                RunScript {
                    argv: vec![target.clone()],
                    file: Some((target, body.into_bytes())),
                }
            } else {
                RunScript {
                    argv: with_shell(body),
                    file: None,
                }
            }
        }
        _ => {
            let mut full = cmdline.to_string();
            for doc in heredocs {
                full.push('\n');
                full.push_str(&doc.content);
                full.push_str(&doc.name);
            }
            RunScript {
                argv: with_shell(full),
                file: None,
            }
        }
    }
}

/// The bytes `COPY <<NAME` writes: the body, tabs stripped for `<<-`, and expanded with the
/// stage's variables unless the delimiter was quoted.
pub fn copy_body(doc: &Heredoc, env: &[(String, String)]) -> Result<Vec<u8>, StepError> {
    let body = doc.body();
    if !doc.expand {
        return Ok(body.into_bytes());
    }
    expand_heredoc(&body, env).map(String::into_bytes)
}

/// `$VAR`, `${VAR}` and `${VAR:-default}`-style expansion of a heredoc body; quotes and
/// backslashes other than `\$` are kept as written.
fn expand_heredoc(body: &str, env: &[(String, String)]) -> Result<String, StepError> {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find(['$', '\\']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("\\$") {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix('\\') {
            out.push('\\');
            rest = after;
            continue;
        }
        // A `$` word: hand `${...}` or `$NAME` to the lexer.
        let len = if let Some(inner) = tail.strip_prefix("${") {
            match inner.find('}') {
                Some(end) => end + 3,
                None => return Err(StepError::HeredocUnterminated(format!("{tail:.20}"))),
            }
        } else {
            1 + tail[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len() - 1)
        };
        if len == 1 {
            out.push('$');
        } else {
            // A heredoc body is the file's text, not Dockerfile syntax: its escape is `\`
            // whatever the `# escape=` directive says, as for `\$` above.
            out.push_str(&expand_word(&tail[..len], env, '\\')?);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, content: &str, expand: bool, chomp: bool) -> Heredoc {
        Heredoc {
            name: name.into(),
            fd: 0,
            expand,
            chomp,
            content: content.into(),
        }
    }

    #[test]
    fn run_forms() {
        let sh = vec!["/bin/sh".to_string(), "-c".to_string()];
        let s = run_script(&sh, "<<EOF", &[doc("EOF", "echo hi\n", true, false)]);
        assert_eq!(s.argv, vec!["/bin/sh", "-c", "echo hi\n"]);
        let s = run_script(&sh, "<<-EOF", &[doc("EOF", "\techo hi\n", true, true)]);
        assert_eq!(s.argv, vec!["/bin/sh", "-c", "echo hi\n"]);
        let s = run_script(
            &sh,
            "<<EOF",
            &[doc(
                "EOF",
                "#!/usr/bin/env python3\nprint(1)\n",
                true,
                false,
            )],
        );
        assert_eq!(s.argv, vec!["/dev/pipes/EOF"]);
        assert!(s.file.is_some());
        let s = run_script(
            &sh,
            "cat <<A <<B > /out",
            &[doc("A", "a\n", true, false), doc("B", "b\n", true, false)],
        );
        assert_eq!(s.argv[2], "cat <<A <<B > /out\na\nA\nb\nB");
    }

    #[test]
    fn copy_expansion() {
        let env = vec![("NAME".to_string(), "world".to_string())];
        let d = doc("F", "hello $NAME ${NAME} \\$NAME \"q\"\n", true, false);
        assert_eq!(
            copy_body(&d, &env).expect("valid"),
            b"hello world world $NAME \"q\"\n"
        );
        let d = doc("F", "hello $NAME\n", false, false);
        assert_eq!(copy_body(&d, &env).expect("valid"), b"hello $NAME\n");
    }
}
