//! One corpus case: `testdata/buildkit/cases/NAME/` holds a Dockerfile, its context files and
//! an optional `CASE` file of `key: value` lines (never part of the build context):
//!
//! - `args: FLAG...`: extra `build` flags (split on whitespace), e.g. `--target a`
//! - `chmod: MODE PATH`: set a context file's mode (git keeps only the exec bit)
//! - `mkdir: PATH`: an empty context directory (git keeps none)
//! - `hardlink: NEW OLD`: NEW becomes a hardlink of OLD in the context
//! - `oracle: WHY`: BuildKit 20.10 cannot build this case (WHY says what it lacks); its
//!   answer is pinned by hand from the current Dockerfile reference and the recorder leaves
//!   it alone; it holds only the fields the reference decides (e.g. no history text) and
//!   only those compare
//! - `differs: WHY`: strata is known to differ from the answer; the test expects a
//!   difference and fails once there is none, so the line goes
//! - `note: TEXT`: what the case checks
//!
//! [`Case::materialise`] writes the context the same way for the recorder and the test: every
//! file 0644 (0755 when git has the exec bit), every directory 0755, then the `CASE` lines.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub args: Vec<String>,
    pub oracle: Option<String>,
    pub differs: Option<String>,
    chmods: Vec<(u32, String)>,
    mkdirs: Vec<String>,
    hardlinks: Vec<(String, String)>,
}

/// The corpus root, testdata/buildkit.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/buildkit")
}

/// Every case, sorted by name.
pub fn all() -> Vec<Case> {
    let cases_dir = corpus_dir().join("cases");
    let mut names: Vec<String> = fs::read_dir(&cases_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", cases_dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| Case::load(&cases_dir.join(n)))
        .collect()
}

impl Case {
    fn load(dir: &Path) -> Case {
        let name = dir
            .file_name()
            .expect("case name")
            .to_string_lossy()
            .into_owned();
        let mut case = Case {
            name,
            dir: dir.to_path_buf(),
            args: Vec::new(),
            oracle: None,
            differs: None,
            chmods: Vec::new(),
            mkdirs: Vec::new(),
            hardlinks: Vec::new(),
        };
        let meta = dir.join("CASE");
        let text = match fs::read_to_string(&meta) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return case,
            Err(e) => panic!("{}: {e}", meta.display()),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || panic!("{}:{}: not `key: value`: {line}", meta.display(), n + 1);
            let Some((key, value)) = line.split_once(':') else {
                bad()
            };
            let value = value.trim();
            let words: Vec<&str> = value.split_whitespace().collect();
            match (key.trim(), words.as_slice()) {
                ("args", _) => case.args.extend(words.iter().map(|w| w.to_string())),
                ("chmod", [mode, path]) => case.chmods.push((
                    u32::from_str_radix(mode, 8).unwrap_or_else(|_| bad()),
                    path.to_string(),
                )),
                ("mkdir", [path]) => case.mkdirs.push(path.to_string()),
                ("hardlink", [new, old]) => case.hardlinks.push((new.to_string(), old.to_string())),
                ("oracle", _) => case.oracle = Some(value.to_string()),
                ("differs", _) => case.differs = Some(value.to_string()),
                ("note", _) => {}
                _ => bad(),
            }
        }
        case
    }

    /// The recorded (or pinned) answer's path.
    pub fn answer_path(&self) -> PathBuf {
        corpus_dir()
            .join("answers")
            .join(format!("{}.json", self.name))
    }

    /// Writes the build context into `out` (which must not exist).
    pub fn materialise(&self, out: &Path) {
        copy_tree(&self.dir, out, true);
        for dir in &self.mkdirs {
            fs::create_dir_all(out.join(dir)).expect("mkdir");
            fs::set_permissions(out.join(dir), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        for (new, old) in &self.hardlinks {
            fs::hard_link(out.join(old), out.join(new))
                .unwrap_or_else(|e| panic!("case {}: hardlink {new} {old}: {e}", self.name));
        }
        for (mode, path) in &self.chmods {
            fs::set_permissions(out.join(path), fs::Permissions::from_mode(*mode))
                .unwrap_or_else(|e| panic!("case {}: chmod {path}: {e}", self.name));
        }
    }
}

fn copy_tree(from: &Path, to: &Path, top: bool) {
    fs::create_dir(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).expect("chmod");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if top && name == "CASE" {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let meta = fs::symlink_metadata(&src).expect("lstat");
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).expect("readlink"), &dst)
                .expect("symlink");
        } else if meta.is_dir() {
            copy_tree(&src, &dst, false);
        } else {
            fs::copy(&src, &dst).expect("copy");
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }
}
