//! Nodes → typed instructions (BuildKit's `instructions/parse.go`), one small handler per
//! instruction, chosen from `HANDLERS`.

use super::duration::IntervalError;
use super::error::{with_suggestion, Located};
use super::flags::{parse_flags, FlagError, FlagValues, Kind};
use super::heredoc::{parse_heredoc, Heredoc};
use super::instructions::*;
use super::mount::MountError;
use super::node::{Args, Node};

/// An instruction whose arguments or flags BuildKit refuses, in BuildKit's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    #[error("{0} requires at least one argument")]
    AtLeastOne(&'static str),
    #[error("{0} requires exactly one argument")]
    ExactlyOne(&'static str),
    #[error("{0} requires at least two arguments, but only one was provided. Destination could not be determined")]
    NoDestination(&'static str),
    #[error("Bad input to {0}, too many arguments")]
    TooMany(&'static str),
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(&'static str),
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("invalid network mode {0:?}")]
    NetworkMode(String),
    #[error("security {0:?} is not valid")]
    Security(String),
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArgs,
    #[error("Unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckNoCommand,
    #[error("strconv.ParseInt: parsing {0:?}: invalid syntax")]
    RetriesSyntax(String),
    #[error("strconv.ParseInt: parsing {0:?}: value out of range")]
    RetriesRange(String),
    #[error("--retries cannot be negative ({0})")]
    RetriesNegative(i64),
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    StageName(String),
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Interval(#[from] IntervalError),
}

use InstructionError as E;

/// What a handler sees: the node and its flattened arguments.
pub(crate) struct Request<'a> {
    pub node: &'a Node,
    pub args: Vec<String>,
}

impl Request<'_> {
    fn flags(&self, declared: &[(&'static str, Kind)]) -> Result<FlagValues, FlagError> {
        parse_flags(&self.node.flags, declared)
    }

    /// Shell form joins the words back into one string; exec form keeps the array.
    fn cmdline(&self) -> ShellOrExec {
        if self.node.is_json {
            ShellOrExec::Exec(self.args.clone())
        } else if self.args.is_empty() {
            ShellOrExec::Shell(String::new())
        } else {
            ShellOrExec::Shell(self.args.join(" "))
        }
    }
}

type Handler = fn(&Request) -> Result<Command, InstructionError>;

/// The instruction table. FROM is not here: it starts a stage (see `parse_from`).
const HANDLERS: [(&str, Handler); 17] = [
    ("add", add),
    ("arg", arg),
    ("cmd", cmd),
    ("copy", copy),
    ("entrypoint", entrypoint),
    ("env", env),
    ("expose", expose),
    ("healthcheck", healthcheck),
    ("label", label),
    ("maintainer", maintainer),
    ("onbuild", onbuild),
    ("run", run),
    ("shell", shell),
    ("stopsignal", stopsignal),
    ("user", user),
    ("volume", volume),
    ("workdir", workdir),
];

/// Type one non-FROM node. Unknown names get BuildKit's suggestion.
pub(crate) fn instruction(node: &Node) -> Result<Instruction, Located> {
    let lower = node.lower_name();
    let Some((_, handler)) = HANDLERS.iter().find(|(n, _)| *n == lower) else {
        let msg = format!("unknown instruction {:?}", node.keyword);
        return Err(Located::at(
            with_suggestion(msg, &node.keyword, &INSTRUCTION_NAMES, false),
            node.span,
        ));
    };
    let req = Request {
        node,
        args: node.arg_list(),
    };
    let command = handler(&req).map_err(|e| Located::at(e.to_string(), node.span))?;
    Ok(Instruction {
        command,
        keyword: node.keyword.clone(),
        span: node.span,
        original: node.original.clone(),
        comments: node.comments.clone(),
    })
}

fn key_values(args: &[String], name: &'static str) -> Result<Vec<KeyValue>, InstructionError> {
    if args.is_empty() {
        return Err(E::AtLeastOne(name));
    }
    if !args.len().is_multiple_of(3) {
        return Err(E::TooMany(name));
    }
    args.chunks(3)
        .map(|c| match c {
            [k, _, _] if k.is_empty() => Err(E::BlankName(name)),
            [k, v, sep] => Ok(KeyValue {
                key: k.clone(),
                value: v.clone(),
                legacy: sep.is_empty(),
            }),
            _ => unreachable!("chunks(3) of a multiple of 3"),
        })
        .collect()
}

fn env(r: &Request) -> Result<Command, InstructionError> {
    r.flags(&[])?;
    key_values(&r.args, "ENV").map(Command::Env)
}

fn label(r: &Request) -> Result<Command, InstructionError> {
    r.flags(&[])?;
    key_values(&r.args, "LABEL").map(Command::Label)
}

fn maintainer(r: &Request) -> Result<Command, InstructionError> {
    if r.args.len() != 1 {
        return Err(E::ExactlyOne("MAINTAINER"));
    }
    r.flags(&[])?;
    Ok(Command::Maintainer(r.args[0].clone()))
}

/// Split COPY/ADD arguments into paths, heredoc sources and the destination.
fn sources_and_dest(
    r: &Request,
    name: &'static str,
) -> Result<(Vec<String>, Vec<Heredoc>, String), InstructionError> {
    let (dest, srcs) = r.args.split_last().ok_or(E::NoDestination(name))?;
    if parse_heredoc(dest).ok().flatten().is_some() {
        return Err(E::HeredocDestination(name));
    }
    let mut paths = Vec::new();
    let mut docs = Vec::new();
    for src in srcs {
        match parse_heredoc(src).ok().flatten() {
            Some(marker) => {
                let body = r.node.heredocs.iter().find(|h| h.name == marker.name);
                let content = body.map(|h| h.content.clone()).unwrap_or_default();
                docs.push(Heredoc { content, ..marker });
            }
            None => paths.push(src.clone()),
        }
    }
    Ok((paths, docs, dest.clone()))
}

/// COPY's and ADD's common front: at least a source and a destination, the instruction's
/// `declared` flags, then the sources (heredocs among them) and the destination.
fn file_transfer(
    r: &Request,
    name: &'static str,
    declared: &[(&'static str, Kind)],
) -> Result<(FlagValues, Vec<String>, Vec<Heredoc>, String), InstructionError> {
    if r.args.len() < 2 {
        return Err(E::NoDestination(name));
    }
    let f = r.flags(declared)?;
    let (srcs, heredocs, dest) = sources_and_dest(r, name)?;
    Ok((f, srcs, heredocs, dest))
}

/// ADD's flags, in BuildKit's order.
const ADD_FLAGS: [(&str, Kind); 7] = [
    ("chown", Kind::Str),
    ("chmod", Kind::Str),
    ("link", Kind::Bool),
    ("keep-git-dir", Kind::Bool),
    ("checksum", Kind::Str),
    ("unpack", Kind::Bool),
    ("exclude", Kind::Strings),
];

/// COPY's flags, in BuildKit's order.
const COPY_FLAGS: [(&str, Kind); 6] = [
    ("chown", Kind::Str),
    ("from", Kind::Str),
    ("chmod", Kind::Str),
    ("link", Kind::Bool),
    ("exclude", Kind::Strings),
    ("parents", Kind::Bool),
];

fn add(r: &Request) -> Result<Command, InstructionError> {
    let (f, srcs, heredocs, dest) = file_transfer(r, "ADD", &ADD_FLAGS)?;
    Ok(Command::Add(Add {
        srcs,
        dest,
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link").unwrap_or(false),
        checksum: f.string("checksum"),
        keep_git_dir: f.bool("keep-git-dir"),
        unpack: f.bool("unpack"),
        exclude: f.strings("exclude"),
        heredocs,
    }))
}

fn copy(r: &Request) -> Result<Command, InstructionError> {
    let (f, srcs, heredocs, dest) = file_transfer(r, "COPY", &COPY_FLAGS)?;
    Ok(Command::Copy(Copy {
        srcs,
        dest,
        from: f.string("from"),
        chown: f.string("chown"),
        chmod: f.string("chmod"),
        link: f.bool("link").unwrap_or(false),
        parents: f.bool("parents").unwrap_or(false),
        exclude: f.strings("exclude"),
        heredocs,
    }))
}

fn onbuild(r: &Request) -> Result<Command, InstructionError> {
    let Args::Sub(Some(child)) = &r.node.args else {
        return Err(E::AtLeastOne("ONBUILD"));
    };
    r.flags(&[])?;
    let trigger = child.keyword.trim().to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err(E::OnbuildChain),
        "MAINTAINER" | "FROM" => return Err(E::OnbuildTrigger(trigger)),
        _ => {}
    }
    let mut expression = strip_onbuild(&r.node.original).to_string();
    for h in &r.node.heredocs {
        expression.push('\n');
        expression.push_str(&h.content);
        expression.push_str(&h.name);
    }
    let mut child = (**child).clone();
    child.span = r.node.span;
    child.heredocs = r.node.heredocs.clone();
    // BuildKit checks the trigger only when a child image builds; an invalid one is kept
    // as text and `trigger` is None.
    let typed = instruction(&child).ok().map(Box::new);
    Ok(Command::Onbuild(Onbuild {
        expression,
        trigger: typed,
    }))
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start();
    match t.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => t[7..].trim_start(),
        _ => original,
    }
}

fn workdir(r: &Request) -> Result<Command, InstructionError> {
    if r.args.len() != 1 {
        return Err(E::ExactlyOne("WORKDIR"));
    }
    r.flags(&[])?;
    Ok(Command::Workdir(r.args[0].clone()))
}

fn run(r: &Request) -> Result<Command, InstructionError> {
    let f = r.flags(&[
        ("mount", Kind::Strings),
        ("network", Kind::Str),
        ("security", Kind::Str),
    ])?;
    let network = match f.string("network").as_deref() {
        None => None,
        Some("default") => Some(NetworkMode::Default),
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(other) => return Err(E::NetworkMode(other.to_string())),
    };
    let security = match f.string("security").as_deref() {
        None => None,
        Some("sandbox") => Some(SecurityMode::Sandbox),
        Some("insecure") => Some(SecurityMode::Insecure),
        Some(other) => return Err(E::Security(other.to_string())),
    };
    let mounts = f.strings("mount");
    for m in &mounts {
        super::mount::check_unexpanded(m)?;
    }
    Ok(Command::Run(Run {
        cmd: r.cmdline(),
        heredocs: r.node.heredocs.clone(),
        mounts,
        network,
        security,
    }))
}

fn cmd(r: &Request) -> Result<Command, InstructionError> {
    r.flags(&[])?;
    Ok(Command::Cmd(r.cmdline()))
}

fn entrypoint(r: &Request) -> Result<Command, InstructionError> {
    r.flags(&[])?;
    Ok(Command::Entrypoint(r.cmdline()))
}

fn healthcheck(r: &Request) -> Result<Command, InstructionError> {
    let Some((typ, rest)) = r.args.split_first() else {
        return Err(E::AtLeastOne("HEALTHCHECK"));
    };
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(E::HealthcheckNoneArgs);
        }
        return Ok(Command::Healthcheck(Healthcheck::None));
    }
    let names = [
        "interval",
        "timeout",
        "start-period",
        "start-interval",
        "retries",
    ];
    let f = r.flags(&names.map(|n| (n, Kind::Str)))?;
    if typ != "CMD" {
        return Err(E::HealthcheckType(typ));
    }
    let test = if r.node.is_json {
        rest.to_vec()
    } else if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.join(" ")]
    };
    if test.is_empty() {
        return Err(E::HealthcheckNoCommand);
    }
    let kind = if r.node.is_json { "CMD" } else { "CMD-SHELL" };
    let interval = |n: &str| super::duration::interval(n, f.string(n).as_deref());
    let retries = match f.string("retries") {
        None => 0,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| E::RetriesSyntax(v.clone()))?;
            if n < 0 {
                return Err(E::RetriesNegative(n));
            }
            u32::try_from(n).map_err(|_| E::RetriesRange(v.clone()))?
        }
    };
    let options = HealthcheckOptions {
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    };
    let test = std::iter::once(kind.to_string()).chain(test).collect();
    Ok(Command::Healthcheck(Healthcheck::Cmd { test, options }))
}

fn expose(r: &Request) -> Result<Command, InstructionError> {
    if r.args.is_empty() {
        return Err(E::AtLeastOne("EXPOSE"));
    }
    r.flags(&[])?;
    let mut ports = r.args.clone();
    ports.sort();
    Ok(Command::Expose(ports))
}

fn user(r: &Request) -> Result<Command, InstructionError> {
    if r.args.len() != 1 {
        return Err(E::ExactlyOne("USER"));
    }
    r.flags(&[])?;
    Ok(Command::User(r.args[0].clone()))
}

fn volume(r: &Request) -> Result<Command, InstructionError> {
    if r.args.is_empty() {
        return Err(E::AtLeastOne("VOLUME"));
    }
    r.flags(&[])?;
    let vols: Vec<String> = r.args.iter().map(|v| v.trim().to_string()).collect();
    if vols.iter().any(String::is_empty) {
        return Err(E::EmptyVolume);
    }
    Ok(Command::Volume(vols))
}

/// STOPSIGNAL, like ARG, does not check flags in BuildKit.
fn stopsignal(r: &Request) -> Result<Command, InstructionError> {
    if r.args.len() != 1 {
        return Err(E::ExactlyOne("STOPSIGNAL"));
    }
    Ok(Command::StopSignal(r.args[0].clone()))
}

fn arg(r: &Request) -> Result<Command, InstructionError> {
    if r.args.is_empty() {
        return Err(E::AtLeastOne("ARG"));
    }
    r.args
        .iter()
        .map(|a| match a.split_once('=') {
            Some(("", _)) => Err(E::BlankName("ARG")),
            Some((k, v)) => Ok(ArgDef {
                name: k.to_string(),
                default: Some(v.to_string()),
            }),
            None => Ok(ArgDef {
                name: a.clone(),
                default: None,
            }),
        })
        .collect::<Result<_, _>>()
        .map(Command::Arg)
}

fn shell(r: &Request) -> Result<Command, InstructionError> {
    r.flags(&[])?;
    if r.args.is_empty() {
        return Err(E::AtLeastOne("SHELL"));
    }
    if !r.node.is_json {
        return Err(E::ShellNotJson);
    }
    Ok(Command::Shell(r.args.clone()))
}

/// FROM [--platform=P] image [AS name]
pub(crate) fn parse_from(node: &Node) -> Result<Stage, Located> {
    from_inner(node).map_err(|e| Located::at(e.to_string(), node.span))
}

fn from_inner(node: &Node) -> Result<Stage, InstructionError> {
    let args = node.arg_list();
    let (name, name_as_written, as_keyword) = match args.as_slice() {
        [_, kw, name] if kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            if !valid_stage_name(&lower) {
                return Err(E::StageName(name.clone()));
            }
            (Some(lower), Some(name.clone()), Some(kw.clone()))
        }
        [_] => (None, None, None),
        _ => return Err(E::FromArguments),
    };
    let f = parse_flags(&node.flags, &[("platform", Kind::Str)])?;
    Ok(Stage {
        base: args[0].clone(),
        name,
        name_as_written,
        platform: f.string("platform"),
        keyword: node.keyword.clone(),
        as_keyword,
        span: node.span,
        original: node.original.trim().to_string(),
        comments: node.comments.clone(),
        instructions: Vec::new(),
    })
}

/// `^[a-z][a-z0-9-_.]*$`
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}
