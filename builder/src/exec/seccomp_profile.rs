//! docker's default seccomp profile as data: the text format of `seccomp_default.txt`
//! (its header says where the profile comes from and how it was resolved), parsed into
//! rules and compiled to BPF by `seccompiler`.
//!
//! Compiling the ~400 rules takes tens of milliseconds, so it is not done at run time:
//! `builder/build.rs` includes this file, compiles the profile for the target architecture
//! once, and writes the programs into the build (see `seccomp.rs`). The tests compile it
//! again and compare.
//!
//! The profile has two actions besides the default EPERM: `allow`, and `errno(38)` for
//! `clone3` (so that libc falls back to `clone`, whose flags the profile can inspect). A
//! seccompiler filter has one action on match and one on mismatch, so the profile becomes
//! one filter per action: the allow-list (mismatch EPERM), then one filter per errno
//! (mismatch allow). The kernel runs every installed filter and keeps the strictest answer;
//! between two errnos the filter installed last wins, so the errno filters go last.
//!
//! This file stands alone (no `crate::` paths, nothing outside std, seccompiler, serde_json
//! and thiserror) because the build script compiles it too.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, TargetArch};

/// errno of a syscall the profile does not list (docker's `defaultErrnoRet`).
const DEFAULT_ERRNO: u32 = 1; // EPERM on every Linux architecture

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile line {line}: {reason}")]
    Parse { line: usize, reason: String },
    #[error("seccomp: compiling the profile: {reason}")]
    Compile { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Errno(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Gt,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// `argN OP value`, compared as 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    pub arg: u8,
    pub op: Op,
    pub value: u64,
}

/// One line of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub syscall: String,
    pub action: Action,
    pub condition: Option<Condition>,
    /// docker's arch names; empty means every architecture.
    pub arches: Vec<String>,
}

/// Parse the profile format described in `seccomp_default.txt`.
pub fn parse(text: &str) -> Result<Vec<Rule>, ProfileError> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| ProfileError::Parse {
            line: i + 1,
            reason,
        };
        let mut words: Vec<&str> = line.split_whitespace().collect();
        let arches = match words.last().and_then(|w| w.strip_prefix('@')) {
            Some(list) => {
                let arches = list.split(',').map(str::to_string).collect();
                words.pop();
                arches
            }
            None => Vec::new(),
        };
        let (syscall, action, condition) = match words.as_slice() {
            [name, action, cond @ ..] => (*name, parse_action(action), cond),
            _ => return Err(err(format!("want SYSCALL ACTION, got {line:?}"))),
        };
        let action = action.ok_or_else(|| err(format!("unknown action in {line:?}")))?;
        let condition = match condition {
            [] => None,
            [arg, "==", v] | [arg, "<", v] | [arg, ">", v] => {
                let op = match condition[1] {
                    "==" => Op::Eq,
                    "<" => Op::Lt,
                    _ => Op::Gt,
                };
                Some(
                    parse_condition(arg, op, v)
                        .ok_or_else(|| err(format!("bad condition in {line:?}")))?,
                )
            }
            [arg, "&", mask, "==", v] => {
                let mask =
                    parse_number(mask).ok_or_else(|| err(format!("bad mask in {line:?}")))?;
                Some(
                    parse_condition(arg, Op::MaskedEq(mask), v)
                        .ok_or_else(|| err(format!("bad condition in {line:?}")))?,
                )
            }
            _ => return Err(err(format!("bad condition in {line:?}"))),
        };
        rules.push(Rule {
            syscall: syscall.to_string(),
            action,
            condition,
            arches,
        });
    }
    Ok(rules)
}

fn parse_action(word: &str) -> Option<Action> {
    match word {
        "allow" => Some(Action::Allow),
        _ => word
            .strip_prefix("errno(")?
            .strip_suffix(')')?
            .parse()
            .ok()
            .map(Action::Errno),
    }
}

fn parse_condition(arg: &str, op: Op, value: &str) -> Option<Condition> {
    let arg: u8 = arg.strip_prefix("arg")?.parse().ok().filter(|a| *a < 6)?;
    Some(Condition {
        arg,
        op,
        value: parse_number(value)?,
    })
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// docker's name for a Rust `target_arch`, where seccompiler has a syscall table for it.
pub fn docker_arch(rust_arch: &str) -> Option<&'static str> {
    match rust_arch {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        "riscv64" => Some("riscv64"),
        _ => None,
    }
}

/// Compile `rules` for `target` (`arch` in docker's naming) into BPF programs, install order.
pub fn compile(
    rules: &[Rule],
    target: TargetArch,
    arch: &str,
) -> Result<Vec<BpfProgram>, ProfileError> {
    let here: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.arches.is_empty() || r.arches.iter().any(|a| a == arch))
        .filter(|r| is_known(&r.syscall, target))
        .collect();
    // Action → syscall → its conditions (`None`: unconditional, which wins over the rest).
    let mut by_action: BTreeMap<Action, BTreeMap<&str, Option<Vec<Condition>>>> = BTreeMap::new();
    for r in &here {
        let entry = by_action
            .entry(r.action)
            .or_default()
            .entry(&r.syscall)
            .or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), r.condition) {
            (Some(conds), Some(c)) => conds.push(c),
            _ => *entry = None,
        }
    }
    let mut filters = serde_json::Map::new();
    let mut order = Vec::new();
    for (action, syscalls) in &by_action {
        let (name, mismatch, on_match) = match action {
            Action::Allow => (
                "0-allow".to_string(),
                serde_json::json!({ "errno": DEFAULT_ERRNO }),
                serde_json::json!("allow"),
            ),
            Action::Errno(n) => (
                format!("1-errno-{n}"),
                serde_json::json!("allow"),
                serde_json::json!({ "errno": n }),
            ),
        };
        let mut entries = Vec::new();
        for (syscall, conds) in syscalls {
            match conds {
                None => entries.push(serde_json::json!({ "syscall": syscall })),
                Some(conds) => entries.extend(conds.iter().map(
                    |c| serde_json::json!({ "syscall": syscall, "args": [condition_json(c)] }),
                )),
            }
        }
        filters.insert(
            name.clone(),
            serde_json::json!({
                "mismatch_action": mismatch,
                "match_action": on_match,
                "filter": entries,
            }),
        );
        order.push(name);
    }
    let json = serde_json::Value::Object(filters).to_string();
    let mut compiled = seccompiler::compile_from_json(json.as_bytes(), target).map_err(|e| {
        ProfileError::Compile {
            reason: e.to_string(),
        }
    })?;
    // BTreeMap order put the allow-list first and the errno filters after it.
    order
        .iter()
        .map(|name| {
            compiled.remove(name).ok_or_else(|| ProfileError::Compile {
                reason: format!("filter {name} missing from seccompiler's output"),
            })
        })
        .collect()
}

fn condition_json(c: &Condition) -> serde_json::Value {
    let op = match c.op {
        Op::Eq => serde_json::json!("eq"),
        Op::Lt => serde_json::json!("lt"),
        Op::Gt => serde_json::json!("gt"),
        Op::MaskedEq(mask) => serde_json::json!({ "masked_eq": mask }),
    };
    serde_json::json!({ "index": c.arg, "type": "dword", "op": op, "val": c.value })
}

/// Whether seccompiler knows `syscall` on `target`: the profile lists every architecture's
/// names (`_llseek`, `chown32`, …) and, like libseccomp, we skip those this one lacks.
/// seccompiler's table is private, so ask it through a one-rule filter.
fn is_known(syscall: &str, target: TargetArch) -> bool {
    let probe = serde_json::json!({
        "probe": { "mismatch_action": "allow", "match_action": "trap", "filter": [{ "syscall": syscall }] }
    })
    .to_string();
    seccompiler::compile_from_json(probe.as_bytes(), target).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_lines_parse() {
        let cases = [
            ("read allow", Action::Allow, None, vec![]),
            ("clone3 errno(38)", Action::Errno(38), None, vec![]),
            (
                "socket allow arg0 < 38",
                Action::Allow,
                Some(Condition {
                    arg: 0,
                    op: Op::Lt,
                    value: 38,
                }),
                vec![],
            ),
            (
                "clone allow arg0 & 0x7e020000 == 0",
                Action::Allow,
                Some(Condition {
                    arg: 0,
                    op: Op::MaskedEq(0x7e02_0000),
                    value: 0,
                }),
                vec![],
            ),
            (
                "arch_prctl allow @amd64,x32",
                Action::Allow,
                None,
                vec!["amd64", "x32"],
            ),
        ];
        for (line, action, condition, arches) in cases {
            let rules = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(rules.len(), 1, "{line}");
            assert_eq!(rules[0].action, action, "{line}");
            assert_eq!(rules[0].condition, condition, "{line}");
            assert_eq!(rules[0].arches, arches, "{line}");
        }
        for bad in [
            "read",
            "read permit",
            "socket allow arg9 < 1",
            "socket allow arg0 <= 1",
        ] {
            assert!(
                matches!(parse(bad), Err(ProfileError::Parse { line: 1, .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn default_profile_keeps_dockers_choices() {
        let rules = parse(include_str!("seccomp_default.txt")).expect("the shipped profile parses");
        let find =
            |name: &str| -> Vec<&Rule> { rules.iter().filter(|r| r.syscall == name).collect() };
        for allowed in ["read", "execve", "chroot", "ptrace", "setresuid"] {
            assert_eq!(find(allowed).len(), 1, "{allowed} is allowed");
        }
        for denied in [
            "unshare",
            "mount",
            "setns",
            "bpf",
            "open_by_handle_at",
            "init_module",
        ] {
            assert!(find(denied).is_empty(), "{denied} must not be allowed");
        }
        assert_eq!(find("personality").len(), 5);
        assert!(
            find("clone").iter().all(|r| r.condition.is_some()),
            "clone only without namespace flags"
        );
        assert_eq!(find("clone3")[0].action, Action::Errno(38));
    }
}
