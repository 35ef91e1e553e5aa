//! `strata binfmt`: the platforms this machine runs, natively or through a binfmt_misc
//! handler (what a multi-platform build checks before it starts), and `strata binfmt
//! install`, which registers qemu-user-static's emulators when asked to (docs/design.md §5).

use std::path::Path;

use anyhow::{Context, Result};
use builder::exec::binfmt::{self, Support, BINFMT_MISC};
use builder::exec::binfmt_install::{self, Installed, DEBIAN_BINFMTS};
use store::platform::Platform;

use crate::cli::{BinfmtArgs, BinfmtCommand, BinfmtInstallArgs};
use crate::output::format_table;

pub fn run(args: &BinfmtArgs) -> Result<()> {
    match &args.command {
        None => list(),
        Some(BinfmtCommand::Install(install)) => self::install(install),
    }
}

/// `PLATFORM  EMULATOR  INTERPRETER  FLAGS`, one row per platform that runs here.
fn list() -> Result<()> {
    let dir = Path::new(BINFMT_MISC);
    if !dir.join("status").exists() {
        eprintln!("binfmt_misc is not mounted on {BINFMT_MISC}: only native platforms run here (`strata binfmt install` mounts it)");
    }
    let mut rows = vec![vec![
        "PLATFORM".to_string(),
        "EMULATOR".to_string(),
        "INTERPRETER".to_string(),
        "FLAGS".to_string(),
    ]];
    for (platform, support) in binfmt::supported(dir) {
        rows.push(match support {
            Support::Native => vec![platform.to_string(), "(native)".into()],
            Support::Emulated(h) => vec![platform.to_string(), h.name, h.interpreter, h.flags],
        });
    }
    print!("{}", format_table(&rows));
    Ok(())
}

fn install(args: &BinfmtInstallArgs) -> Result<()> {
    let share = Path::new(DEBIAN_BINFMTS);
    let explicit = !args.platforms.is_empty();
    let platforms: Vec<Platform> = if explicit {
        args.platforms
            .iter()
            .map(|p| Platform::parse(p).map_err(|e| crate::output::UsageError(e.to_string())))
            .collect::<std::result::Result<_, _>>()?
    } else {
        // Every foreign platform the package describes.
        binfmt::foreign_platforms()
            .into_iter()
            .filter(|p| binfmt_install::debian_registration(p, share).is_ok())
            .collect()
    };
    if platforms.is_empty() {
        anyhow::bail!(
            "no QEMU binfmt entries in {DEBIAN_BINFMTS}: install QEMU user emulation (`apt-get install {}`)",
            binfmt::QEMU_PACKAGE
        );
    }
    let dir = Path::new(BINFMT_MISC);
    binfmt_install::mount_if_needed(dir)?;
    for platform in &platforms {
        match binfmt_install::install(platform, dir, share)
            .with_context(|| format!("installing an emulator for {platform}"))?
        {
            Installed::Registered(name) => println!("{platform}: registered {name}"),
            Installed::Native => println!("{platform}: runs natively"),
            Installed::AlreadyRegistered(name) => {
                println!("{platform}: already registered ({name})")
            }
        }
    }
    Ok(())
}
