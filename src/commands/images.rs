//! `strata images`: docker's table (REPOSITORY TAG IMAGE ID CREATED SIZE), `-q`,
//! `-a`, `--filter before=|since=|label=|dangling=|reference=`, `--format json|table|TEMPLATE` (Go templates, `crate::template`).

use anyhow::{bail, Result};
use serde_json::json;

use super::Ctx;
use store::gc::LabelFilter;

use crate::cli::ImagesArgs;
use crate::output::{format_table, human_age, human_size, UsageError};
use crate::template::Format;

/// One output row: an image under one of its tags (or `<none>` when dangling).
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: String,
    created_at: String,
    created_since: String,
    size: String,
}

#[derive(Default)]
struct Filters {
    dangling: Option<bool>,
    references: Vec<String>,
    /// `before=IMAGE` / `since=IMAGE`: created strictly before / after that image.
    before: Option<String>,
    since: Option<String>,
    labels: Vec<LabelFilter>,
}

pub fn run(ctx: &Ctx, args: &ImagesArgs) -> Result<()> {
    let mut filters = parse_filters(&args.filters)?;
    if let Some(r) = &args.reference {
        filters.references.push(r.clone());
    }
    let store = super::open_store(ctx)?;
    let before = created_of(&store, filters.before.as_deref())?;
    let since = created_of(&store, filters.since.as_deref())?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for image in store.images()? {
        let dangling = image.tags.is_empty();
        if filters.dangling.is_some_and(|want| want != dangling) {
            continue;
        }
        let created_secs = created_seconds(&image);
        if before.is_some_and(|b| created_secs >= b) || since.is_some_and(|s| created_secs <= s) {
            continue;
        }
        if !filters.labels.is_empty() {
            let labels = store::gc::policy::config_labels(&store, image.id());
            if !filters.labels.iter().all(|l| l.matches(&labels)) {
                continue;
            }
        }
        let id = if args.no_trunc {
            image.id().to_string()
        } else {
            image.id().short().to_string()
        };
        let created = image
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
        let (created_at, created_since) = match created {
            Some(c) => (
                c.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S +0000 UTC")
                    .to_string(),
                human_age((now - c.with_timezone(&chrono::Utc)).num_seconds()),
            ),
            None => ("N/A".to_string(), "N/A".to_string()),
        };
        let mut names: Vec<(String, String, String)> = image
            .tags
            .iter()
            .map(|t| {
                (
                    t.repository_familiar(),
                    t.tag.clone().unwrap_or_else(|| "<none>".into()),
                    t.familiar(),
                )
            })
            .collect();
        if names.is_empty() {
            if !filters.references.is_empty() {
                continue;
            }
            names.push(("<none>".into(), "<none>".into(), String::new()));
        }
        for (repository, tag, familiar) in names {
            if !filters.references.is_empty()
                && !filters
                    .references
                    .iter()
                    .any(|p| reference_matches(p, &repository, &familiar))
            {
                continue;
            }
            rows.push(Row {
                repository,
                tag,
                id: id.clone(),
                digest: image.manifest.to_string(),
                created_at: created_at.clone(),
                created_since: created_since.clone(),
                size: human_size(image.size),
            });
        }
    }
    print_rows(&rows, args)
}

fn parse_filters(raw: &[String]) -> Result<Filters> {
    let mut f = Filters::default();
    for item in raw {
        let Some((k, v)) = item.split_once('=') else {
            bail!(UsageError(format!(
                "bad format of filter (expected name=value): {item}"
            )));
        };
        match k {
            "dangling" => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => f.dangling = Some(true),
                "false" | "0" => f.dangling = Some(false),
                _ => bail!(UsageError(format!(
                    "invalid filter 'dangling={v}': expected true or false"
                ))),
            },
            "reference" => f.references.push(v.to_string()),
            "before" => f.before = Some(v.to_string()),
            "since" => f.since = Some(v.to_string()),
            "label" => {
                let (key, value) = match v.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (v.to_string(), None),
                };
                f.labels.push(LabelFilter {
                    key,
                    value,
                    negate: false,
                });
            }
            _ => bail!(UsageError(format!(
                "invalid filter '{k}' (supported: before, dangling, label, reference, since)"
            ))),
        }
    }
    Ok(f)
}

/// The creation time (unix seconds) of the image `input` names, for `before`/`since`; an
/// image that is not in the store is an error naming it.
fn created_of(store: &store::Store, input: Option<&str>) -> Result<Option<i64>> {
    let Some(input) = input else {
        return Ok(None);
    };
    let manifest = super::resolve_image(store, input)?;
    Ok(Some(created_seconds(&store.image(&manifest)?)))
}

/// The config's `created`, else when the image came into the store.
fn created_seconds(image: &store::ImageRecord) -> i64 {
    image
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map_or(image.added_at, |c| c.timestamp())
}

/// docker's `reference` filter: a path.Match glob against the familiar name, with
/// or without the tag.
fn reference_matches(pattern: &str, repository: &str, familiar: &str) -> bool {
    glob(pattern.as_bytes(), repository.as_bytes()) || glob(pattern.as_bytes(), familiar.as_bytes())
}

/// Go's path.Match subset: `*` (not across `/`), `?`, literal characters.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && glob(p, &s[1..])),
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

fn print_rows(rows: &[Row], args: &ImagesArgs) -> Result<()> {
    if args.quiet {
        for r in rows {
            println!("{}", r.id);
        }
        return Ok(());
    }
    match Format::parse(args.format.as_deref())? {
        Format::Default => {
            let mut header = vec!["REPOSITORY", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let mut table = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
            for r in rows {
                let mut line = vec![r.repository.clone(), r.tag.clone()];
                if args.digests {
                    line.push(r.digest.clone());
                }
                line.extend([r.id.clone(), r.created_since.clone(), r.size.clone()]);
                table.push(line);
            }
            print!("{}", format_table(&table));
            Ok(())
        }
        Format::Template(template) => {
            let rows: Vec<_> = rows.iter().map(row_json).collect();
            print!("{}", template.render_all(HEADERS, &rows)?);
            Ok(())
        }
    }
}

/// docker's column titles of `images --format 'table …'`, by field.
const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

fn row_json(r: &Row) -> serde_json::Value {
    json!({
        "Containers": "N/A",
        "CreatedAt": r.created_at,
        "CreatedSince": r.created_since,
        "Digest": r.digest,
        "ID": r.id,
        "Repository": r.repository,
        "SharedSize": "N/A",
        "Size": r.size,
        "Tag": r.tag,
        "UniqueSize": "N/A",
        "VirtualSize": r.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter_globs_like_docker() {
        let cases = [
            ("busybox", "busybox", "busybox:latest", true),
            ("busybox:latest", "busybox", "busybox:latest", true),
            ("busy*", "busybox", "busybox:latest", true),
            ("*box:lat*", "busybox", "busybox:latest", true),
            ("busybox:1.0", "busybox", "busybox:latest", false),
            ("*", "someone/app", "someone/app:v1", false),
            ("*/*", "someone/app", "someone/app:v1", true),
        ];
        for (p, repo, fam, want) in cases {
            assert_eq!(reference_matches(p, repo, fam), want, "{p} vs {fam}");
        }
    }
}
