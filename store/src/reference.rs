//! Image references, normalised the way docker's `reference.ParseNormalizedNamed`
//! does: `busybox` → `docker.io/library/busybox:latest`.
//!
//! Grammar (from distribution/reference):
//!
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [domain "/"] path-component ["/" path-component]*
//! domain         := host [":" port]     host := domain-name | "[" IPv6 "]"
//! domain-name    := domain-component ["." domain-component]*
//! domain-component := /[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]/
//! path-component := /[a-z0-9]+/ [separator /[a-z0-9]+/]*
//! separator      := /[_.]|__|[-]+/
//! tag            := /[\w][\w.-]{0,127}/
//! ```
//!
//! The first component is a domain when it contains `.` or `:`, is `localhost`,
//! or has an upper-case letter; otherwise the domain is `docker.io`, and a
//! single-component name on docker.io gains `library/`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalised image reference. `tag` is `Some("latest")` when neither a tag nor
/// a digest was given, like docker's `TagNameOnly`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Why a string is not a reference; `input` is what the user typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Reference {
    /// Parses and normalises `s`. See the module doc for the grammar.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty reference"));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                "a 64-character hexadecimal string is an image id, not a repository name",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|e| err(e.reason))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(err(&format!(
                    "tag {t:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
                )));
            }
        }
        let (registry, repository) = split_domain(name);
        if let Some(r) = &registry {
            if !valid_domain(r) {
                return Err(err(&format!("invalid registry host {r:?}")));
            }
        }
        let mut registry = registry.unwrap_or(DEFAULT_REGISTRY).to_string();
        if registry == "index.docker.io" {
            registry = DEFAULT_REGISTRY.to_string();
        }
        if repository.to_lowercase() != repository {
            return Err(err(&format!(
                "repository name ({repository}) must be lowercase"
            )));
        }
        let mut repository = repository.to_string();
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(err(&format!(
                "repository {repository:?} must be lowercase letters, digits and separators (. _ __ -) between them"
            )));
        }
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err("repository name must not be more than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short form for display: `busybox:latest`, `localhost:5000/a/b:t`.
    pub fn familiar(&self) -> String {
        let mut s = self.repository_familiar();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }

    /// The REPOSITORY column: `busybox`, `someone/app`, `localhost:5000/a/b`.
    pub fn repository_familiar(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            if let Some(short) = self.repository.strip_prefix("library/") {
                if !short.contains('/') {
                    return short.to_string();
                }
            }
            return self.repository.clone();
        }
        self.name()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalised form, e.g. `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// docker's `splitDockerDomain`: returns (domain if explicit, remainder).
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = t.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `[a-z0-9]+ ([_.]|__|-+) [a-z0-9]+ ...`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // [IPv6]:port
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => return !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn good_references() {
        let dd = format!("docker.io/library/busybox@{D}");
        let tagged_d = format!("docker.io/library/busybox:1.36@{D}");
        let cases: Vec<(String, String, String)> = vec![
            (
                "busybox".into(),
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "busybox:1.36".into(),
                "docker.io/library/busybox:1.36".into(),
                "busybox:1.36".into(),
            ),
            (
                "library/busybox".into(),
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "docker.io/library/busybox".into(),
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "index.docker.io/library/busybox".into(),
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "someone/app:v1".into(),
                "docker.io/someone/app:v1".into(),
                "someone/app:v1".into(),
            ),
            (
                "docker.io/library/a/b".into(),
                "docker.io/library/a/b:latest".into(),
                "library/a/b:latest".into(),
            ),
            (
                "localhost:5000/a/b:t".into(),
                "localhost:5000/a/b:t".into(),
                "localhost:5000/a/b:t".into(),
            ),
            (
                "localhost/app".into(),
                "localhost/app:latest".into(),
                "localhost/app:latest".into(),
            ),
            (
                "ghcr.io/o/app:v1".into(),
                "ghcr.io/o/app:v1".into(),
                "ghcr.io/o/app:v1".into(),
            ),
            (
                "Registry.Example.com/a".into(),
                "Registry.Example.com/a:latest".into(),
                "Registry.Example.com/a:latest".into(),
            ),
            (
                "[::1]:5000/x".into(),
                "[::1]:5000/x:latest".into(),
                "[::1]:5000/x:latest".into(),
            ),
            (
                "127.0.0.1:5000/x:t-1.2_3".into(),
                "127.0.0.1:5000/x:t-1.2_3".into(),
                "127.0.0.1:5000/x:t-1.2_3".into(),
            ),
            (
                "foo:5000".into(),
                "docker.io/library/foo:5000".into(),
                "foo:5000".into(),
            ),
            (
                "x/a.b_c__d---e".into(),
                "docker.io/x/a.b_c__d---e:latest".into(),
                "x/a.b_c__d---e:latest".into(),
            ),
            (format!("busybox@{D}"), dd.clone(), format!("busybox@{D}")),
            (
                format!("busybox:1.36@{D}"),
                tagged_d.clone(),
                format!("busybox:1.36@{D}"),
            ),
        ];
        for (input, want, familiar) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(r.to_string(), want, "input {input:?}");
            assert_eq!(r.familiar(), familiar, "input {input:?}");
        }
    }

    #[test]
    fn bad_references() {
        let long = format!("a/{}", "b".repeat(260));
        let long_tag = format!("a:{}", "t".repeat(129));
        let cases = [
            "",
            "Busybox",
            "busybox:",
            "busybox@",
            ":tag",
            "/busybox",
            "busybox/",
            "a//b",
            "-a/b",
            "a-/b",
            "bad_/x",
            "busybox:-tag",
            "busybox:ta g",
            "busy box",
            "busybox@sha256:abc",
            "busybox@md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "localhost:port/x",
            "-bad.com/x",
            "a..b",
            "a.b_c/f",
            "a___b",
            "x/UPPER",
            long.as_str(),
            long_tag.as_str(),
        ];
        for input in cases {
            assert!(
                Reference::parse(input).is_err(),
                "{input:?} parsed as {:?}",
                Reference::parse(input)
            );
        }
    }

    #[test]
    fn repository_column() {
        let cases = [
            ("busybox", "busybox"),
            ("someone/app", "someone/app"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b"),
        ];
        for (input, want) in cases {
            assert_eq!(Reference::parse(input).unwrap().repository_familiar(), want);
        }
    }
}
