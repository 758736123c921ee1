//! `bulwark`: backup and disaster recovery for AI platforms.

mod cli;
mod commands;
mod config;
mod context;
mod exit;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    output::init_logging(cli.quiet);
    let result = context::Context::new(&cli).and_then(|ctx| commands::run(&ctx, &cli.command));
    match result {
        Ok(status) => status.into(),
        Err(err) => exit::report(&err, cli.json),
    }
}
