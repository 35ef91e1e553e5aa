//! `strata build --check`: parse and evaluate the Dockerfile with BuildKit's build checks,
//! without building or pulling. A local context is not read; `-` and URL contexts are
//! fetched as a build fetches them, for the Dockerfile they carry. Exit 0 when no rule fires, 1 on a
//! warning or an error, as `docker build --check` does. A plain build runs the same checks
//! first ([`for_build`]).

use std::io::Read;

use anyhow::{anyhow, Context, Result};
use builder::dockerfile::lint::{format_json, format_text};
use builder::dockerfile::{check, CheckOptions, CheckReport};

use super::Ctx;
use crate::cli::{BuildArgs, OutputFormat};
use crate::output::Exit;

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    let context = args.context.to_string_lossy();
    let report = if context == "-" || engine::contexts::is_remote(&context) {
        // The Dockerfile these contexts carry: made local under ROOT as a build does,
        // removed when `contexts` is dropped.
        let store = super::open_store(ctx)?;
        let contexts = engine::contexts::resolve(
            &store,
            &engine::contexts::ContextArgs {
                context: &context,
                dockerfile: args.file.as_deref(),
                named: &[],
                build_args: &Default::default(),
            },
            &mut std::io::stdin().lock(),
        )?;
        let dockerfile = contexts.dockerfile_path();
        for_build(args, &dockerfile)?
    } else {
        let (text, name) = read_dockerfile(args)?;
        check(&text, &name, &options(args))
    };
    let has_warnings = !report.warnings.is_empty();
    match args.format {
        OutputFormat::Json => {
            print!("{}", format_json(&report));
            if report.error.is_some() || has_warnings {
                return Err(Exit(1).into());
            }
        }
        OutputFormat::Text => {
            // buildx prints the count first, then the warnings.
            if has_warnings {
                println!("{}", summary(report.warnings.len()));
            }
            // The error goes through `main` (`strata: error: Dockerfile:7: …`, exit 1).
            print!(
                "{}",
                format_text(&CheckReport {
                    error: None,
                    ..report.clone()
                })
            );
            if let Some(err) = report.error {
                return Err(anyhow!(err));
            }
            if has_warnings {
                return Err(Exit(1).into());
            }
            println!("{}", summary(0));
        }
    }
    Ok(())
}

/// The checks a build runs before it starts, as BuildKit evaluates them in every build,
/// on the Dockerfile the build reads (`-f -` and remote contexts made local). The caller
/// fails the build on a `# check=error=true` violation and prints the warnings
/// at the end ([`builder::dockerfile::lint::format_build_summary`]).
pub fn for_build(args: &BuildArgs, dockerfile: &std::path::Path) -> Result<CheckReport> {
    let text = std::fs::read_to_string(dockerfile)
        .with_context(|| format!("reading {}", dockerfile.display()))?;
    let name = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    Ok(check(&text, &name, &options(args)))
}

fn options(args: &BuildArgs) -> CheckOptions {
    CheckOptions {
        build_args: build_args(&args.build_args),
        target: args.target.clone(),
    }
}

/// docker's closing line.
fn summary(n: usize) -> String {
    match n {
        0 => "Check complete, no warnings found.".to_string(),
        1 => "Check complete, 1 warning has been found!".to_string(),
        n => format!("Check complete, {n} warnings have been found!"),
    }
}

/// `-f FILE` (or `-f -` for stdin), else `CONTEXT/Dockerfile`. The name shown in messages
/// is the file name, like docker's `Dockerfile:12`.
fn read_dockerfile(args: &BuildArgs) -> Result<(String, String)> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    if path == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the Dockerfile from stdin")?;
        return Ok((text, "Dockerfile".to_string()));
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    Ok((text, name))
}

/// `KEY=VALUE`, or `KEY` alone to take the value from the environment (skipped if unset).
fn build_args(raw: &[String]) -> Vec<(String, String)> {
    raw.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}
