//! `bulwark`: backup and disaster recovery for AI platforms.

mod access;
mod alerts;
mod audit;
mod cli;
mod commands;
mod config;
mod context;
mod cron;
mod daemon;
mod exit;
mod jobs;
mod output;
mod schedule;
mod web;

use clap::Parser;

fn main() -> std::process::ExitCode {
    limit_allocator_retention();
    exit_quietly_on_closed_stdout();
    let cli = cli::Cli::parse();
    output::init_logging(cli.quiet);
    let result = context::Context::new(&cli).and_then(|ctx| commands::run(&ctx, &cli.command));
    match result {
        Ok(status) => status.into(),
        // Interrupted while the sandboxes were being removed under the command's feet: the
        // error it then met is a consequence, the interruption is what happened.
        Err(err) if engine::connectors::sandbox::interrupted() => {
            eprintln!("interrupted ({err:#})");
            std::process::ExitCode::from(exit::INTERRUPTED)
        }
        Err(err) if matches!(cli.command, cli::Command::WalFetch(_)) => {
            exit::report_restore_command(&err, cli.json)
        }
        Err(err) => exit::report(&err, cli.json),
    }
}

/// `bulwark ls | head`: once the reader goes away, printing fails with EPIPE and `println!`
/// panics. That is not an error worth a backtrace; exit like other Unix tools do. (SIGPIPE
/// itself stays ignored, so a dump tool dying on our pipe is an error we report, not our death.)
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Big buffers (packs, chunks over 4 MiB) go to mmap, so the ones freed return to the system
/// at once. glibc would otherwise raise its mmap threshold after the first such free and keep
/// freed megabytes in per-thread arenas: peak RSS nearly doubled in the benchmark. The backup
/// pipeline reuses its buffers (`engine::buffers`), so this costs it no page faults.
fn limit_allocator_retention() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}
