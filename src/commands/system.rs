//! `system df`: docker's TYPE / TOTAL / ACTIVE / SIZE / RECLAIMABLE table, `-v` details and
//! `--format json|table|TEMPLATE` (`crate::template`). Numbers come from `store::Store::disk_usage`, which
//! reads recorded sizes; Images SIZE + Build Cache SIZE is every referenced byte on disk.
//!
//! strata has no containers and no volumes: those rows are always zero, as docker shows
//! them on a machine without any. Images ACTIVE counts tagged images (the ones no prune
//! removes); Build Cache ACTIVE counts records a running build holds.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use store::gc::usage::DiskUsage;

use super::Ctx;
use crate::cli::DfArgs;
use crate::output::{format_table, human_age, human_size, human_size_with_precision};
use crate::template::Format;

/// One summary row.
struct Row {
    kind: &'static str,
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
    /// docker prints "(NN%)" after RECLAIMABLE for images, containers and volumes.
    percent: bool,
}

impl Row {
    /// A kind strata does not have (containers, volumes): all zero, as docker shows it on
    /// a machine without any.
    fn none(kind: &'static str) -> Row {
        Row {
            kind,
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
            percent: true,
        }
    }

    fn size_text(&self) -> String {
        human_size_with_precision(self.size, 4)
    }
    fn reclaimable_text(&self) -> String {
        let r = human_size_with_precision(self.reclaimable, 4);
        if self.percent && self.size > 0 {
            format!("{r} ({}%)", self.reclaimable * 100 / self.size)
        } else {
            r
        }
    }
    /// docker's fields of a row (`--format json`, templates), plus exact byte counts.
    fn json(&self) -> serde_json::Value {
        json!({
            "Active": self.active.to_string(),
            "Reclaimable": self.reclaimable_text(),
            "Size": self.size_text(),
            "TotalCount": self.total.to_string(),
            "Type": self.kind,
            // Not in docker's output: exact bytes, for scripts and tests.
            "SizeBytes": self.size,
            "ReclaimableBytes": self.reclaimable,
        })
    }
}

pub fn df(ctx: &Ctx, args: &DfArgs) -> Result<()> {
    let store = super::open_store(ctx)?;
    let usage = store.disk_usage()?;
    // RUN --mount=type=cache directories and ADD's URL downloads are build cache too
    // (allocated blocks), as BuildKit's exec.cachemount and source records are.
    let cache_dirs = builder::solve::run_mounts::usage(&ctx.root).unwrap_or(0)
        + builder::solve::fetch::usage(&ctx.root).unwrap_or(0);
    let summary = Summary::of(&usage, cache_dirs);
    let rows = summary.rows();
    let mut out = std::io::stdout().lock();
    match Format::parse(args.format.as_deref())? {
        Format::Default if args.verbose => verbose(&mut out, &usage, &summary.build_cache),
        Format::Default => {
            let mut table = vec![cells(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"])];
            for r in rows {
                table.push(vec![
                    r.kind.to_string(),
                    r.total.to_string(),
                    r.active.to_string(),
                    r.size_text(),
                    r.reclaimable_text(),
                ]);
            }
            write!(out, "{}", format_table(&table))?;
            Ok(())
        }
        Format::Template(template) => {
            let rows: Vec<_> = rows.iter().map(|r| r.json()).collect();
            write!(out, "{}", template.render_all(HEADERS, &rows)?)?;
            Ok(())
        }
    }
}

/// docker's column titles of `system df --format 'table …'`, by field.
const HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

/// The four rows, every number from one `DiskUsage` and `cache_dirs` (the bytes of
/// cache mounts and downloads, which belong to the build cache but have no record in
/// the store).
struct Summary {
    images: Row,
    containers: Row,
    volumes: Row,
    build_cache: Row,
}

impl Summary {
    fn of(u: &DiskUsage, cache_dirs: u64) -> Summary {
        Summary {
            images: Row {
                kind: "Images",
                total: u.images.len(),
                active: u.tagged_images(),
                size: u.images_size,
                reclaimable: u.images_reclaimable,
                percent: true,
            },
            containers: Row::none("Containers"),
            volumes: Row::none("Local Volumes"),
            build_cache: Row {
                kind: "Build Cache",
                total: u.cache.len(),
                active: u.cache_in_use(),
                size: u.cache_size + cache_dirs,
                reclaimable: u.cache_reclaimable + cache_dirs,
                percent: false,
            },
        }
    }

    /// In docker's order.
    fn rows(&self) -> [&Row; 4] {
        [
            &self.images,
            &self.containers,
            &self.volumes,
            &self.build_cache,
        ]
    }
}

/// `-v`: per image and per cache record; `build_cache` is the summary's row, so the
/// heading's total is the same number.
fn verbose(out: &mut impl Write, u: &DiskUsage, build_cache: &Row) -> Result<()> {
    let now = chrono::Utc::now();
    writeln!(out, "Images space usage:\n")?;
    let mut table = vec![cells(&[
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "SHARED SIZE",
        "UNIQUE SIZE",
        "CONTAINERS",
    ])];
    for i in &u.images {
        let created = i
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|c| human_age((now - c.with_timezone(&chrono::Utc)).num_seconds()))
            .unwrap_or_else(|| "N/A".to_string());
        let mut names: Vec<(String, String)> = i
            .tags
            .iter()
            .filter_map(|t| store::Reference::parse(t).ok())
            .map(|r| {
                (
                    r.repository_familiar(),
                    r.tag.clone().unwrap_or_else(|| "<none>".into()),
                )
            })
            .collect();
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            table.push(vec![
                repo,
                tag,
                i.id.short().to_string(),
                created.clone(),
                human_size(i.size),
                human_size(i.shared_size),
                human_size(i.size - i.shared_size),
                "0".to_string(),
            ]);
        }
    }
    write!(out, "{}", format_table(&table))?;
    writeln!(out, "\nContainers space usage:\n")?;
    write!(
        out,
        "{}",
        format_table(&[cells(&[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES",
        ])])
    )?;
    writeln!(out, "\nLocal Volumes space usage:\n")?;
    write!(
        out,
        "{}",
        format_table(&[cells(&["VOLUME NAME", "LINKS", "SIZE"])])
    )?;
    writeln!(out, "\nBuild cache usage: {}\n", build_cache.size_text())?;
    let mut table = vec![cells(&[
        "CACHE ID",
        "CACHE TYPE",
        "SIZE",
        "CREATED",
        "LAST USED",
        "USAGE",
        "SHARED",
    ])];
    let mut cache: Vec<_> = u.cache.iter().collect();
    cache.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.key.cmp(&b.key)));
    let unix_now = now.timestamp();
    for c in cache {
        table.push(vec![
            super::prune::cache_id(&c.key).to_string(),
            c.kind.to_string(),
            human_size(c.size),
            human_age(unix_now - c.created_at),
            human_age(unix_now - c.last_used),
            if c.in_use { "1" } else { "0" }.to_string(),
            c.shared.to_string(),
        ]);
    }
    write!(out, "{}", format_table(&table))?;
    Ok(())
}

fn cells(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaimable_shows_a_percentage_for_images_only() {
        let mut r = Row {
            kind: "Images",
            total: 5,
            active: 2,
            size: 16_430_000,
            reclaimable: 11_630_000,
            percent: true,
        };
        assert_eq!(r.reclaimable_text(), "11.63MB (70%)");
        assert_eq!(r.size_text(), "16.43MB");
        r.percent = false;
        assert_eq!(r.reclaimable_text(), "11.63MB");
    }
}
