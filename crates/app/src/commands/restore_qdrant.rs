//! `restore` of a Qdrant snapshot into a running server, each collection under a new name
//! unless told otherwise, then compared with the fingerprint taken at backup time.

use anyhow::Result;
use engine::connectors::qdrant::api::Client;
use engine::connectors::qdrant::restore::{self, RestoreOptions};
use engine::connectors::qdrant::Mode;
use engine::repo::Repository;
use engine::snapshot::Snapshot;

use super::restore::{show, target_arg, verdict};
use crate::cli::{QdrantMode, RestoreArgs, SnapshotPriority};
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
    let ignored = [
        (!args.include.is_empty(), "--include"),
        (args.sandbox, "--sandbox"),
        (args.start, "--start"),
        (args.redis.flush, "--flush"),
        (args.redis.skip_existing, "--skip-existing"),
    ];
    if let Some((_, flag)) = ignored.iter().find(|(on, _)| *on) {
        return Err(usage(format!("{flag} does not apply to Qdrant snapshots")));
    }
    let target = target_arg(args)?;
    if !(target.starts_with("http://") || target.starts_with("https://")) {
        return Err(usage(format!(
            "a Qdrant snapshot restores into a server: --target http://host:port (not '{target}')"
        )));
    }
    let q = &args.qdrant;
    if !(0.0..=1.0).contains(&q.min_overlap) {
        return Err(usage("--min-overlap is a fraction between 0 and 1"));
    }
    let client = Client::new(target, std::env::var("QDRANT_API_KEY").ok())?;
    let view = ctx.progress("restore");
    let opts = RestoreOptions {
        collections: q.collection.clone(),
        target_collection: q.target_collection.clone(),
        replace: args.redis.replace,
        mode: q.mode.map(|m| match m {
            QdrantMode::Logical => Mode::Logical,
            QdrantMode::Snapshot => Mode::Snapshot,
        }),
        priority: match q.priority {
            SnapshotPriority::Snapshot => "snapshot",
            SnapshotPriority::Replica => "replica",
            SnapshotPriority::NoSync => "no_sync",
        }
        .to_string(),
        verify: !args.no_verify,
        min_overlap: q.min_overlap,
        dry_run: args.dry_run,
        progress: view.reporter(),
    };
    let report = restore::restore(repo, snap, &client, &opts);
    view.finish();
    let report = report?;
    show(ctx, &id, &report, |report| {
        for c in &report.collections {
            let how = format!("{:?}", c.mode).to_lowercase();
            if report.dry_run {
                println!(
                    "would restore '{}' ({how}, {} point(s)) from snapshot {id} as '{}' on {}{}",
                    c.source,
                    c.points,
                    c.target,
                    report.target,
                    if c.replaced { ", replacing it" } else { "" }
                );
                continue;
            }
            println!(
                "restored '{}' from snapshot {id} as '{}' on {} ({how}): {} point(s), {} in {:.1}s ({:.0} points/s){}",
                c.source,
                c.target,
                report.target,
                c.points,
                bytes(c.bytes),
                c.secs,
                c.points_per_sec,
                if c.replaced { "; the previous collection was replaced" } else { "" }
            );
            if !c.aliases.is_empty() {
                println!("  aliases restored: {}", c.aliases.join(", "));
            }
            for w in &c.warnings {
                println!("  warning: {w}");
            }
            if let Some(v) = &c.verify {
                let range = if v.expected_min == v.expected_max {
                    v.expected_min.to_string()
                } else {
                    format!("{}..{}", v.expected_min, v.expected_max)
                };
                println!(
                    "  {} point(s), expected {range}{}",
                    v.points,
                    if v.count_ok { "" } else { "  MISMATCH" }
                );
                println!(
                    "  {} sampled point(s) compared by vector and payload, {} mismatch(es)",
                    v.sampled,
                    v.mismatches.len()
                );
                for m in &v.mismatches {
                    println!("  MISMATCH {m}");
                }
                println!(
                    "  {} exact top-10 search(es): overlap min {:.2}, mean {:.2} (threshold {:.2})",
                    v.queries, v.min_overlap, v.mean_overlap, v.threshold
                );
                for l in &v.low_overlap {
                    println!("  LOW {l}");
                }
                for n in &v.notes {
                    println!("  note: {n}");
                }
            }
        }
    })?;
    Ok(verdict(report.verified_ok()))
}
