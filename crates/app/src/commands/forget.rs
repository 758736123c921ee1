use anyhow::{bail, Result};
use engine::catalog::{self, Policy};
use engine::lock::LockGuard;
use engine::store::ObjectKind;

use crate::cli::{ForgetArgs, KeepArgs, PruneArgs};
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::{local_time, print_json};

pub fn run(ctx: &Context, args: &ForgetArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let filter = args.filter.to_engine();
    let all = engine::snapshot::list(&repo)?;
    let list: Vec<_> = all
        .iter()
        .filter(|(_, s)| filter.matches(s))
        .cloned()
        .collect();
    let decisions = if args.snapshots.is_empty() {
        let policy = policy(&args.keep, ctx.config_file().map(|c| &c.retention))?;
        catalog::apply_policy(
            &list,
            &policy,
            jiff::Timestamp::now(),
            &jiff::tz::TimeZone::system(),
        )?
    } else {
        let mut out = Vec::new();
        for spec in &args.snapshots {
            let (id, s) = catalog::resolve(&list, spec, None)?;
            out.push(catalog::Decision {
                id: *id,
                source: s.source.name.clone(),
                host: s.hostname.clone(),
                time: s.time,
                keep: false,
                reasons: vec!["named".into()],
            });
        }
        out
    };
    let removed: Vec<_> = decisions.iter().filter(|d| !d.keep).collect();
    if ctx.json {
        print_json(&serde_json::json!({ "dry_run": args.dry_run, "decisions": decisions }))?;
    } else {
        for d in &decisions {
            let what = if d.keep {
                "keep  "
            } else if args.dry_run {
                "would remove"
            } else {
                "remove"
            };
            println!(
                "{what} {} {} {:<14} {}",
                d.id.short(),
                local_time(d.time),
                d.source,
                d.reasons.join(", ")
            );
        }
        println!(
            "{} kept, {} {}",
            decisions.len() - removed.len(),
            removed.len(),
            if args.dry_run {
                "would be removed"
            } else {
                "removed"
            }
        );
    }
    if args.dry_run || removed.is_empty() {
        return Ok(Status::Ok);
    }
    {
        let _lock = LockGuard::acquire(&repo, true, "forget")?;
        for d in &removed {
            repo.store().delete(ObjectKind::Snapshot, &d.id.to_hex())?;
        }
    }
    if args.prune {
        drop(repo);
        return super::prune::run(
            ctx,
            &PruneArgs {
                dry_run: false,
                max_unused: 20.0,
            },
        );
    }
    Ok(Status::Ok)
}

/// Flags win over the config file's [retention]; with no flags at all, the config applies.
fn policy(keep: &KeepArgs, config: Option<&KeepArgs>) -> Result<Policy> {
    let flags = keep
        .to_policy()
        .map_err(|e| usage(format!("--keep-within: {e}")))?;
    if !flags.is_empty() {
        return Ok(flags);
    }
    match config {
        Some(retention) => retention.to_policy(),
        None => bail!(usage(
            "no retention policy: pass --keep-daily/--keep-weekly/... or configure [retention]"
        )),
    }
}
