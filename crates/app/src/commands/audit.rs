//! `audit` and `audit verify`, and the audit entry every state-changing command leaves.

use anyhow::{anyhow, Result};
use jiff::Timestamp;

use crate::audit::{self, Entry, Event, Log};
use crate::cli::{AuditArgs, AuditCommand, Command, KeyCommand, RepairCommand};
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::{local_time, print_json};

pub fn run(ctx: &Context, args: &AuditArgs) -> Result<Status> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let repo = ctx.open()?;
    let (url, _) = ctx
        .opened_repository()
        .ok_or_else(|| anyhow!("the repository was not opened"))?;
    let log = Log::new(&ctx.state_dir());
    // Events that waited for the key (the daemon's) join the chain before it is read.
    log.record(&repo, &url, None, false)?;
    let (lines, seal) = log.read(&repo)?;
    match args.command {
        Some(AuditCommand::Verify) => verify(ctx, &log, &repo, &lines, seal),
        None => list(ctx, &lines, since),
    }
}

fn list(ctx: &Context, lines: &[String], since: Option<Timestamp>) -> Result<Status> {
    let entries: Vec<Entry> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| since.is_none_or(|s| e.body.event.time >= s))
        .collect();
    if ctx.json {
        print_json(&entries)?;
        return Ok(Status::Ok);
    }
    println!(
        "{:>5}  {:<19}  {:<24}  {:<12}  {:<30}  result",
        "#", "time", "who", "action", "target"
    );
    for e in &entries {
        let ev = &e.body.event;
        let who = match ev.via.as_str() {
            "cli" => ev.actor.clone(),
            via => format!("{} via {via}", ev.actor),
        };
        println!(
            "{:>5}  {:<19}  {:<24}  {:<12}  {:<30}  {}",
            e.body.seq,
            local_time(ev.time),
            who,
            ev.action,
            ev.target,
            ev.result
        );
    }
    Ok(Status::Ok)
}

fn verify(
    ctx: &Context,
    log: &Log,
    repo: &engine::repo::Repository,
    lines: &[String],
    seal: Option<audit::Seal>,
) -> Result<Status> {
    let verdict = audit::verify(lines, &repo.key().audit_key(), seal);
    if ctx.json {
        print_json(&serde_json::json!({
            "log": log.chain_path(repo),
            "ok": verdict.ok(),
            "verdict": verdict,
            "problems_text": verdict.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "audit log {}: {} entries, the newest {}",
            log.chain_path(repo).display(),
            verdict.entries,
            verdict.last
        );
        match &verdict.sealed {
            Some(s) => println!(
                "sealed into the repository up to entry {} at {}",
                s.seq,
                local_time(s.time)
            ),
            None => println!("no seal in the repository yet (one is written with every backup)"),
        }
        for p in &verdict.problems {
            println!("TAMPERED: {p}");
        }
        if verdict.ok() {
            println!("ok: every entry is intact, in order and linked");
        }
    }
    Ok(if verdict.ok() {
        Status::Ok
    } else {
        Status::Damaged
    })
}

fn parse_since(text: &str) -> Result<Timestamp> {
    if let Ok(age) = crate::config::parse_duration(text) {
        let age = jiff::SignedDuration::try_from(age)?;
        return Ok(Timestamp::now().checked_sub(age)?);
    }
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let zone = jiff::tz::TimeZone::system();
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(zone)?.timestamp());
    }
    if let Ok(d) = text.parse::<jiff::civil::Date>() {
        return Ok(d.to_zoned(zone)?.timestamp());
    }
    Err(usage(format!(
        "--since '{text}': not a time ('2026-12-01', '2026-12-01T08:00:00Z') or an age ('24h', '7d')"
    )))
}

/// What a command changes, as an audit action and its target; None for commands that only
/// read (or, like wal-push, run continuously and are accounted for by the WAL archive).
pub fn action(command: &Command) -> Option<(&'static str, String)> {
    let joined = |v: &[String]| v.join(", ");
    Some(match command {
        Command::Init(_) => ("init", String::new()),
        Command::Key(KeyCommand::Add { label }) => ("key add", label.clone()),
        Command::Key(KeyCommand::Remove { id }) => ("key remove", id.clone()),
        Command::Key(KeyCommand::Passwd) => ("key passwd", String::new()),
        Command::Backup(a) if a.targets.is_empty() => ("backup", "the configured sources".into()),
        Command::Backup(a) => ("backup", joined(&a.targets)),
        Command::Restore(a) => (
            "restore",
            format!(
                "{}{} to {}",
                a.snapshot,
                a.source
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
                a.target
                    .as_deref()
                    .unwrap_or(if a.sandbox { "a sandbox" } else { "its source" })
            ),
        ),
        Command::Forget(a) if !a.dry_run => ("forget", joined(&a.snapshots)),
        Command::Prune(a) if !a.dry_run => ("prune", String::new()),
        Command::Maintenance(a) if a.owner.is_some() || a.grace.is_some() => {
            ("maintenance", a.owner.clone().unwrap_or_default())
        }
        Command::Copy(a) => ("copy", format!("to {}", a.to)),
        Command::Drill(a) => (
            "drill",
            a.scenario.clone().unwrap_or_else(|| joined(&a.sources)),
        ),
        Command::Recover(a) if !a.dry_run => ("recover", a.scenario.clone()),
        Command::Repair(RepairCommand::Index { .. }) => ("repair index", String::new()),
        Command::Repair(RepairCommand::Snapshots { .. }) => ("repair snapshots", String::new()),
        Command::Unlock(_) => ("unlock", String::new()),
        _ => return None,
    })
}

/// Leaves the audit entry of a command that ran: chained (and, unless it only read, sealed
/// into the repository) when the command opened the repository, else pending. A failure to
/// record is a warning: the command's own result stands.
pub fn record(ctx: &Context, action: &str, target: &str, result: &Result<Status>) {
    let outcome = match result {
        Ok(Status::Ok) => "success".to_string(),
        Ok(status) => format!("{status:?}").to_lowercase(),
        Err(e) => format!("failed: {}", first_line(&format!("{e:#}"))),
    };
    let event = Event::now(action, target, &outcome);
    let log = Log::new(&ctx.state_dir());
    let recorded = match ctx.opened_repository() {
        Some((url, repo)) => log.record(&repo, &url, Some(&event), action != "restore"),
        None => match ctx.target(None) {
            Ok(t) => log.defer(&t.url, &event),
            // No repository at all: nothing to account for.
            Err(_) => return,
        },
    };
    if let Err(e) = recorded {
        eprintln!("warning: audit log: {e:#}");
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
