//! `strata rmi IMAGE...`: untag; delete the image record once nothing names it.
//! Like docker, each argument is handled on its own and the exit code is 1 if any
//! failed. Blobs stay until `strata system prune`.

use anyhow::Result;

use super::Ctx;
use crate::cli::RmiArgs;
use crate::output::{report_error, Exit};

pub fn run(ctx: &Ctx, args: &RmiArgs) -> Result<()> {
    let store = super::open_store(ctx)?;
    let mut worst = 0;
    for input in &args.images {
        let result = check_input(input).and_then(|()| {
            store.remove_image(input, args.force).map_err(|e| match e {
                store::StoreError::InvalidReference(e) => {
                    anyhow::Error::new(crate::output::UsageError(e.to_string()))
                }
                e => e.into(),
            })
        });
        match result {
            Ok(events) => {
                for e in events {
                    match e {
                        store::Removed::Untagged(r) => println!("Untagged: {}", r.familiar()),
                        store::Removed::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(err) => worst = worst.max(report_error(&err, ctx.debug)),
        }
    }
    if worst != 0 {
        return Err(Exit(worst).into());
    }
    Ok(())
}

fn check_input(input: &str) -> Result<()> {
    if input.is_empty() {
        anyhow::bail!(crate::output::UsageError("empty image name".into()));
    }
    Ok(())
}
