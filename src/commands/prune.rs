//! `image prune`, `builder prune`, `system prune`: docker's prompts, filters and output;
//! the work is `store::Store::prune` (store/src/gc/).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use store::gc::{CachePolicy, ImageFilter, ImagePolicy, LabelFilter, PruneOptions, PruneReport};

use super::Ctx;
use crate::cli::{BuilderPruneArgs, ImagePruneArgs, SystemPruneArgs};
use crate::output::{human_size_with_precision, UsageError};

pub fn image_prune(ctx: &Ctx, args: &ImagePruneArgs) -> Result<()> {
    let image_filter = image_filters(&args.filters)?;
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue?"
    } else {
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
    };
    confirm_and_prune(
        ctx,
        Prune {
            warning,
            force: args.force,
            opts: PruneOptions {
                images: image_policy(args.all),
                image_filter,
                cache: CachePolicy::OfPrunedImages,
                ..PruneOptions::default()
            },
            cache_mounts: false,
            // docker lists the images only, though their build cache goes too.
            lists_images: true,
            lists_cache: false,
        },
    )
}

pub fn builder_prune(ctx: &Ctx, args: &BuilderPruneArgs) -> Result<()> {
    let cache_until = cache_filters(&args.filters)?;
    let keep_storage = args.keep_storage.as_deref().map(parse_bytes).transpose()?;
    let warning = if args.all {
        "WARNING! This will remove all build cache. Are you sure you want to continue?"
    } else {
        "WARNING! This will remove all dangling build cache. Are you sure you want to continue?"
    };
    confirm_and_prune(
        ctx,
        Prune {
            warning,
            force: args.force,
            opts: PruneOptions {
                cache: cache_policy(args.all),
                cache_until,
                keep_storage,
                ..PruneOptions::default()
            },
            cache_mounts: args.filters.is_empty() && keep_storage.is_none(),
            lists_images: false,
            lists_cache: true,
        },
    )
}

pub fn system_prune(ctx: &Ctx, args: &SystemPruneArgs) -> Result<()> {
    let image_filter = image_filters(&args.filters)?;
    if args.volumes {
        eprintln!("strata has no volumes: --volumes has nothing to prune");
    }
    let mut warning = String::from("WARNING! This will remove:\n");
    if args.all {
        warning.push_str(
            "  - all images without at least one container associated to them\n  - all build cache\n",
        );
    } else {
        warning.push_str("  - all dangling images\n  - unused build cache\n");
    }
    warning.push_str("  - temporary files left by interrupted builds and pulls\n");
    if !args.filters.is_empty() {
        warning.push_str("\n  Items to be pruned will be filtered with:\n");
        for f in &args.filters {
            warning.push_str(&format!("  - {f}\n"));
        }
    }
    warning.push_str("\nAre you sure you want to continue?");
    confirm_and_prune(
        ctx,
        Prune {
            warning: &warning,
            force: args.force,
            opts: PruneOptions {
                images: image_policy(args.all),
                cache_until: image_filter.until,
                image_filter,
                cache: cache_policy(args.all),
                keep_storage: None,
                leftovers: true,
            },
            cache_mounts: args.filters.is_empty(),
            lists_images: true,
            lists_cache: true,
        },
    )
}

/// One prune command, its flags parsed.
struct Prune<'a> {
    /// docker's question; `force` (-f) skips it.
    warning: &'a str,
    force: bool,
    opts: PruneOptions,
    /// Also remove the RUN cache mounts and downloads nobody holds (see [`remove_cache_mounts`]).
    cache_mounts: bool,
    /// Which "Deleted …" lists to print before the total.
    lists_images: bool,
    lists_cache: bool,
}

/// What every prune command does with its request: ask, prune, print what went.
fn confirm_and_prune(ctx: &Ctx, prune: Prune) -> Result<()> {
    if !confirm(prune.warning, prune.force)? {
        return Ok(());
    }
    let mut report = run(ctx, &prune.opts)?;
    if prune.cache_mounts {
        report.reclaimed += remove_cache_mounts(ctx)?;
    }
    let mut out = std::io::stdout().lock();
    if prune.lists_images {
        print_images(&mut out, &report)?;
    }
    if prune.lists_cache {
        print_cache(&mut out, &report)?;
    }
    print_total(&mut out, &report)
}

/// `--all`: every image (strata runs no containers, so none is in use); otherwise only
/// dangling ones.
fn image_policy(all: bool) -> ImagePolicy {
    if all {
        ImagePolicy::All
    } else {
        ImagePolicy::Dangling
    }
}

/// `--all`: all build cache; otherwise only what no image shares.
fn cache_policy(all: bool) -> CachePolicy {
    if all {
        CachePolicy::All
    } else {
        CachePolicy::Unshared
    }
}

fn run(ctx: &Ctx, opts: &PruneOptions) -> Result<PruneReport> {
    let store = super::open_store(ctx)?;
    store
        .prune(opts)
        .with_context(|| format!("pruning {}", ctx.root.display()))
}

/// `RUN --mount=type=cache` directories and ADD's URL downloads that no build holds:
/// build cache too, as BuildKit's `exec.cachemount` and `source.http` records are. They
/// have no last-used time or per-record size here, so they go only when no filter and no
/// --keep-storage narrows the prune.
fn remove_cache_mounts(ctx: &Ctx) -> Result<u64> {
    let mounts = builder::solve::run_mounts::remove_all(&ctx.root)
        .with_context(|| format!("removing cache mounts under {}", ctx.root.display()))?;
    let downloads = builder::solve::fetch::remove_unused(&ctx.root)
        .with_context(|| format!("removing downloads under {}", ctx.root.display()))?;
    Ok(mounts + downloads)
}

/// docker's `PromptForConfirmation`: on a terminal ask and read y/N; without one refuse,
/// since nobody can answer (docker reads the answer from whatever stdin is).
fn confirm(warning: &str, force: bool) -> Result<bool> {
    if force {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to prune without confirmation: stdin is not a terminal; pass -f (--force)");
    }
    let mut out = std::io::stdout();
    write!(out, "{warning} [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    let yes = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    if !yes {
        println!("Total reclaimed space: 0B");
    }
    Ok(yes)
}

fn print_images(out: &mut impl Write, report: &PruneReport) -> Result<()> {
    if report.images_deleted.is_empty() {
        return Ok(());
    }
    writeln!(out, "Deleted Images:")?;
    let mut seen = std::collections::HashSet::new();
    for image in &report.images_deleted {
        if seen.insert(&image.id) {
            writeln!(out, "deleted: {}", image.id)?;
        }
    }
    writeln!(out)?;
    Ok(())
}

fn print_cache(out: &mut impl Write, report: &PruneReport) -> Result<()> {
    if report.cache_deleted.is_empty() {
        return Ok(());
    }
    writeln!(out, "Deleted build cache objects:")?;
    for key in &report.cache_deleted {
        writeln!(out, "{}", cache_id(key))?;
    }
    writeln!(out)?;
    Ok(())
}

fn print_total(out: &mut impl Write, report: &PruneReport) -> Result<()> {
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size_with_precision(report.reclaimed, 4)
    )?;
    Ok(())
}

/// A cache key as docker shows build cache ids: 25 characters.
pub fn cache_id(key: &str) -> &str {
    let key = key.strip_prefix("sha256:").unwrap_or(key);
    &key[..key.len().min(25)]
}

fn split_filter(item: &str) -> Result<(&str, &str)> {
    match item.split_once('=') {
        Some((k, v)) => Ok((k, v)),
        None => bail!(UsageError(format!(
            "bad format of filter (expected name=value): {item}"
        ))),
    }
}

/// `until=…`, `label=k[=v]`, `label!=k[=v]` (image and system prune).
fn image_filters(raw: &[String]) -> Result<ImageFilter> {
    let mut f = ImageFilter::default();
    for item in raw {
        let (key, value) = split_filter(item)?;
        match key {
            "until" => f.until = Some(parse_until(value)?),
            "label" | "label!" => {
                let (k, v) = match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                };
                f.labels.push(LabelFilter {
                    key: k,
                    value: v,
                    negate: key == "label!",
                });
            }
            _ => bail!(UsageError(format!(
                "invalid filter '{key}' (supported: until, label, label!)"
            ))),
        }
    }
    Ok(f)
}

/// `until=…` (builder prune).
fn cache_filters(raw: &[String]) -> Result<Option<i64>> {
    let mut until = None;
    for item in raw {
        match split_filter(item)? {
            ("until", value) => until = Some(parse_until(value)?),
            (key, _) => bail!(UsageError(format!(
                "invalid filter '{key}' (supported: until)"
            ))),
        }
    }
    Ok(until)
}

/// docker's `until`: a Go duration before now (`24h`, `1h30m`), an RFC 3339 time, a
/// local date-time or date (`2026-11-01T00:00:00`, `2026-11-01`), or unix seconds.
/// Returns unix seconds.
pub fn parse_until(s: &str) -> Result<i64> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(nanos) = store::duration::parse_duration(s) {
        return Ok(chrono::Utc::now().timestamp() - nanos / 1_000_000_000);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            if let Some(t) = Local.from_local_datetime(&t).earliest() {
                return Ok(t.timestamp());
            }
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        if let Some(t) = Local.from_local_datetime(&t).earliest() {
            return Ok(t.timestamp());
        }
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(secs as i64);
    }
    bail!(UsageError(format!(
        "invalid until filter {s:?}: want a duration (24h), a timestamp (2026-11-01T00:00:00) or unix seconds"
    )))
}

/// docker's `--keep-storage` (go-units RAMInBytes): binary multiples, `10GB` = 10 GiB.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| UsageError(format!("invalid size {s:?}: want e.g. 10GB or 512MB")))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => bail!(UsageError(format!(
            "invalid size {s:?}: unknown unit {unit:?}"
        ))),
    };
    Ok((n * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker_keep_storage() {
        let cases = [
            ("10GB", 10 << 30),
            ("512mb", 512 << 20),
            ("1.5k", 1536),
            ("42", 42),
            ("3 MiB", 3 << 20),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bytes(input).unwrap(), want, "input {input:?}");
        }
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("10XB").is_err());
    }

    #[test]
    fn until_accepts_docker_forms() {
        let now = chrono::Utc::now().timestamp();
        let cases = [
            ("24h", now - 86_400),
            ("1h30m", now - 5_400),
            ("2026-11-01T00:00:00Z", 1_793_491_200),
            ("1700000000", 1_700_000_000),
        ];
        for (input, want) in cases {
            let got = parse_until(input).unwrap();
            assert!((got - want).abs() <= 1, "input {input:?}: {got} vs {want}");
        }
        assert!(parse_until("2026-11-01").is_ok());
        assert!(parse_until("2026-11-01T00:00:00").is_ok());
        assert!(parse_until("yesterday").is_err());
    }

    #[test]
    fn filters_reject_unknown_names() {
        assert!(image_filters(&["dangling=true".into()]).is_err());
        assert!(cache_filters(&["label=x".into()]).is_err());
        let f = image_filters(&["label!=env=prod".into(), "label=team".into()]).unwrap();
        assert_eq!(f.labels.len(), 2);
        assert!(f.labels[0].negate && f.labels[0].value.as_deref() == Some("prod"));
        assert!(!f.labels[1].negate && f.labels[1].value.is_none());
    }
}
