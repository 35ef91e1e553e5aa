//! Typed Dockerfile instructions: what the planner builds from.
//!
//! Values are kept as written (quotes included) except where BuildKit itself unquotes at
//! parse time (JSON arrays, flag values). Expansion with `expand` happens in the planner,
//! for the instructions BuildKit expands: ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL,
//! USER, VOLUME, WORKDIR, ARG defaults and RUN `--mount` values.

use serde::Serialize;

use super::directives::Directives;
use super::error::Span;
use super::heredoc::Heredoc;

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub file_name: String,
    pub directives: Directives,
    /// `\` unless `# escape=` changed it.
    pub escape: char,
    /// ARG instructions before the first FROM (each an `Command::Arg`).
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    /// Empty lines found inside continuations (BuildKit warns: NoEmptyContinuation).
    pub empty_continuations: Vec<Span>,
}

impl Dockerfile {
    /// The index of the stage named `name` (case-insensitive, as stage names are lowered).
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let name = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(name.as_str()))
    }
}

/// One `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// The image (or earlier stage) as written, before ARG expansion.
    pub base: String,
    /// The lower-cased `AS` name.
    pub name: Option<String>,
    /// The `AS` name as written (StageNameCasing compares the two).
    pub name_as_written: Option<String>,
    /// `--platform` as written.
    pub platform: Option<String>,
    /// `FROM` with its original casing.
    pub keyword: String,
    /// `AS` with its original casing.
    pub as_keyword: Option<String>,
    pub span: Span,
    pub original: String,
    pub comments: Vec<String>,
    pub instructions: Vec<Instruction>,
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    pub command: Command,
    /// The instruction name with its original casing.
    pub keyword: String,
    pub span: Span,
    /// The logical line (continuations joined, heredoc bodies excluded).
    pub original: String,
    pub comments: Vec<String>,
}

/// Shell form (run with the stage's SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

impl ShellOrExec {
    pub fn is_shell(&self) -> bool {
        matches!(self, ShellOrExec::Shell(_))
    }
}

/// `KEY=value` of ENV and LABEL. `legacy` marks the `KEY value` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub legacy: bool,
}

/// One name of an ARG, with its default if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub cmd: ShellOrExec,
    pub heredocs: Vec<Heredoc>,
    /// `--mount` specs as written; `mount::parse_mount` types them once expanded.
    pub mounts: Vec<String>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Source paths (heredoc sources are in `heredocs`).
    pub srcs: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// Inline sources: `COPY <<EOF /dst` creates a file named after the delimiter.
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub srcs: Vec<String>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// HEALTHCHECK options; durations are nanoseconds (0 = not set), like the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckOptions {
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    None,
    /// `test` is the image-config form: `["CMD", ...]` or `["CMD-SHELL", "cmd"]`.
    Cmd {
        test: Vec<String>,
        options: HealthcheckOptions,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger as stored in the image config (`RUN echo hi`).
    pub expression: String,
    /// The trigger typed, or None when it does not parse: BuildKit only checks triggers
    /// when a child image builds, so a bad one is accepted here too.
    pub trigger: Option<Box<Instruction>>,
}

/// Every instruction but FROM (which starts a `Stage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    Add(Add),
    Arg(Vec<ArgDef>),
    Cmd(ShellOrExec),
    Copy(Copy),
    Entrypoint(ShellOrExec),
    Env(Vec<KeyValue>),
    Expose(Vec<String>),
    Healthcheck(Healthcheck),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Onbuild(Onbuild),
    Run(Run),
    Shell(Vec<String>),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

impl Command {
    /// The upper-case instruction name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Add(_) => "ADD",
            Command::Arg(_) => "ARG",
            Command::Cmd(_) => "CMD",
            Command::Copy(_) => "COPY",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Env(_) => "ENV",
            Command::Expose(_) => "EXPOSE",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Label(_) => "LABEL",
            Command::Maintainer(_) => "MAINTAINER",
            Command::Onbuild(_) => "ONBUILD",
            Command::Run(_) => "RUN",
            Command::Shell(_) => "SHELL",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::User(_) => "USER",
            Command::Volume(_) => "VOLUME",
            Command::Workdir(_) => "WORKDIR",
        }
    }
}

/// Every instruction name BuildKit knows, for "did you mean" suggestions.
pub const INSTRUCTION_NAMES: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];
