//! `strata system verify`: re-hash every blob, check every reference; print each
//! fault and exit 1 if there is any.

use anyhow::{Context, Result};

use super::Ctx;
use crate::output::{human_size, Exit};

pub fn run(ctx: &Ctx) -> Result<()> {
    let store = super::open_store(ctx)?;
    let report = store.verify().context("verifying the store")?;
    for f in &report.faults {
        println!("FAULT {}: {}", f.object, f.problem);
    }
    println!(
        "checked {} blobs ({}), {} images, {} tags: {}",
        report.blobs,
        human_size(report.bytes),
        report.images,
        report.tags,
        if report.faults.is_empty() {
            "ok".to_string()
        } else {
            format!("{} fault(s)", report.faults.len())
        }
    );
    if !report.faults.is_empty() {
        eprintln!(
            "strata: error: the store at {} has {} fault(s)",
            ctx.root.display(),
            report.faults.len()
        );
        return Err(Exit(1).into());
    }
    Ok(())
}
