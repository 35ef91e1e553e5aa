//! Evaluate a Dockerfile the way BuildKit's `dockerfile2llb` does before it builds:
//! global ARGs, each stage's base, ENV/ARG state, expansion of every word BuildKit
//! expands. Rules fire where BuildKit fires them.
//!
//! What we cannot know without pulling: a base image's own ENV and SHELL. A stage based
//! on an image starts with only `PATH` (BuildKit adds a default PATH when the image has
//! none), so a variable that only the base image defines is reported by UndefinedVar.

use std::collections::{BTreeSet, HashMap};

use super::super::directives::CheckConfig;
use super::super::error::{suggest, Located, Span};
use super::super::expand::{EnvLookup, Expansion, Lexer};
use super::super::instructions::*;
use super::super::mount::parse_mount;
use super::rules::{self, Rule};
use super::support;
use super::{CheckOptions, Linter};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An ordered environment where setting a name replaces it. The index keeps `set` and
/// `get` constant-time, so a Dockerfile with many ENV lines is checked in linear time.
#[derive(Debug, Clone, Default)]
struct Env {
    pairs: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, k: &str, v: String) {
        match self.index.get(k) {
            Some(&i) => self.pairs[i].1 = v,
            None => {
                self.index.insert(k.to_string(), self.pairs.len());
                self.pairs.push((k.to_string(), v));
            }
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.index.get(k).map(|&i| self.pairs[i].1.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.pairs.iter().map(|(k, _)| k.as_str()).collect()
    }
}

impl EnvLookup for Env {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }
}

/// A stage's state while its instructions are dispatched.
#[derive(Debug, Clone, Default)]
struct StageState {
    env: Env,
    has_shell: bool,
    workdir_set: bool,
    /// ARG names declared in this stage: never "undefined".
    declared_args: BTreeSet<String>,
    cmd: Option<Span>,
    entrypoint: Option<Span>,
    healthcheck: Option<Span>,
}

struct Eval<'a> {
    df: &'a Dockerfile,
    opts: &'a CheckOptions,
    lexer: Lexer,
    lint: &'a mut Linter,
    global: Env,
    /// Global keys FROM may use: predefined platform args and declared meta ARGs.
    from_keys: BTreeSet<String>,
    finished: Vec<StageState>,
}

pub(super) fn run(df: &Dockerfile, opts: &CheckOptions, lint: &mut Linter) -> Result<(), Located> {
    let target = match &opts.target {
        Some(t) => df
            .stage_index(t)
            .ok_or_else(|| Located::new(format!("target stage {t:?} could not be found")))?,
        None => df.stages.len() - 1,
    };
    let mut ev = Eval {
        df,
        opts,
        lexer: Lexer::new(df.escape),
        lint,
        global: Env::default(),
        from_keys: BTreeSet::new(),
        finished: Vec::new(),
    };
    ev.syntax_rules();
    ev.global = ev.default_args(target);
    ev.invalid_default_args()?;
    ev.global = ev.meta_args(true)?;
    for (i, stage) in df.stages.iter().enumerate() {
        let state = ev.stage(i, stage)?;
        ev.finished.push(state);
    }
    Ok(())
}

impl Eval<'_> {
    fn warn(&mut self, comments: &[String], rule: &'static Rule, span: Span, args: &[&str]) {
        let cfg: CheckConfig = self.lint.config_for(comments);
        self.lint.warn(&cfg, rule, span, args);
    }

    /// The value `--build-arg NAME=…` gives `name` (the last one given wins).
    fn build_arg(&self, name: &str) -> Option<&str> {
        self.opts
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `warn` at an instruction, under the `# check=` comments above it.
    fn warn_at(&mut self, inst: &Instruction, rule: &'static Rule, args: &[&str]) {
        self.warn(&inst.comments, rule, inst.span, args);
    }

    /// Rules that need only the parse: casing, stage names, MAINTAINER, empty continuations.
    fn syntax_rules(&mut self) {
        let df = self.df;
        for span in &df.empty_continuations {
            self.warn(&[], &rules::NO_EMPTY_CONTINUATION, *span, &[]);
        }
        let (mut lower, mut upper) = (0, 0);
        let keywords = df.stages.iter().flat_map(|s| {
            std::iter::once((&s.keyword, s.span))
                .chain(s.instructions.iter().map(|i| (&i.keyword, i.span)))
        });
        for (kw, _) in keywords.clone() {
            if *kw == kw.to_lowercase() {
                lower += 1;
            } else if *kw == kw.to_uppercase() {
                upper += 1;
            }
        }
        let majority_lower = lower > upper;
        let mut seen = BTreeSet::new();
        for inst in &df.meta_args {
            self.definition_description(inst);
        }
        for stage in &df.stages {
            self.stage_name_rules(stage, &mut seen);
            if let Some(name) = &stage.name {
                self.description_for("FROM", &[name.as_str()], &stage.comments, stage.span);
            }
            for inst in &stage.instructions {
                if matches!(inst.command, Command::Maintainer(_)) {
                    self.warn_at(inst, &rules::MAINTAINER_DEPRECATED, &[]);
                }
                self.definition_description(inst);
            }
        }
        for (kw, span) in keywords {
            let want = if majority_lower && kw.to_lowercase() != *kw {
                "lowercase"
            } else if !majority_lower && kw.to_uppercase() != *kw {
                "uppercase"
            } else {
                continue;
            };
            self.warn(
                &[],
                &rules::CONSISTENT_INSTRUCTION_CASING,
                span,
                &[kw, want],
            );
        }
    }

    fn definition_description(&mut self, inst: &Instruction) {
        if let Command::Arg(defs) = &inst.command {
            let keys: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            self.description_for("ARG", &keys, &inst.comments, inst.span);
        }
    }

    /// InvalidDefinitionDescription (experimental): a comment right above an ARG or a named
    /// FROM should start with the name it describes.
    fn description_for(
        &mut self,
        instruction: &str,
        keys: &[&str],
        comments: &[String],
        span: Span,
    ) {
        let Some(last) = comments.last() else { return };
        if keys.is_empty() || keys.contains(&last.split(' ').next().unwrap_or_default()) {
            return;
        }
        let example = if keys.len() > 1 { "<arg_key>" } else { keys[0] };
        self.warn(
            comments,
            &rules::INVALID_DEFINITION_DESCRIPTION,
            span,
            &[instruction, example],
        );
    }

    fn stage_name_rules(&mut self, stage: &Stage, seen: &mut BTreeSet<String>) {
        let c = &stage.comments;
        if let (Some(written), Some(as_kw)) = (&stage.name_as_written, &stage.as_keyword) {
            if *written != written.to_lowercase() {
                self.warn(c, &rules::STAGE_NAME_CASING, stage.span, &[written]);
            }
            let from_lower = stage.keyword == stage.keyword.to_lowercase();
            let from_upper = stage.keyword == stage.keyword.to_uppercase();
            if (from_lower && *as_kw != as_kw.to_lowercase())
                || (from_upper && *as_kw != as_kw.to_uppercase())
            {
                self.warn(
                    c,
                    &rules::FROM_AS_CASING,
                    stage.span,
                    &[&stage.keyword, as_kw],
                );
            }
        }
        if let Some(name) = &stage.name {
            if name == "context" || name == "scratch" {
                self.warn(c, &rules::RESERVED_STAGE_NAME, stage.span, &[name]);
            }
            if !seen.insert(name.clone()) {
                self.warn(c, &rules::DUPLICATE_STAGE_NAME, stage.span, &[name]);
            }
        }
    }

    /// BuildKit's predefined platform args (this host is both build and target platform).
    fn default_args(&mut self, target: usize) -> Env {
        let mut env = Env::default();
        for (k, v) in crate::image::platform_args(&crate::image::build_platform()) {
            env.set(&k, v);
        }
        let target_name = self.df.stages[target].name.clone().unwrap_or_default();
        env.set("TARGETSTAGE", target_name);
        for (k, v) in &self.opts.build_args {
            if env.get(k).is_some() {
                env.set(k, v.clone());
            }
        }
        self.from_keys = env.keys().into_iter().map(String::from).collect();
        env
    }

    /// Global ARGs before the first FROM, with build args when `with_build_args`.
    fn meta_args(&mut self, with_build_args: bool) -> Result<Env, Located> {
        let mut env = self.global.clone();
        for inst in &self.df.meta_args {
            let Command::Arg(defs) = &inst.command else {
                continue;
            };
            for def in defs {
                self.from_keys.insert(def.name.clone());
                let given = self.build_arg(&def.name).filter(|_| with_build_args);
                let value = match (given, &def.default) {
                    (Some(v), _) => Some(v.to_string()),
                    (None, Some(d)) => Some(
                        self.lexer
                            .process_word(d, &env)
                            .map_err(|e| Located::at(e.to_string(), inst.span))?
                            .result,
                    ),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    env.set(&def.name, v);
                }
            }
        }
        Ok(env)
    }

    /// InvalidDefaultArgInFrom: with only defaults, each base must be a valid reference.
    fn invalid_default_args(&mut self) -> Result<(), Located> {
        let Ok(defaults) = self.meta_args(false) else {
            return Ok(());
        };
        for stage in &self.df.stages {
            let Ok(e) = self.lexer.process_word(&stage.base, &defaults) else {
                return Ok(());
            };
            if !support::is_valid_reference(&e.result) {
                self.warn(
                    &stage.comments,
                    &rules::INVALID_DEFAULT_ARG_IN_FROM,
                    stage.span,
                    &[&stage.base],
                );
            }
        }
        Ok(())
    }

    fn undefined_args_in_from(&mut self, stage: &Stage, e: &Expansion) {
        let keys: Vec<&str> = self.from_keys.iter().map(String::as_str).collect();
        let undefined = e.unmatched.iter().filter(|n| !self.from_keys.contains(*n));
        for (name, hint) in with_hints(undefined, &keys) {
            self.warn(
                &stage.comments,
                &rules::UNDEFINED_ARG_IN_FROM,
                stage.span,
                &[&name, &hint],
            );
        }
    }

    /// FROM: expand the base and platform, and start from an earlier stage's state or
    /// from an image's (unknown) one.
    fn stage(&mut self, index: usize, stage: &Stage) -> Result<StageState, Located> {
        let at = |e: String| Located::at(e, stage.span);
        let base = self.lexer.process_word(&stage.base, &self.global);
        if let Ok(e) = &base {
            self.undefined_args_in_from(stage, e);
        }
        let base = base.map_err(|e| at(e.to_string()))?.result;
        if base.is_empty() {
            return Err(at(format!(
                "base name ({}) should not be blank",
                stage.base
            )));
        }
        if let Some(p) = &stage.platform {
            self.platform(stage, p)?;
        }
        let parent = self.df.stages[..index]
            .iter()
            .rposition(|s| s.name.as_deref() == Some(&base.to_ascii_lowercase()));
        let mut st = match parent {
            Some(p) => StageState {
                declared_args: BTreeSet::new(),
                cmd: None,
                entrypoint: None,
                healthcheck: None,
                ..self.finished[p].clone()
            },
            None => StageState::default(),
        };
        if st.env.get("PATH").is_none() {
            st.env.set("PATH", DEFAULT_PATH.into());
        }
        for inst in &stage.instructions {
            self.instruction(&mut st, inst)
                .map_err(|e| e.or_at(inst.span))?;
        }
        Ok(st)
    }

    fn platform(&mut self, stage: &Stage, platform: &str) -> Result<(), Located> {
        let e = self.lexer.process_word(platform, &self.global);
        if let Ok(e) = &e {
            self.undefined_args_in_from(stage, e);
        }
        let e = e.map_err(|err| {
            Located::at(
                format!("failed to process arguments for platform {platform}: {err}"),
                stage.span,
            )
        })?;
        let c = &stage.comments;
        if e.matched.len() == 1
            && e.unmatched.is_empty()
            && e.matched.contains("TARGETPLATFORM")
            && self.global.get("TARGETPLATFORM") == Some(e.result.as_str())
        {
            self.warn(
                c,
                &rules::REDUNDANT_TARGET_PLATFORM,
                stage.span,
                &[platform],
            );
        }
        if e.matched.is_empty() && e.unmatched.is_empty() {
            if let Some((os, arch)) = support::parse_platform(&e.result) {
                let name = stage.name.clone().unwrap_or_default();
                if !name.contains(&os) && !name.contains(&arch) {
                    self.warn(
                        c,
                        &rules::FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                        stage.span,
                        &[&e.result],
                    );
                }
            }
        }
        if e.result.is_empty() {
            return Err(Located::at(
                format!("empty platform value from expression {platform}"),
                stage.span,
            ));
        }
        if support::parse_platform(&e.result).is_none() {
            let msg = format!(
                "failed to parse platform {platform}: {:?}: unknown operating system or architecture: invalid argument",
                e.result
            );
            return Err(Located::at(msg, stage.span));
        }
        Ok(())
    }
}

/// Each undefined name with its "did you mean" hint: the closest of `keys`, or "" if none
/// is close (UndefinedVar, UndefinedArgInFrom). Owned, so the caller can `warn` while
/// `keys` still borrows its state.
fn with_hints<'s>(
    undefined: impl Iterator<Item = &'s String>,
    keys: &[&str],
) -> Vec<(String, String)> {
    undefined
        .map(|n| (n.clone(), suggest(n, keys, true).unwrap_or_default()))
        .collect()
}

#[path = "dispatch.rs"]
mod dispatch;
