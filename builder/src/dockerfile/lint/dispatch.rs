//! Per-instruction evaluation: expand what BuildKit expands, track ENV/ARG/SHELL/WORKDIR,
//! and fire the instruction-level rules.

use super::super::super::error::{Located, Span};
use super::super::super::expand::Lexer;
use super::super::super::instructions::*;
use super::super::rules;
use super::super::support;
use super::{parse_mount, with_hints, Eval, StageState};

/// BuildKit never reports these as undefined (they are not set as environment).
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

impl Eval<'_> {
    pub(super) fn instruction(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
    ) -> Result<(), Located> {
        match &inst.command {
            Command::Env(kvs) => self.env(st, inst, kvs),
            Command::Label(kvs) => self.label(st, inst, kvs),
            Command::Arg(defs) => self.arg(st, inst, defs),
            Command::Copy(c) => self.copy_like(
                st,
                inst,
                &c.srcs,
                &c.dest,
                &[&c.chown, &c.chmod],
                &c.heredocs,
            ),
            Command::Add(a) => self.copy_like(
                st,
                inst,
                &a.srcs,
                &a.dest,
                &[&a.chown, &a.chmod, &a.checksum],
                &a.heredocs,
            ),
            Command::Workdir(p) => {
                let path = self.word(st, inst, p)?;
                if !st.workdir_set && !path.starts_with('/') {
                    self.warn_at(inst, &rules::WORKDIR_RELATIVE_PATH, &[&path]);
                }
                st.workdir_set = true;
                Ok(())
            }
            Command::User(u) => self.word(st, inst, u).map(drop),
            Command::Volume(vs) => vs.iter().try_for_each(|v| self.word(st, inst, v).map(drop)),
            Command::StopSignal(s) => {
                let sig = self.word(st, inst, s)?;
                support::check_signal(&sig).map_err(|e| Located::new(e.to_string()))
            }
            Command::Expose(ports) => self.expose(st, inst, ports),
            Command::Run(r) => self.run(st, inst, r),
            Command::Cmd(c) => {
                self.used_once(inst, &mut st.cmd);
                self.json_args(st, inst, c);
                Ok(())
            }
            Command::Entrypoint(c) => {
                self.used_once(inst, &mut st.entrypoint);
                self.json_args(st, inst, c);
                Ok(())
            }
            Command::Healthcheck(_) => {
                self.used_once(inst, &mut st.healthcheck);
                Ok(())
            }
            Command::Shell(_) => {
                st.has_shell = true;
                Ok(())
            }
            Command::Maintainer(_) | Command::Onbuild(_) => Ok(()),
        }
    }

    /// Expand one word with the stage's environment, reporting undefined variables.
    fn word(&mut self, st: &StageState, inst: &Instruction, word: &str) -> Result<String, Located> {
        let e = self
            .lexer
            .process_word(word, &st.env)
            .map_err(|e| Located::new(e.to_string()))?;
        self.report_unmatched(st, inst, e.unmatched.iter());
        Ok(e.result)
    }

    fn report_unmatched<'s>(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        names: impl Iterator<Item = &'s String>,
    ) {
        let undefined: Vec<&String> = names
            .filter(|n| !st.declared_args.contains(*n) && !NON_ENV_ARGS.contains(&n.as_str()))
            .collect();
        if undefined.is_empty() {
            return;
        }
        let keys = st.env.keys();
        for (name, hint) in with_hints(undefined.into_iter(), &keys) {
            self.warn_at(inst, &rules::UNDEFINED_VAR, &[&name, &hint]);
        }
    }

    /// ENV expands every pair against the environment before the instruction, then sets.
    fn env(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        kvs: &[KeyValue],
    ) -> Result<(), Located> {
        let mut set = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let (key, value) = self.key_value(st, inst, kv)?;
            if support::looks_secret(&key) {
                self.warn_at(inst, &rules::SECRETS_USED_IN_ARG_OR_ENV, &["ENV", &key]);
            }
            set.push((key, value));
        }
        for (k, v) in set {
            st.env.set(&k, v);
        }
        Ok(())
    }

    fn label(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        kvs: &[KeyValue],
    ) -> Result<(), Located> {
        for kv in kvs {
            self.key_value(st, inst, kv)?;
        }
        Ok(())
    }

    /// One ENV or LABEL pair, expanded, with a warning for the legacy `key value` form.
    fn key_value(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        kv: &KeyValue,
    ) -> Result<(String, String), Located> {
        let key = self.word(st, inst, &kv.key)?;
        let value = self.word(st, inst, &kv.value)?;
        if kv.legacy {
            self.warn_at(inst, &rules::LEGACY_KEY_VALUE_FORMAT, &[&inst.keyword]);
        }
        Ok((key, value))
    }

    /// ARG: a build arg wins, then the default (expanded), then a global ARG of that name.
    fn arg(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
        defs: &[ArgDef],
    ) -> Result<(), Located> {
        for def in defs {
            if support::looks_secret(&def.name) {
                self.warn_at(
                    inst,
                    &rules::SECRETS_USED_IN_ARG_OR_ENV,
                    &["ARG", &def.name],
                );
            }
            let given = self.build_arg(&def.name).map(str::to_string);
            let value = match (given, &def.default) {
                (Some(v), _) => Some(v),
                (None, Some(d)) => Some(self.word(st, inst, d)?),
                (None, None) => self.global.get(&def.name).map(str::to_string),
            };
            if let Some(v) = value {
                st.env.set(&def.name, v);
            }
            st.declared_args.insert(def.name.clone());
        }
        Ok(())
    }

    fn copy_like(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        srcs: &[String],
        dest: &str,
        opts: &[&Option<String>],
        heredocs: &[super::super::super::heredoc::Heredoc],
    ) -> Result<(), Located> {
        for word in opts
            .iter()
            .copied()
            .flatten()
            .map(String::as_str)
            .chain(srcs.iter().map(String::as_str))
        {
            self.word(st, inst, word)?;
        }
        self.word(st, inst, dest)?;
        let mut raw = Lexer::new('\\');
        raw.skip_process_quotes = true;
        for h in heredocs.iter().filter(|h| h.expand) {
            let e = raw
                .process_word(&h.body(), &st.env)
                .map_err(|e| Located::new(e.to_string()))?;
            self.report_unmatched(st, inst, e.unmatched.iter());
        }
        Ok(())
    }

    /// EXPOSE splits each item into words and checks every port spec.
    fn expose(
        &mut self,
        st: &StageState,
        inst: &Instruction,
        ports: &[String],
    ) -> Result<(), Located> {
        for item in ports {
            let words = self
                .lexer
                .process_words(item, &st.env)
                .map_err(|e| Located::new(e.to_string()))?;
            for raw in words {
                let spec = support::parse_port(&raw).map_err(|e| Located::new(e.to_string()))?;
                if !spec.proto_is_lower {
                    self.warn_at(inst, &rules::EXPOSE_PROTO_CASING, &[&raw]);
                }
                if spec.has_host_part {
                    self.warn_at(inst, &rules::EXPOSE_INVALID_FORMAT, &[&raw]);
                }
            }
        }
        Ok(())
    }

    /// RUN: only `--mount` values are expanded (the command is the shell's business).
    fn run(&mut self, st: &StageState, inst: &Instruction, r: &Run) -> Result<(), Located> {
        for spec in &r.mounts {
            let mut unmatched = Vec::new();
            let lexer = self.lexer;
            let env = &st.env;
            let result = parse_mount(spec, &mut |v: &str| {
                let e = lexer.process_word(v, env)?;
                unmatched.extend(e.unmatched);
                Ok(e.result)
            });
            self.report_unmatched(st, inst, unmatched.iter());
            result.map_err(|e| Located::new(e.to_string()))?;
        }
        Ok(())
    }

    /// Records `inst` in its stage's `slot` (CMD, ENTRYPOINT, HEALTHCHECK). A second one
    /// fires MultipleInstructionsDisallowed at the earlier, ignored instruction.
    fn used_once(&mut self, inst: &Instruction, slot: &mut Option<Span>) {
        if let Some(prev) = slot.replace(inst.span) {
            self.warn(
                &inst.comments,
                &rules::MULTIPLE_INSTRUCTIONS_DISALLOWED,
                prev,
                &[&inst.keyword],
            );
        }
    }

    fn json_args(&mut self, st: &StageState, inst: &Instruction, c: &ShellOrExec) {
        if c.is_shell() && !st.has_shell {
            self.warn_at(inst, &rules::JSON_ARGS_RECOMMENDED, &[&inst.keyword]);
        }
    }
}
