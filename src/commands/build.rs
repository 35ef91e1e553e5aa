//! `strata build`: `--check` goes to the front end only; otherwise build, tag, print the ID.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use builder::build::BuildOptions;
use builder::exec;
use builder::progress::{Reporter, Silent};
use engine::BuildRequest;
use store::{Reference, Store};

use super::Ctx;
use crate::cli::{BuildArgs, Network, Progress, Snapshotter};
use crate::output::{self, UsageError};
use crate::progress::{PlainReporter, TtyReporter};

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    if args.check {
        return super::check::run(ctx, args);
    }
    let cache_from = args
        .cache_from
        .iter()
        .map(|c| engine::parse_cache_from(c))
        .collect::<engine::Result<Vec<_>>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|c| engine::parse_cache_to(c))
        .collect::<engine::Result<Vec<_>>>()?;
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(|e| UsageError(format!("invalid tag {t:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let build_args = parse_build_args(&args.build_args)?;
    let source_date_epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| UsageError(format!("invalid SOURCE_DATE_EPOCH {s:?}: want seconds")))
        })
        .transpose()?;
    let store = Store::open(&ctx.root)
        .with_context(|| format!("opening the store at {}", ctx.root.display()))?;
    // BuildKit's inline cache: `--cache-to type=inline`, or the build arg docker users set.
    let inline_cache = cache_to.iter().any(|t| t.reference.is_none())
        || matches!(
            build_args.get("BUILDKIT_INLINE_CACHE").map(String::as_str),
            Some("1" | "true")
        );
    let options = BuildOptions {
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        network: match args.network {
            Network::None => exec::Network::None,
            Network::Host | Network::Default => exec::Network::Host,
        },
        snapshotter: match args.snapshotter {
            Snapshotter::Overlay => exec::Snapshotter::Overlay,
            Snapshotter::Copy => exec::Snapshotter::Copy,
        },
        source_date_epoch,
        secrets: args
            .secrets
            .iter()
            .map(|s| builder::build::run_mounts::parse_secret_flag(s).map_err(UsageError))
            .collect::<Result<_, _>>()?,
        ssh: args
            .ssh
            .iter()
            .map(|s| builder::build::run_mounts::parse_ssh_flag(s).map_err(UsageError))
            .collect::<Result<_, _>>()?,
        allow_insecure: parse_allow(&args.allow)?,
        inline_cache,
    };
    let request = BuildRequest {
        options,
        cache_from,
        cache_to,
        iidfile: args.iidfile.clone(),
        push: args.push,
    };
    let mut reporter: Box<dyn Reporter> = match (args.quiet, args.progress) {
        (true, _) | (_, Progress::Quiet) => Box::new(Silent),
        (_, Progress::Plain) => Box::new(PlainReporter::new()),
        (_, Progress::Tty) => Box::new(TtyReporter::new()),
        (_, Progress::Auto) if output::stderr_is_tty() => Box::new(TtyReporter::new()),
        (_, Progress::Auto) => Box::new(PlainReporter::new()),
    };
    let registry = super::registry(ctx, args.quiet);
    let result = engine::build(&store, &registry, &request, reporter.as_mut())?;
    if args.quiet {
        println!("{}", result.image_id);
    }
    Ok(())
}

/// `--allow security.insecure` (also comma-separated); `network.host` is always allowed.
fn parse_allow(raw: &[String]) -> Result<bool> {
    let mut insecure = false;
    for entitlement in raw.iter().flat_map(|a| a.split(',')) {
        match entitlement.trim() {
            "security.insecure" => insecure = true,
            "network.host" => {}
            other => {
                return Err(UsageError(format!(
                    "invalid --allow {other:?}: want security.insecure or network.host"
                ))
                .into())
            }
        }
    }
    Ok(insecure)
}

/// `KEY=VALUE`, or `KEY` alone to take the value from the environment (docker's rule; a
/// `KEY` not in the environment is left unset).
fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in raw {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                return Err(
                    UsageError(format!("invalid --build-arg {arg:?}: want KEY=VALUE")).into(),
                )
            }
            None => {
                if let Ok(v) = std::env::var(arg) {
                    out.insert(arg.clone(), v);
                }
            }
        }
    }
    Ok(out)
}
