//! COPY/ADD beyond plain context files: `--chmod` (octal and symbolic), `--exclude`,
//! `--parents`, heredoc sources, and ADD of URLs and git repositories. Each adds entries to
//! the step's `CopyPlan`; `copy_step` then fingerprints and writes the plan as usual.

use std::fs;
use std::path::{Path, PathBuf};

use crate::copy::{self, CopyItem, CopyOptions, CopyPlan, ItemKind, SourceTree};
use crate::dockerfile::Heredoc;
use crate::dockerignore::DockerIgnore;
use crate::solve::StepError;

/// `--chmod=0755` or `--chmod=u+x,g-w,o=r` (chmod(1)'s symbolic form, `a` when no who).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of user/group/other this clause touches (0o700, 0o070, 0o007 or'ed).
    who: u32,
    op: char,
    /// `rwxXst` letters.
    perms: String,
}

pub fn parse_chmod(s: &str) -> Result<Chmod, StepError> {
    let bad = || StepError::Chmod(s.to_string());
    if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return u32::from_str_radix(s, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(Chmod::Octal)
            .ok_or_else(bad);
    }
    let mut clauses = Vec::new();
    for part in s.split(',') {
        let op_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
        let (who_s, rest) = part.split_at(op_at);
        let mut who = 0;
        for c in who_s.chars() {
            who |= match c {
                'u' => 0o700,
                'g' => 0o070,
                'o' => 0o007,
                'a' => 0o777,
                _ => return Err(bad()),
            };
        }
        if who == 0 {
            who = 0o777;
        }
        let op = rest.chars().next().ok_or_else(bad)?;
        let perms = &rest[1..];
        if perms.chars().any(|c| !"rwxXst".contains(c)) {
            return Err(bad());
        }
        clauses.push(Clause {
            who,
            op,
            perms: perms.to_string(),
        });
    }
    Ok(Chmod::Symbolic(clauses))
}

/// The mode `chmod` gives an entry whose current mode is `mode`.
pub fn apply_chmod(chmod: &Chmod, mode: u32, is_dir: bool) -> u32 {
    let clauses = match chmod {
        Chmod::Octal(m) => return *m,
        Chmod::Symbolic(c) => c,
    };
    let mut mode = mode & 0o7777;
    for c in clauses {
        let mut bits = 0;
        for p in c.perms.chars() {
            bits |= match p {
                'r' => 0o444 & c.who,
                'w' => 0o222 & c.who,
                'x' => 0o111 & c.who,
                'X' if is_dir || mode & 0o111 != 0 => 0o111 & c.who,
                's' => {
                    (if c.who & 0o700 != 0 { 0o4000 } else { 0 })
                        | (if c.who & 0o070 != 0 { 0o2000 } else { 0 })
                }
                't' => 0o1000,
                _ => 0,
            };
        }
        match c.op {
            '+' => mode |= bits,
            '-' => mode &= !bits,
            _ => mode = (mode & !c.who) | bits,
        }
    }
    mode
}

/// A source tree with `--exclude` patterns applied, matched against the path relative to
/// the tree's root and relative to each source (BuildKit matches from the copied source).
pub struct ExcludeTree<'a> {
    pub inner: &'a dyn SourceTree,
    pub ignore: DockerIgnore,
    pub sources: Vec<String>,
}

impl ExcludeTree<'_> {
    pub fn new<'a>(
        inner: &'a dyn SourceTree,
        patterns: &[String],
        sources: &[String],
    ) -> Result<ExcludeTree<'a>, StepError> {
        let ignore = DockerIgnore::new(patterns).map_err(StepError::Exclude)?;
        Ok(ExcludeTree {
            inner,
            ignore,
            sources: sources
                .iter()
                .filter_map(|s| copy::clean_rel(s))
                .filter(|s| !s.is_empty())
                .collect(),
        })
    }

    fn is_excluded(&self, rel: &str) -> bool {
        if rel.is_empty() {
            return false;
        }
        if self.ignore.is_excluded(rel) {
            return true;
        }
        self.sources.iter().any(|s| {
            rel.strip_prefix(s.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| !r.is_empty() && self.ignore.is_excluded(r))
        })
    }
}

impl SourceTree for ExcludeTree<'_> {
    fn stat(&self, rel: &str) -> std::io::Result<Option<(PathBuf, fs::Metadata)>> {
        if self.is_excluded(rel) {
            return Ok(None);
        }
        self.inner.stat(rel)
    }

    fn stat_follow(&self, rel: &str) -> std::io::Result<Option<(PathBuf, fs::Metadata)>> {
        if self.is_excluded(rel) {
            return Ok(None);
        }
        self.inner.stat_follow(rel)
    }

    fn list(&self, rel: &str) -> std::io::Result<Vec<String>> {
        Ok(self
            .inner
            .list(rel)?
            .into_iter()
            .filter(|n| {
                let child = if rel.is_empty() {
                    n.clone()
                } else {
                    format!("{rel}/{n}")
                };
                !self.is_excluded(&child)
            })
            .collect())
    }
}

/// `COPY --parents`: each matched source keeps its path (from the context root, or from a
/// `/./` pivot in the source) under the destination directory.
pub fn plan_parents(
    tree: &dyn SourceTree,
    srcs: &[String],
    dest_abs: &str,
    opts: &CopyOptions,
) -> Result<CopyPlan, StepError> {
    let mut out = CopyPlan::default();
    let dest = dest_abs.trim_end_matches('/');
    for src in srcs {
        let (pivot, full) = match src.split_once("/./") {
            Some((p, r)) => (copy::clean_rel(p).unwrap_or_default(), format!("{p}/{r}")),
            None => (String::new(), src.clone()),
        };
        let matched = copy::expand_source(tree, &full)?;
        if matched.is_empty() {
            return Err(copy::CopyError::SourceNotFound(src.clone()).into());
        }
        for m in matched {
            let kept = if pivot.is_empty() {
                m.as_str()
            } else {
                m.strip_prefix(pivot.as_str())
                    .map_or(m.as_str(), |r| r.trim_start_matches('/'))
            };
            let parent = Path::new(kept)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let d = if parent.is_empty() {
                format!("{dest}/")
            } else {
                format!("{dest}/{parent}/")
            };
            let p = copy::plan(tree, std::slice::from_ref(&m), &d, true, opts)?;
            out.items.extend(p.items);
        }
    }
    Ok(out)
}

/// Where a single new file goes: into `dest` when it is a directory, else `dest` itself.
fn file_dest(dest_abs: &str, dest_is_dir: bool, name: &str) -> String {
    if dest_abs.ends_with('/') || dest_is_dir {
        copy::clean_abs(&format!("{}/{name}", dest_abs.trim_end_matches('/')))
    } else {
        copy::clean_abs(dest_abs)
    }
}

/// Add a file item backed by `real` to the plan.
#[allow(clippy::too_many_arguments)]
pub fn add_file(
    plan: &mut CopyPlan,
    real: PathBuf,
    name: &str,
    dest_abs: &str,
    dest_is_dir: bool,
    mode: u32,
    opts: &CopyOptions,
    mtime: i64,
) -> Result<(), StepError> {
    let size = fs::metadata(&real)
        .map_err(StepError::io("reading", &real))?
        .len();
    let dest = file_dest(dest_abs, dest_is_dir, name);
    let (uid, gid) = opts.chown.unwrap_or((0, 0));
    plan.items.insert(
        dest.clone(),
        CopyItem {
            dest,
            real: Some(real),
            kind: ItemKind::File { size },
            mode: opts.chmod.unwrap_or(mode),
            uid,
            gid,
            mtime: opts.epoch.map_or(mtime, |e| mtime.min(e)),
        },
    );
    Ok(())
}

/// Write each heredoc body (expanded per its delimiter) to `scratch` and add it to the plan
/// as a 0644 file named after its delimiter.
#[allow(clippy::too_many_arguments)]
pub fn add_heredocs(
    plan: &mut CopyPlan,
    docs: &[Heredoc],
    env: &[(String, String)],
    scratch: &Path,
    dest_abs: &str,
    dest_is_dir: bool,
    opts: &CopyOptions,
    mtime: i64,
) -> Result<(), StepError> {
    fs::create_dir_all(scratch).map_err(StepError::io("creating", scratch))?;
    for (i, doc) in docs.iter().enumerate() {
        let body = super::heredocs::copy_body(doc, env)?;
        let real = scratch.join(format!("heredoc-{i}"));
        fs::write(&real, body).map_err(StepError::io("writing", &real))?;
        add_file(
            plan,
            real,
            &doc.name,
            dest_abs,
            dest_is_dir,
            0o644,
            opts,
            mtime,
        )?;
    }
    Ok(())
}

/// A scratch directory removed on drop (heredoc bodies of one step).
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_forms() {
        let m = |s: &str, mode: u32, dir: bool| apply_chmod(&parse_chmod(s).expect(s), mode, dir);
        assert_eq!(m("0755", 0o644, false), 0o755);
        assert_eq!(m("u+x", 0o644, false), 0o744);
        assert_eq!(m("+x", 0o644, false), 0o755);
        assert_eq!(m("go-w", 0o666, false), 0o644);
        assert_eq!(m("a=r", 0o755, false), 0o444);
        assert_eq!(m("u=rwx,g=rx,o=", 0o600, false), 0o750);
        assert_eq!(m("a+X", 0o644, false), 0o644);
        assert_eq!(m("a+X", 0o644, true), 0o755);
        assert_eq!(m("u+s", 0o755, false), 0o4755);
        for bad in ["", "9", "u+q", "z+x", "u"] {
            assert!(parse_chmod(bad).is_err(), "{bad}");
        }
    }
}
