//! `restore` of a Redis snapshot: into a running server (redis://), into a directory
//! (optionally started), or into a throwaway sandbox; then compared with the backup.

use std::path::PathBuf;

use anyhow::Result;
use engine::connectors::redis::restore::{self, DirOptions, Existing, LiveOptions};
use engine::connectors::redis::verify::VerifyReport;
use engine::connectors::redis::RedisUrl;
use engine::repo::Repository;
use engine::snapshot::Snapshot;

use super::restore::{show, target_arg, verdict};
use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::bytes;

pub fn run(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Repository,
    id: &str,
    snap: &Snapshot,
) -> Result<Status> {
    if !args.include.is_empty() {
        return Err(usage("--include does not apply to Redis snapshots"));
    }
    if args.sandbox {
        return sandbox(ctx, args, repo, id, snap);
    }
    let target = target_arg(args)?;
    if target.starts_with("redis://") || target.starts_with("rediss://") {
        live(ctx, args, repo, id, snap, target)
    } else {
        dir(ctx, args, repo, id, snap, PathBuf::from(target))
    }
}

fn live(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Repository,
    id: &str,
    snap: &Snapshot,
    target: &str,
) -> Result<Status> {
    if args.start {
        return Err(usage("--start applies to a directory target"));
    }
    let r = &args.redis;
    let existing = match (r.flush, r.replace, r.skip_existing) {
        (true, ..) => Existing::Flush,
        (_, true, _) => Existing::Replace,
        (.., true) => Existing::Skip,
        _ => Existing::Refuse,
    };
    let url = RedisUrl::parse(target)?.with_password(std::env::var("REDISCLI_AUTH").ok());
    let view = ctx.progress("restore");
    let opts = LiveOptions {
        existing,
        dry_run: args.dry_run,
        verify: !args.no_verify,
        sample: args.sample,
        progress: view.reporter(),
    };
    let report = restore::restore_live(repo, snap, &url, &opts);
    view.finish();
    let report = report?;
    show(ctx, &id, &report, |report| {
        if args.dry_run {
            println!(
                "would restore {} key(s) and {} function librar(ies) from snapshot {id} into {}",
                report.restored, report.functions, report.target
            );
        } else {
            println!(
                "restored {} key(s) from snapshot {id} into {} in {:.1}s ({:.0} keys/s); {} expired meanwhile, {} kept as they were, {} module value(s) skipped, {} function librar(ies)",
                report.restored,
                report.target,
                report.duration_secs,
                report.keys_per_sec,
                report.expired,
                report.kept_existing,
                report.skipped_modules,
                report.functions
            );
            for f in &report.failures {
                println!("  FAILED {f}");
            }
            if let Some(v) = &report.verify {
                print_verify(v);
            }
        }
    })?;
    let status = checked(report.verify.as_ref());
    if status != Status::Ok {
        return Ok(status);
    }
    if report.failed > 0 || report.skipped_modules > 0 {
        eprintln!(
            "{} key(s) failed and {} module value(s) were skipped",
            report.failed, report.skipped_modules
        );
        return Ok(Status::Partial);
    }
    Ok(Status::Ok)
}

fn dir(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Repository,
    id: &str,
    snap: &Snapshot,
    target: PathBuf,
) -> Result<Status> {
    if args.redis.flush || args.redis.replace || args.redis.skip_existing {
        return Err(usage(
            "--flush, --replace and --skip-existing apply to a redis:// target",
        ));
    }
    if args.dry_run {
        return Err(usage(
            "--dry-run applies to a redis:// target; a directory restore needs an empty directory and changes nothing else",
        ));
    }
    let view = ctx.progress("restore");
    let opts = DirOptions {
        target,
        start: args.start,
        port: args.port,
        verify: !args.no_verify,
        sample: args.sample,
        progress: view.reporter(),
    };
    let report = restore::restore_dir(repo, snap, &opts);
    view.finish();
    let report = report?;
    show(ctx, &id, &report, |report| {
        println!(
            "restored snapshot {id} to {}: {} file(s), {} in {:.1}s",
            report.target.display(),
            report.files,
            bytes(report.bytes),
            report.layout_secs
        );
        if let (Some(port), Some(secs)) = (report.port, report.load_secs) {
            println!(
                "redis-server runs on 127.0.0.1:{port} (loaded in {secs:.1}s); stop it with: redis-cli -p {port} shutdown"
            );
        }
        if let Some(v) = &report.verify {
            print_verify(v);
        }
    })?;
    Ok(checked(report.verify.as_ref()))
}

fn sandbox(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Repository,
    id: &str,
    snap: &Snapshot,
) -> Result<Status> {
    let view = ctx.progress("sandbox");
    let work = args.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = restore::sandbox(repo, snap, &work, args.sample, &view.reporter());
    view.finish();
    let report = report?;
    show(ctx, &id, &report, |report| {
        println!(
            "sandbox restore of snapshot {id}: {} key(s), {} laid out in {:.1}s, loaded in {:.1}s, ready after {:.1}s",
            report.keys,
            bytes(report.bytes),
            report.layout_secs,
            report.load_secs,
            report.ready_secs
        );
        print_verify(&report.verify);
    })?;
    Ok(checked(Some(&report.verify)))
}

/// Exit 7 when a verification ran and found a difference.
fn checked(v: Option<&VerifyReport>) -> Status {
    verdict(v.is_none_or(VerifyReport::ok))
}

fn print_verify(v: &VerifyReport) {
    for d in &v.databases {
        let range = match d.expected_max {
            Some(max) if max != d.expected_min => format!("{}..{}", d.expected_min, max),
            Some(max) => max.to_string(),
            None => format!("at least {}", d.expected_min),
        };
        println!(
            "  db {}: {} key(s), expected {range}{}",
            d.db,
            d.actual,
            if d.ok { "" } else { "  MISMATCH" }
        );
    }
    println!(
        "  {} sampled key(s) compared by type, TTL and value ({} left out: expiring now), {} mismatch(es)",
        v.sampled,
        v.uncertain,
        v.mismatches.len()
    );
    for m in &v.mismatches {
        println!("  MISMATCH db {} key {}: {}", m.db, m.key, m.problem);
    }
    if let Some(c) = &v.census_mismatch {
        println!("  MISMATCH {c}");
    }
}
