use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use engine::catalog::Snapshots;
use engine::connectors::postgres::pitr::{PitrOptions, PitrReport, RecoveryTarget};
use engine::connectors::postgres::pitr_check;
use engine::connectors::postgres::verify::TableStats;
use engine::connectors::postgres::{logical, PgConn, PgFacts};
use engine::repo::Repository;
use engine::restore::RestoreOptions;
use engine::snapshot::Snapshot;

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::{bytes, print_json};

pub fn run(ctx: &Context, args: &RestoreArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let list = ctx.snapshots(&repo)?;
    if args.postgres.pitr {
        return pitr(ctx, args, &repo, &list);
    }
    let (id, snap) = list.resolve(&args.snapshot, args.source.as_deref())?;
    if snap.source.kind == "redis" {
        return super::restore_redis::run(ctx, args, &repo, &id.short(), snap);
    }
    if snap.source.kind == "qdrant" {
        return super::restore_qdrant::run(ctx, args, &repo, &id.short(), snap);
    }
    if args.sandbox {
        return Err(usage(
            "--sandbox restores Redis snapshots (PostgreSQL drills use --pitr --start --no-archive)",
        ));
    }
    if args.start {
        return Err(usage(
            "--start applies to --pitr and to Redis snapshots restored into a directory",
        ));
    }
    let target = target_arg(args)?;
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        return postgres(ctx, args, &repo, &id.short(), snap);
    }
    let target = PathBuf::from(target);
    let view = ctx.progress("restore");
    let opts = RestoreOptions {
        target: target.clone(),
        include: args.include.clone(),
        subtree: None,
        dry_run: args.dry_run,
        threads: 0,
        progress: view.reporter(),
    };
    let summary = engine::restore::restore(&repo, snap, &opts);
    view.finish();
    let summary = summary?;
    if ctx.json {
        print_json(
            &serde_json::json!({ "snapshot": id, "target": target, "dry_run": args.dry_run, "summary": summary }),
        )?;
    } else {
        let verb = if args.dry_run {
            "would restore"
        } else {
            "restored"
        };
        println!(
            "{verb} snapshot {} of '{}' to {}: {} files, {} dirs, {} symlinks, {} in {:.1}s",
            id.short(),
            snap.source.name,
            target.display(),
            summary.files,
            summary.dirs,
            summary.symlinks,
            bytes(summary.bytes),
            summary.duration_secs
        );
        for e in &summary.errors {
            eprintln!("error: {}: {}", e.path, e.message);
        }
    }
    if summary.item_list_damaged.is_some() {
        eprintln!(
            "the snapshot's item list is damaged: the files it lists before the damage were restored and verified; those after it are unknown and NOT restored"
        );
        return Ok(Status::Damaged);
    }
    if !summary.errors.is_empty() {
        eprintln!(
            "{} file(s) could NOT be restored; every other file was verified against its chunk ids",
            summary.errors.len()
        );
        return Ok(Status::Partial);
    }
    if snap.summary.partial {
        eprintln!(
            "snapshot {} is partial: {} item(s) could not be backed up and are not in it:",
            id.short(),
            snap.summary.errors.len()
        );
        for e in &snap.summary.errors {
            eprintln!("  {}: {}", e.path, e.message);
        }
        return Ok(Status::Partial);
    }
    Ok(Status::Ok)
}

/// Prints a restore's report: `{"snapshot", "report"}` as JSON, or as text by `text`.
pub fn show<T: serde::Serialize>(
    ctx: &Context,
    id: &impl serde::Serialize,
    report: &T,
    text: impl FnOnce(&T),
) -> Result<()> {
    if ctx.json {
        print_json(&serde_json::json!({ "snapshot": id, "report": report }))?;
    } else {
        text(report);
    }
    Ok(())
}

/// The status of a restore that was compared with the backup: a difference is exit 7.
pub fn verdict(matches: bool) -> Status {
    if matches {
        Status::Ok
    } else {
        eprintln!("the restored data differs from the backup");
        Status::Mismatch
    }
}

/// `--target`, which clap requires unless `--sandbox` is given.
pub fn target_arg(args: &RestoreArgs) -> Result<&str> {
    args.target
        .as_deref()
        .ok_or_else(|| usage("--target is required"))
}

/// Point-in-time recovery into a data directory.
fn pitr(ctx: &Context, args: &RestoreArgs, repo: &Repository, list: &Snapshots) -> Result<Status> {
    let pg = &args.postgres;
    let has_base = |s: &Snapshot| PgFacts::of(s).is_ok_and(|f| f.physical.is_some());
    let (id, snap) = match (&pg.target_time, args.snapshot.as_str()) {
        (Some(t), "latest") => {
            let when = pitr_check::parse_time(t)?;
            list.list
                .iter()
                .filter(|(_, s)| args.source.as_ref().is_none_or(|n| &s.source.name == n))
                .filter(|(_, s)| has_base(s) && s.time < when)
                .max_by_key(|(_, s)| s.time)
                .ok_or_else(|| anyhow!("no base backup finished before {t}"))?
        }
        _ => list.resolve(&args.snapshot, args.source.as_deref())?,
    };
    if !has_base(snap) {
        bail!(usage(format!(
            "snapshot {} holds no base backup",
            id.short()
        )));
    }
    let target = match (
        &pg.target_time,
        &pg.target_lsn,
        &pg.target_xid,
        &pg.target_name,
    ) {
        (Some(t), ..) => RecoveryTarget::Time(t.clone()),
        (_, Some(l), ..) => RecoveryTarget::Lsn(l.clone()),
        (_, _, Some(x), _) => RecoveryTarget::Xid(x.clone()),
        (.., Some(n)) => RecoveryTarget::Name(n.clone()),
        _ => RecoveryTarget::Latest,
    };
    let mut fetch = format!(
        "{} wal-fetch --source '{}' %f %p",
        ctx.self_command(&ctx.target(None)?)?,
        snap.source.name
    );
    if pg.allow_gap {
        fetch.push_str(" --allow-gap");
    }
    let view = ctx.progress("pitr");
    let opts = PitrOptions {
        target_dir: PathBuf::from(target_arg(args)?),
        target: Some(target),
        restore_command: fetch,
        no_archive: pg.no_archive,
        start: args.start,
        allow_gap: pg.allow_gap,
        timeline: pg.target_timeline,
        dry_run: args.dry_run,
        port: args.port,
        bin_dir: pg.pg_bin_dir.clone(),
        timeout: None,
        progress: view.reporter(),
    };
    let report = engine::connectors::postgres::pitr::restore_pitr(repo, snap, &opts);
    view.finish();
    let report = report?;
    show(ctx, &id, &report, |report| {
        print_pitr(&id.short(), report, args.dry_run)
    })?;
    if report.short_by_request() {
        eprintln!(
            "recovery stops at a gap in the WAL archive (--allow-gap): later WAL is not replayed"
        );
        return Ok(Status::Partial);
    }
    Ok(Status::Ok)
}

fn print_pitr(id: &str, report: &PitrReport, dry_run: bool) {
    let plan = &report.plan;
    let timelines: Vec<String> = plan
        .chain
        .path
        .iter()
        .map(|s| s.timeline.to_string())
        .collect();
    println!(
        "WAL chain: {} .. {} ({} segments, timeline {}){}",
        plan.chain.first_segment,
        plan.chain.last_segment,
        plan.chain.segments,
        timelines.join(" -> "),
        if plan.chain.complete() {
            ", all archived".to_string()
        } else {
            format!(
                "; MISSING {}",
                plan.chain
                    .missing
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if let Some(seg) = &plan.stops_at_gap {
        println!("replay can reach segment {seg} at most (--allow-gap)");
    }
    if dry_run {
        println!(
            "would lay out base backup {id} (started {}) in {}",
            report.base_backup_start,
            report.data_dir.display()
        );
        return;
    }
    println!(
        "base backup {id} (started {}) laid out in {}: {} files, {} in {:.1}s",
        report.base_backup_start,
        report.data_dir.display(),
        report.files,
        bytes(report.bytes),
        report.layout_secs
    );
    match (report.recovery_secs, report.timeline, &report.replay_end) {
        (Some(secs), Some(tli), Some(end)) => println!(
            "recovered and promoted in {secs:.1}s: replay ended at {} on timeline {} ({}); the server runs on timeline {tli}",
            end.lsn, end.timeline, end.reason
        ),
        _ => println!(
            "recovery is configured; start the server (pg_ctl -D {} start) to replay the WAL",
            report.data_dir.display()
        ),
    }
}

/// A logical PostgreSQL snapshot into a running server, then row counts and checksums compared.
fn postgres(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Repository,
    id: &str,
    snap: &Snapshot,
) -> Result<Status> {
    if !args.include.is_empty() {
        return Err(usage(
            "--include applies to directory targets; use --database for PostgreSQL",
        ));
    }
    let pg = &args.postgres;
    let configured = ctx
        .config_file()
        .and_then(|c| c.sources.get(&snap.source.name))
        .and_then(|s| s.bin_dir.clone());
    let target =
        PgConn::parse(target_arg(args)?)?.with_bin_dir(pg.pg_bin_dir.clone().or(configured));
    let view = ctx.progress("restore");
    let opts = logical::RestoreOptions {
        databases: pg.database.clone(),
        create: pg.create,
        clean: pg.clean,
        globals: pg.globals,
        replace_passwords: pg.replace_passwords,
        jobs: pg.jobs as usize,
        spool_dir: args.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
        verify: !args.no_verify,
        dry_run: args.dry_run,
        progress: view.reporter(),
    };
    let report = logical::restore(repo, snap, &target, &opts);
    view.finish();
    let report = report?;
    let mismatched: usize = report.databases.iter().map(|d| d.mismatches.len()).sum();
    if ctx.json {
        print_json(
            &serde_json::json!({ "snapshot": id, "target": target.describe(), "dry_run": args.dry_run, "report": report }),
        )?;
    } else {
        if let Some(skipped) = &report.globals_skipped {
            if let Some(role) = &skipped.connecting_role {
                println!("globals: kept the attributes and password of {role}, the role this restore connects as");
            }
            if !skipped.kept_passwords.is_empty() {
                println!(
                    "globals: roles already on the target kept their passwords (--replace-passwords to change them): {}",
                    skipped.kept_passwords.join(", ")
                );
            }
        }
        for e in &report.globals_errors {
            println!("  globals: {e}");
        }
        for d in &report.databases {
            let verb = if args.dry_run {
                "would restore"
            } else {
                "restored"
            };
            println!(
                "{verb} database {} ({:?}, {}) to {} in {:.1}s; {} table(s) verified, {} mismatch(es)",
                d.database,
                d.action,
                bytes(d.bytes),
                target.describe(),
                d.duration_secs,
                d.tables_verified,
                d.mismatches.len()
            );
            for m in &d.mismatches {
                let show = |s: &Option<_>| {
                    s.as_ref()
                        .map_or("missing".to_string(), |s: &TableStats| s.to_string())
                };
                println!(
                    "  MISMATCH {}: backup {}, restored {}",
                    m.table,
                    show(&m.expected),
                    show(&m.actual)
                );
            }
        }
    }
    if mismatched > 0 {
        eprintln!("{mismatched} table(s) differ from the figures recorded at backup time");
        return Ok(Status::Mismatch);
    }
    Ok(Status::Ok)
}
