//! Heredocs: `RUN <<EOF`, `<<-EOF` (leading tabs stripped), quoted delimiters (`<<"EOF"`,
//! `<<'EOF'`) that turn expansion of the body off, several on one line, `COPY <<EOF /dst`.
//!
//! As in BuildKit, the instruction line is split into words with quotes and escapes kept;
//! every word of the form `[fd]<<[-]WORD` names a heredoc, and the bodies follow the
//! instruction in the same order, each ending at a line equal to its delimiter.

use super::expand::{Lexer, NoEnv};
use super::syntax_error::SyntaxError;

/// One heredoc attached to a RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The delimiter with quotes removed; for COPY/ADD also the file name.
    pub name: String,
    /// The file descriptor number before `<<` (0 when none was written).
    pub fd: u32,
    /// False when any part of the delimiter was quoted: the body is used literally.
    pub expand: bool,
    /// `<<-`: leading tabs are removed from each body line and from the delimiter line.
    pub chomp: bool,
    /// The body as written, every line with its newline.
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed when `chomp` is set.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// Parse one word as a heredoc marker (`^(\d*)<<(-?)\s*([^<]*)$`); `Ok(None)` when it is
/// not one.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, SyntaxError> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0c']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = word[..digits].parse().unwrap_or(0);

    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoEnv)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoEnv)?;
    if raw.len() != 1 {
        return Err(SyntaxError::HeredocLexing(rest.to_string()));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// Every heredoc marker on an instruction line, in order.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, SyntaxError> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // A line the lexer cannot split (an unterminated quote) has no heredocs, as in BuildKit.
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool, u32)> {
        heredocs_from_line(line)
            .expect("valid")
            .into_iter()
            .map(|h| (h.name, h.expand, h.chomp, h.fd))
            .collect()
    }

    #[test]
    fn markers() {
        assert_eq!(names("RUN <<EOF"), vec![("EOF".into(), true, false, 0)]);
        assert_eq!(names("RUN <<-EOF"), vec![("EOF".into(), true, true, 0)]);
        assert_eq!(names("RUN << EOF"), vec![("EOF".into(), true, false, 0)]);
        assert_eq!(
            names("RUN <<\"EOF\""),
            vec![("EOF".into(), false, false, 0)]
        );
        assert_eq!(names("RUN <<'EOF'"), vec![("EOF".into(), false, false, 0)]);
        assert_eq!(
            names("RUN 3<<EOF cat /dev/fd/3"),
            vec![("EOF".into(), true, false, 3)]
        );
        assert_eq!(
            names("COPY <<FILE1 <<FILE2 /dest/"),
            vec![
                ("FILE1".into(), true, false, 0),
                ("FILE2".into(), true, false, 0)
            ]
        );
        assert_eq!(names("RUN echo a<<b"), vec![]);
        assert_eq!(names("RUN echo '<<EOF'"), vec![]);
        assert_eq!(
            names("RUN cat <<EOF > /out"),
            vec![("EOF".into(), true, false, 0)]
        );
    }

    #[test]
    fn marker_words() {
        let valid = [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ];
        for w in valid {
            assert_eq!(
                parse_heredoc(w).expect(w).map(|h| h.name).as_deref(),
                Some("EOF"),
                "{w}"
            );
        }
        for w in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(w).is_err(), "{w} should be an error");
        }
        for w in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_heredoc(w).expect(w), None, "{w}");
        }
        assert_eq!(names("RUN << -EOF"), vec![("-EOF".into(), true, false, 0)]);
        // BuildKit's lexer splits `<<-` from the word after a blank: no heredoc
        assert_eq!(names("RUN <<- EOF"), vec![]);
        assert_eq!(names("RUN <<eo'f'"), vec![("eof".into(), false, false, 0)]);
        assert_eq!(names("RUN \"<<EOF\""), vec![]);
    }

    #[test]
    fn chomp_removes_leading_tabs() {
        let h = Heredoc {
            name: "E".into(),
            fd: 0,
            expand: true,
            chomp: true,
            content: "\t\ta\n\tb\nc\n".into(),
        };
        assert_eq!(h.body(), "a\nb\nc\n");
    }
}
