//! `strata completion SHELL` and `strata man DIR`: shell completions and man pages made
//! from the clap definitions in cli.rs, so they always list the flags the binary takes.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, Shell};

pub fn completion(shell: Shell) -> Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory first: clap_complete panics on a failed write, while `print!` ends on a
    // closed pipe as every other command does (quietly, SIGPIPE).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "strata", &mut script);
    print!("{}", String::from_utf8_lossy(&script));
    Ok(())
}

/// One page per command: `strata.1`, `strata-build.1`, `strata-image-ls.1`, ...
pub fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(())
}
