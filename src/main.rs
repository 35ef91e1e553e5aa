//! The `strata` binary: parse the command line, run one command, turn the result into an
//! exit code. Everything else lives in the library crates (`store`, `builder`,
//! `registry-client`) and in `commands/`, one file per command family.
//!
//! Exit codes follow the docker CLI: 0 ok, 1 error, 2 usage (clap's own code for bad flags;
//! ours for a bad image reference or other bad argument).

mod cli;
mod commands;
mod output;
mod progress;
mod rootless;
mod template;

use clap::Parser;
use cli::{BuilderCommand, Cli, Command, ImageCommand, ManifestCommand, SystemCommand};
use commands::Ctx;

fn main() {
    output::die_of_sigpipe_on_closed_stdout();
    // First, while single-threaded: a non-root user's strata becomes root in a user namespace.
    if let Err(err) = rootless::enter_user_namespace() {
        std::process::exit(output::report_error(&err, false));
    }
    let cli = Cli::parse();
    let ctx = match Ctx::from_cli(&cli) {
        Ok(ctx) => ctx,
        Err(err) => std::process::exit(output::report_error(&err, cli.debug)),
    };
    let result = match &cli.command {
        Command::Build(args) => commands::build::run(&ctx, args),
        Command::Images(args) => commands::images::run(&ctx, args),
        Command::Tag(args) => commands::tag::run(&ctx, args),
        Command::Rmi(args) => commands::rmi::run(&ctx, args),
        Command::Inspect(args) => commands::inspect::run(&ctx, args),
        Command::History(args) => commands::history::run(&ctx, args),
        Command::Import(args) => commands::import::run(&ctx, args),
        Command::Save(args) => commands::save::run(&ctx, args),
        Command::Load(args) => commands::load::run(&ctx, args),
        Command::Pull(args) => commands::pull::run(&ctx, args),
        Command::Push(args) => commands::push::run(&ctx, args),
        Command::Login(args) => commands::login::login(&ctx, args),
        Command::Logout(args) => commands::login::logout(&ctx, args),
        Command::Image(ImageCommand::Prune(args)) => commands::prune::image_prune(&ctx, args),
        Command::Image(ImageCommand::Ls(args)) => commands::images::run(&ctx, args),
        Command::Image(ImageCommand::Rm(args)) => commands::rmi::run(&ctx, args),
        Command::Image(ImageCommand::Inspect(args)) => commands::inspect::run(&ctx, args),
        Command::Image(ImageCommand::Tag(args)) => commands::tag::run(&ctx, args),
        Command::Image(ImageCommand::Save(args)) => commands::save::run(&ctx, args),
        Command::Image(ImageCommand::Load(args)) => commands::load::run(&ctx, args),
        Command::Image(ImageCommand::History(args)) => commands::history::run(&ctx, args),
        Command::Image(ImageCommand::Import(args)) => commands::import::run(&ctx, args),
        Command::Image(ImageCommand::Pull(args)) => commands::pull::run(&ctx, args),
        Command::Image(ImageCommand::Push(args)) => commands::push::run(&ctx, args),
        Command::Image(ImageCommand::Copy(args)) => commands::copy::run(&ctx, args),
        Command::Builder(BuilderCommand::Prune(args)) => commands::prune::builder_prune(&ctx, args),
        Command::System(SystemCommand::Prune(args)) => commands::prune::system_prune(&ctx, args),
        Command::System(SystemCommand::Df(args)) => commands::system::df(&ctx, args),
        Command::System(SystemCommand::Verify) => commands::verify::run(&ctx),
        Command::Manifest(ManifestCommand::Inspect(args)) => {
            commands::manifest::inspect(&ctx, args)
        }
        Command::Completion(args) => commands::docs::completion(args.shell),
        Command::Man(args) => commands::docs::man(&args.dir),
        Command::Version => {
            println!("strata version {}", cli::VERSION);
            Ok(())
        }
    };
    match result {
        Ok(()) => {}
        Err(err) => std::process::exit(output::report_error(&err, cli.debug)),
    }
}
