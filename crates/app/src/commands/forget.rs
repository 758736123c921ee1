use anyhow::{bail, Result};
use engine::catalog::{self, Policy};
use engine::lock::LockGuard;
use engine::store::ObjectKind;

use crate::cli::{ForgetArgs, KeepArgs, PruneArgs};
use crate::config::{parse_duration, Retention};
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
                max_unused: "20%".into(),
            },
        );
    }
    Ok(Status::Ok)
}

/// Flags win over the config file's [retention]; with no flags at all, the config applies.
fn policy(keep: &KeepArgs, config: Option<&Retention>) -> Result<Policy> {
    let flags = Policy {
        last: keep.keep_last,
        hourly: keep.keep_hourly,
        daily: keep.keep_daily,
        weekly: keep.keep_weekly,
        monthly: keep.keep_monthly,
        yearly: keep.keep_yearly,
        within: keep
            .keep_within
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| usage(format!("--keep-within: {e}")))?,
    };
    if !flags.is_empty() {
        return Ok(flags);
    }
    let Some(r) = config else {
        bail!(usage(
            "no retention policy: pass --keep-daily/--keep-weekly/... or configure [retention]"
        ));
    };
    Ok(Policy {
        last: r.keep_last,
        hourly: r.keep_hourly,
        daily: r.keep_daily,
        weekly: r.keep_weekly,
        monthly: r.keep_monthly,
        yearly: r.keep_yearly,
        within: r.keep_within.as_deref().map(parse_duration).transpose()?,
    })
}
