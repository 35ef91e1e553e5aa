//! `.dockerignore` with the semantics of moby's `patternmatcher` and `ignorefile`, which
//! docker and BuildKit use:
//!
//! - reading: a UTF-8 BOM is dropped; lines starting with `#` are comments; lines are
//!   trimmed; `!` marks an exception; patterns are `Clean`ed (`./a//b/` → `a/b`) and a
//!   leading `/` is dropped (`/a` ≡ `a`);
//! - matching: later patterns win; a pattern that matches a parent directory matches
//!   everything under it (`docs` excludes `docs/x`); `*` and `?` never cross `/`; `**`
//!   crosses any number of directories (`**/x`, `a/**`, `a/**/b`); `[a-z]`, `[^a]` and `\`
//!   escapes as in Go's `filepath.Match`; malformed patterns are errors;
//! - the Dockerfile and .dockerignore may be excluded: they are still read by the build
//!   (the front end reads them directly), but COPY does not see them, as with docker.
//!
//! Two quirks kept on purpose because docker has them: a pattern starting with `**` and
//! no other wildcard is a plain suffix test (`**file` matches `dir/myfile`), and `a/**`
//! does not match `a` itself.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreError {
    /// A pattern `filepath.Match` would reject (`[`, `[-x]`, a trailing `\`, …).
    BadPattern {
        pattern: String,
        reason: &'static str,
    },
    /// A line that is only `!`.
    LoneExclamation,
    Read {
        path: PathBuf,
        message: String,
    },
}

impl fmt::Display for IgnoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreError::BadPattern { pattern, reason } => {
                write!(
                    f,
                    ".dockerignore: syntax error in pattern {pattern:?}: {reason}"
                )
            }
            IgnoreError::LoneExclamation => {
                write!(f, ".dockerignore: illegal exclusion pattern: \"!\"")
            }
            IgnoreError::Read { path, message } => {
                write!(f, "reading {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for IgnoreError {}

/// Lines of a .dockerignore file → patterns (moby `ignorefile.ReadAll`).
pub fn read_patterns(content: &str) -> Vec<String> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut out = Vec::new();
    for line in content.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        out.push(if invert {
            format!("!{cleaned}")
        } else {
            cleaned
        });
    }
    out
}

/// Go's `path.Clean`: collapse `//`, drop `.`, resolve `..` where possible, no trailing `/`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `*`: any run of non-`/`.
    Star,
    /// `?`: one non-`/`.
    One,
    /// `[...]` / `[^...]`: inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` followed by more pattern: nothing, or anything ending in `/`.
    AnyDirs,
    /// `**` at the end of a pattern that already had wildcards: anything.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Exact,
    /// `dir/**`: the pattern minus its trailing `**` is a prefix.
    Prefix,
    /// `**…` with no other wildcard: the pattern minus its leading `**` is a suffix.
    Suffix,
    Tokens(Vec<Token>),
}

/// One compiled line.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern without its `!`.
    pub text: String,
    pub is_exception: bool,
    kind: Kind,
}

impl Pattern {
    fn compile(line: &str) -> Result<Option<Pattern>, IgnoreError> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let mut text = clean(trimmed);
        let is_exception = text.starts_with('!');
        if is_exception {
            if text.len() == 1 {
                return Err(IgnoreError::LoneExclamation);
            }
            text.remove(0);
        }
        validate(&text)?;
        let kind = kind_of(&text);
        Ok(Some(Pattern {
            text,
            is_exception,
            kind,
        }))
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            Kind::Tokens(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                match_tokens(tokens, &chars)
            }
        }
    }

    /// The part before the first wildcard: every path this pattern can match starts with it.
    fn literal_prefix(&self) -> &str {
        let end = self
            .text
            .find(['*', '?', '[', '\\'])
            .unwrap_or(self.text.len());
        &self.text[..end]
    }
}

/// Go's `filepath.Match` syntax check, for the whole pattern.
fn validate(p: &str) -> Result<(), IgnoreError> {
    let bad = |reason| IgnoreError::BadPattern {
        pattern: p.to_string(),
        reason,
    };
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    // getEsc: one class character, maybe escaped; never `-` or `]` unescaped.
    let get_esc = |i: &mut usize| -> Result<(), IgnoreError> {
        match chars.get(*i) {
            None | Some('-') | Some(']') => return Err(bad("bad character class")),
            Some('\\') => {
                *i += 1;
                if chars.get(*i).is_none() {
                    return Err(bad("trailing backslash in character class"));
                }
            }
            _ => {}
        }
        *i += 1;
        if *i >= chars.len() {
            return Err(bad("unterminated character class"));
        }
        Ok(())
    };
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err(bad("trailing backslash"));
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut nrange = 0;
                loop {
                    if chars.get(i) == Some(&']') && nrange > 0 {
                        i += 1;
                        break;
                    }
                    get_esc(&mut i)?;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        get_esc(&mut i)?;
                    }
                    nrange += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// moby's `Pattern.compile`: the match kind, and the tokens for the general case.
fn kind_of(p: &str) -> Kind {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = p.chars().collect();
    let mut tokens = Vec::new();
    let mut detected = Detected::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        tokens.push(Token::Any);
                        detected = Detected::Regexp;
                    }
                } else {
                    tokens.push(Token::AnyDirs);
                    detected = Detected::Regexp;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                detected = Detected::Regexp;
            }
            '?' => {
                tokens.push(Token::One);
                detected = Detected::Regexp;
            }
            '\\' => {
                // validate() guarantees a following character.
                if let Some(next) = chars.get(i) {
                    tokens.push(Token::Lit(*next));
                    i += 1;
                    detected = Detected::Regexp;
                }
            }
            '[' => {
                let (token, next) = parse_class(&chars, i);
                tokens.push(token);
                i = next;
                detected = Detected::Regexp;
            }
            c => tokens.push(Token::Lit(c)),
        }
        first = false;
    }
    match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix,
        Detected::Suffix => Kind::Suffix,
        Detected::Regexp => Kind::Tokens(tokens),
    }
}

/// Parse a validated class starting after `[`; return it and the index after `]`.
fn parse_class(chars: &[char], mut i: usize) -> (Token, usize) {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let esc = |i: &mut usize| -> char {
        if chars[*i] == '\\' {
            *i += 1;
        }
        let c = chars[*i];
        *i += 1;
        c
    };
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            i += 1;
            break;
        }
        if i >= chars.len() {
            break;
        }
        let lo = esc(&mut i);
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            i += 1;
            hi = esc(&mut i);
        }
        ranges.push((lo, hi));
    }
    (Token::Class { negated, ranges }, i)
}

fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Lit(c) => text.first() == Some(c) && match_tokens(rest, &text[1..]),
        Token::One => text.first().is_some_and(|c| *c != '/') && match_tokens(rest, &text[1..]),
        Token::Class { negated, ranges } => {
            text.first()
                .is_some_and(|c| ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
                && match_tokens(rest, &text[1..])
        }
        Token::Star => {
            let run = text.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| match_tokens(rest, &text[n..]))
        }
        Token::Any => (0..=text.len()).any(|n| match_tokens(rest, &text[n..])),
        Token::AnyDirs => {
            match_tokens(rest, text)
                || text
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c == '/')
                    .any(|(n, _)| match_tokens(rest, &text[n + 1..]))
        }
    }
}

/// A compiled .dockerignore.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Compile patterns as [`read_patterns`] returns them.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<DockerIgnore, IgnoreError> {
        let mut out = Vec::new();
        for p in patterns {
            if let Some(p) = Pattern::compile(p.as_ref())? {
                out.push(p);
            }
        }
        Ok(DockerIgnore { patterns: out })
    }

    /// Parse the text of a .dockerignore file.
    pub fn parse(content: &str) -> Result<DockerIgnore, IgnoreError> {
        DockerIgnore::new(&read_patterns(content))
    }

    /// The ignore file for a build, as BuildKit picks it: `<Dockerfile>.dockerignore` next
    /// to the Dockerfile if it exists, else `<context>/.dockerignore`, else nothing.
    pub fn load(context: &Path, dockerfile: Option<&Path>) -> Result<DockerIgnore, IgnoreError> {
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(context.join(".dockerignore"));
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => return DockerIgnore::parse(&String::from_utf8_lossy(&bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(IgnoreError::Read {
                        path,
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(DockerIgnore::default())
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `path` (context-relative, `/`-separated) is excluded: moby's
    /// `MatchesOrParentMatches`. `.` (the context itself) is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => {
                let parent = &path[..i];
                parent
                    .match_indices('/')
                    .map(|(j, _)| &parent[..j])
                    .chain([parent])
                    .collect()
            }
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.is_exception != matched {
                continue;
            }
            let hit = p.matches(&path) || parents.iter().any(|dir| p.matches(dir));
            if hit {
                matched = !p.is_exception;
            }
        }
        matched
    }

    /// Whether COPY leaves `path` out of the context under `root`: it is excluded and, if a
    /// directory, holds nothing an exception re-includes. moby's walker keeps an excluded
    /// directory when an exception re-includes something below it (`**/build` then
    /// `!web/build/public` keeps `web/build`, `web/build/public` and its contents).
    pub fn is_hidden(&self, root: &Path, path: &str) -> bool {
        if !self.is_excluded(path) {
            return false;
        }
        let dir = root.join(path);
        let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        !(is_dir && !self.can_skip_dir(path) && self.reincludes_below(root, path))
    }

    /// Whether some path below directory `dir` is not excluded.
    fn reincludes_below(&self, root: &Path, dir: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return false;
        };
        for entry in entries.flatten() {
            let child = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if !self.is_excluded(&child) {
                return true;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && !self.can_skip_dir(&child)
                && self.reincludes_below(root, &child)
            {
                return true;
            }
        }
        false
    }

    /// Whether an excluded directory can be skipped without looking inside: true unless
    /// an exception (`!…`) might match something under it.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let dir_slash = format!("{}/", clean(dir));
        !self.patterns.iter().filter(|p| p.is_exception).any(|p| {
            let prefix = p.literal_prefix();
            prefix.starts_with(&dir_slash)
                || dir_slash.starts_with(prefix)
                || p.text.starts_with("**")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(patterns: &[&str], path: &str) -> Result<bool, IgnoreError> {
        Ok(DockerIgnore::new(patterns)?.is_excluded(path))
    }

    /// moby/patternmatcher TestMatches (MatchesOrParentMatches), one pattern each.
    #[test]
    fn moby_matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\*b", "a*b", true),
        ];
        for (pattern, path, want) in cases {
            let got = DockerIgnore::new(&[*pattern])
                .expect("valid pattern")
                .is_excluded(path);
            assert_eq!(got, *want, "pattern {pattern:?} path {path:?}");
        }
    }

    #[test]
    fn moby_multi_pattern_table() {
        let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                whl,
                false,
            ),
            (&["**", "!dist/*.whl"], whl, false),
            (&["*"], "fileutils.go", true),
            (&["*.go"], "fileutils.go", true),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["*.go", "!fileutils.go"], "fileutils.go", false),
            (&["*.go"], ".", false),
            (&[], "/any/path/there", false),
        ];
        for (patterns, path, want) in cases {
            assert_eq!(
                matches(patterns, path),
                Ok(*want),
                "patterns {patterns:?} path {path:?}"
            );
        }
    }

    /// moby's copy of Go's filepath.Match tests (TestMatch), through `Matches`.
    #[test]
    fn go_filepath_match_table() {
        let bad = |p: &str| matches!(DockerIgnore::new(&[p]), Err(IgnoreError::BadPattern { .. }));
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*", "ab/c", Some(true)),
            ("a*/b", "abc/b", Some(true)),
            ("a*/b", "a/c/b", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("a[^a][^a][^a]b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[\\-x]", "x", Some(true)),
            ("[\\-x]", "-", Some(true)),
            ("[\\-x]", "a", Some(false)),
            ("[]a]", "]", None),
            ("[-]", "-", None),
            ("[x-]", "x", None),
            ("[x-]", "-", None),
            ("[x-]", "z", None),
            ("[-x]", "x", None),
            ("[-x]", "-", None),
            ("[-x]", "a", None),
            ("\\", "a", None),
            ("[a-b-c]", "a", None),
            ("[", "a", None),
            ("[^", "a", None),
            ("[^bc", "a", None),
            ("a[", "a", None),
            ("a[", "ab", None),
            ("*x", "xxx", Some(true)),
        ];
        for (pattern, path, want) in cases {
            match want {
                Some(want) => assert_eq!(
                    matches(&[pattern], path),
                    Ok(*want),
                    "pattern {pattern:?} path {path:?}"
                ),
                None => assert!(bad(pattern), "pattern {pattern:?} must be rejected"),
            }
        }
        assert_eq!(matches(&["!"], "x"), Err(IgnoreError::LoneExclamation));
    }

    /// moby/patternmatcher/ignorefile TestReadAll.
    #[test]
    fn read_patterns_like_ignorefile() {
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
        assert_eq!(
            read_patterns(content),
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path",
                "!",
                "!"
            ]
        );
        assert_eq!(
            read_patterns("\u{feff}./a//b/\n  #not a comment\n"),
            ["a/b", "#not a comment"]
        );
        assert!(DockerIgnore::parse("!\n").is_err());
    }

    #[test]
    fn exception_below_an_excluded_dir_keeps_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "web/build/public/index.html",
            "web/build/private.txt",
            "build/out.txt",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let ig = DockerIgnore::new(&["**/build", "!web/build/public"]).unwrap();
        let hidden = |p: &str| ig.is_hidden(dir.path(), p);
        assert!(!hidden("web/build"));
        assert!(!hidden("web/build/public"));
        assert!(!hidden("web/build/public/index.html"));
        assert!(hidden("web/build/private.txt"));
        assert!(hidden("build"));
        assert!(hidden("build/out.txt"));
    }

    #[test]
    fn skipping_directories_respects_exceptions() {
        let ig = DockerIgnore::parse("node_modules\nbuild\n!build/keep.txt\n").expect("parse");
        assert!(ig.is_excluded("node_modules/a/b.js"));
        assert!(ig.can_skip_dir("node_modules"));
        assert!(ig.is_excluded("build/out.o"));
        assert!(!ig.is_excluded("build/keep.txt"));
        assert!(!ig.can_skip_dir("build"));
        let ig = DockerIgnore::parse("*\n!**/*.go\n").expect("parse");
        assert!(
            !ig.can_skip_dir("deep"),
            "a ** exception may match anywhere"
        );
        assert!(!ig.is_excluded("deep/main.go"));
    }

    #[test]
    fn clean_like_go() {
        for (input, want) in [
            ("", "."),
            ("./a//b/", "a/b"),
            ("/a/../b", "/b"),
            ("a/../../b", "../b"),
            ("/..", "/"),
            ("**/", "**"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }
}
