//! archive_command, restore_command and the archive's status. These run under PostgreSQL, as
//! its user, with no terminal: quiet on success, one clear line on stderr (the server log) on
//! failure, and non-zero for anything but a durable success.

use std::path::PathBuf;

use anyhow::{bail, Result};
use engine::connectors::postgres::{
    self,
    wal::{self, Spool, WalArchive},
};
use engine::connectors::Kind;

use crate::cli::{WalCommand, WalFetchArgs, WalPushArgs};
use crate::config::SourceConfig;
use crate::context::Context;
use crate::exit::{usage, NotArchived, Status};
use crate::output::{bytes, print_json};

/// The postgres source named, or the only one configured, with its spool directory.
fn source(ctx: &Context, named: Option<&str>) -> Result<(String, Option<PathBuf>)> {
    let spool_dir = |s: &SourceConfig| {
        s.section
            .parse::<postgres::connector::Settings>()
            .ok()
            .and_then(|p| p.wal_spool_dir)
    };
    let pg: Vec<(&String, &SourceConfig)> = ctx
        .config_file()
        .map(|c| &c.sources)
        .into_iter()
        .flatten()
        .filter(|(_, s)| s.kind == Kind::Postgres)
        .collect();
    if let Some(name) = named {
        let spool = pg
            .iter()
            .filter(|(n, _)| n.as_str() == name)
            .find_map(|(_, s)| spool_dir(s));
        return Ok((name.to_string(), spool));
    }
    match pg.as_slice() {
        [(name, s)] => Ok((name.to_string(), spool_dir(s))),
        [] => bail!(usage("no postgres source configured: pass --source NAME")),
        _ => bail!(usage(
            "several postgres sources are configured: pass --source NAME"
        )),
    }
}

/// The configured spool directory, else one in Bulwark's cache directory.
fn spool_base(configured: Option<PathBuf>) -> PathBuf {
    configured.unwrap_or_else(|| crate::access::cache_home().join("wal-spool"))
}

pub fn push(ctx: &Context, args: &WalPushArgs) -> Result<Status> {
    let (name, spool_dir) = source(ctx, args.source.as_deref())?;
    let target = ctx.target(None)?;
    let spool = Spool::open(&spool_base(spool_dir), &target.url, &name)?;
    if wal::pushed_before(&ctx.store(&target)?, &spool, &name, &args.path)? {
        return Ok(Status::Ok);
    }
    let repo = ctx.open_unattended(&target)?;
    let report = wal::push(&WalArchive::new(&repo, &name)?, &spool, &args.path)?;
    if ctx.json {
        print_json(&report)?;
    }
    Ok(Status::Ok)
}

pub fn fetch(ctx: &Context, args: &WalFetchArgs) -> Result<Status> {
    let (name, spool_dir) = source(ctx, args.source.as_deref())?;
    let target = ctx.target(None)?;
    let spool = Spool::open(&spool_base(spool_dir), &target.url, &name)?;
    if wal::fetch_read_ahead(&spool, &args.name, &args.dest)? {
        return Ok(Status::Ok);
    }
    let repo = ctx.open_unattended(&target)?;
    let archive = WalArchive::new(&repo, &name)?;
    if !wal::fetch(&archive, &spool, &args.name, &args.dest, args.allow_gap)? {
        // PostgreSQL asks past the newest WAL and for histories of timelines that never
        // existed; its log shows this line, so say that it is usually expected.
        bail!(NotArchived(format!(
            "{} is not in the WAL archive of '{name}' (expected when recovery looks past the newest archived WAL or for a timeline that does not exist)",
            args.name
        )));
    }
    Ok(Status::Ok)
}

pub fn run(ctx: &Context, command: &WalCommand) -> Result<Status> {
    match command {
        WalCommand::Status { source: named } => {
            let (name, _) = source(ctx, named.as_deref())?;
            let repo = ctx.open()?;
            let status = wal::status(&WalArchive::new(&repo, &name)?)?;
            if ctx.json {
                print_json(&status)?;
            } else {
                println!(
                    "WAL archive of '{}': {} file(s), {} stored",
                    status.source,
                    status.files,
                    bytes(status.stored_bytes)
                );
                for t in &status.timelines {
                    println!(
                        "  timeline {}: {} .. {} ({} segments)",
                        t.timeline, t.first, t.last, t.segments
                    );
                    for (a, b) in &t.gaps {
                        println!("    GAP: {a} .. {b} missing");
                    }
                }
                match (&status.newest, status.newest_age_secs) {
                    (Some(n), Some(age)) => {
                        println!("  newest segment {n}, archived {age:.0}s ago (the RPO if the server died now)")
                    }
                    _ => println!("  no segments archived yet"),
                }
            }
            let gaps = status.timelines.iter().any(|t| !t.gaps.is_empty());
            Ok(if gaps { Status::Damaged } else { Status::Ok })
        }
    }
}
