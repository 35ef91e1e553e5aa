//! `strata history IMAGE`: docker's columns IMAGE CREATED CREATED BY SIZE COMMENT,
//! newest first, from the config's history; layers are matched to the history
//! entries that are not `empty_layer`. `--format` takes docker's templates
//! (`crate::template`).

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::HistoryArgs;
use crate::output::{format_table, human_age, human_size};
use crate::template::Format;

pub fn run(ctx: &Ctx, args: &HistoryArgs) -> Result<()> {
    let store = super::open_store(ctx)?;
    let manifest = super::resolve_image(&store, &args.image)?;
    let listed = store.image(&manifest)?;
    // A multi-platform image: this machine's platform, as docker shows it.
    let image = super::host_image(&store, &listed, &args.image)?;
    let config: Value = serde_json::from_slice(&store.read_blob(&image.config.digest)?)
        .with_context(|| format!("config {} is not JSON", image.config.digest))?;
    let history = config["history"].as_array().cloned().unwrap_or_default();
    let mut layers = image.layers.iter();
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for h in &history {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            match layers.next() {
                Some(l) => store.uncompressed_size(&l.diff_id)?.unwrap_or(l.blob.size),
                None => 0,
            }
        };
        let created_time = h["created"]
            .as_str()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
        let created = created_time
            .map(|c| {
                if args.human {
                    human_age((now - c.with_timezone(&chrono::Utc)).num_seconds())
                } else {
                    c.to_rfc3339()
                }
            })
            .unwrap_or_else(|| "N/A".into());
        let created_at = created_time
            .map(|c| c.to_rfc3339())
            .unwrap_or_else(|| "N/A".into());
        let mut created_by = h["created_by"].as_str().unwrap_or_default().to_string();
        if !args.no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        let size = if args.human {
            human_size(size)
        } else {
            size.to_string()
        };
        rows.push(vec![
            "<missing>".to_string(),
            created,
            created_by,
            size,
            h["comment"].as_str().unwrap_or_default().to_string(),
            created_at,
        ]);
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top[0] = if args.no_trunc {
            listed.id().to_string()
        } else {
            listed.id().short().to_string()
        };
    }
    if args.quiet {
        for r in rows.iter().filter(|r| r[0] != "<missing>") {
            println!("{}", r[0]);
        }
        return Ok(());
    }
    match Format::parse(args.format.as_deref())? {
        Format::Default => {
            let header = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"];
            let mut table = vec![header.map(String::from).to_vec()];
            table.extend(rows.into_iter().map(|mut r| {
                r.truncate(5);
                r
            }));
            print!("{}", format_table(&table));
        }
        Format::Template(template) => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "ID": r[0],
                        "CreatedSince": r[1],
                        "CreatedBy": r[2],
                        "Size": r[3],
                        "Comment": r[4],
                        "CreatedAt": r[5],
                    })
                })
                .collect();
            print!("{}", template.render_all(HEADERS, &rows)?);
        }
    }
    Ok(())
}

/// docker's column titles of `history --format 'table …'`, by field.
const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];
