use anyhow::{bail, Context as _, Result};
use engine::catalog::{self, Policy, Snapshots};
use engine::lock::{LockGuard, LockKind};
use engine::store::ObjectKind;

use crate::cli::{ForgetArgs, KeepArgs, PruneArgs};
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::{local_time, print_json};

pub fn run(ctx: &Context, args: &ForgetArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let filter = args.filter.to_engine();
    let all = ctx.snapshots(&repo)?;
    let chosen = Snapshots {
        list: all
            .list
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect(),
        unreadable: all.unreadable,
    };
    let decisions = if args.snapshots.is_empty() {
        // Retention cannot judge snapshots it cannot read: one of them may be the only copy
        // of a day the policy keeps.
        if let Some(u) = chosen.unreadable.first() {
            bail!(engine::Error::corrupt(format!(
                "{u} ({} unreadable manifest(s)); retention refuses to decide without them. Forget damaged snapshots by id first",
                chosen.unreadable.len()
            )));
        }
        let policy = policy(&args.keep, ctx.config_file().map(|c| &c.retention))?;
        catalog::apply_policy(
            &chosen.list,
            &policy,
            jiff::Timestamp::now(),
            &jiff::tz::TimeZone::system(),
        )?
    } else {
        args.snapshots
            .iter()
            .map(|spec| named(&chosen, spec))
            .collect::<Result<Vec<_>>>()?
    };
    let removed: Vec<_> = decisions.iter().filter(|d| !d.keep).collect();
    // Decide, then act, then print: nothing is reported as removed that was not.
    if !args.dry_run && !removed.is_empty() {
        let _lock = LockGuard::acquire(&repo, LockKind::Shared, "forget", ctx.lock_wait)?;
        for d in &removed {
            repo.store().delete(ObjectKind::Snapshot, &d.id.to_hex())?;
        }
    }
    if !ctx.json {
        print_decisions(&decisions, removed.len(), args.dry_run);
    }
    // An interrupted `forget --prune` is finished by running it again: the prune runs even
    // when there is nothing left to forget.
    let pruned = match args.prune && !args.dry_run {
        true => {
            drop(repo);
            let prune = PruneArgs {
                dry_run: false,
                max_unused: 20.0,
                exclusive: false,
                grace: None,
            };
            Some(super::prune::execute(ctx, &prune).with_context(|| {
                format!(
                    "{} snapshot(s) were forgotten, but the prune step failed; run `bulwark prune` to free their data",
                    removed.len()
                )
            })?)
        }
        false => None,
    };
    if ctx.json {
        print_json(
            &serde_json::json!({ "dry_run": args.dry_run, "decisions": decisions, "prune": pruned }),
        )?;
    } else if let Some(p) = &pruned {
        super::prune::print(p);
    }
    Ok(Status::Ok)
}

fn print_decisions(decisions: &[catalog::Decision], removed: usize, dry_run: bool) {
    for d in decisions {
        let what = if d.keep {
            "keep  "
        } else if dry_run {
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
        "{} kept, {removed} {}",
        decisions.len() - removed,
        if dry_run {
            "would be removed"
        } else {
            "removed"
        }
    );
}

/// The snapshot `spec` names, readable or not: a damaged manifest can be forgotten by id.
fn named(snapshots: &Snapshots, spec: &str) -> Result<catalog::Decision> {
    let decision = |id, source: &str, host: &str, time| catalog::Decision {
        id,
        source: source.to_string(),
        host: host.to_string(),
        time,
        keep: false,
        reasons: vec!["named".into()],
    };
    match snapshots.resolve(spec, None) {
        Ok((id, s)) => Ok(decision(*id, &s.source.name, &s.hostname, s.time)),
        // The one error that says `spec` names exactly one damaged manifest.
        Err(e) if e.kind() == engine::ErrorKind::Corrupt => {
            let spec = spec.to_ascii_lowercase();
            let damaged = snapshots
                .unreadable
                .iter()
                .find(|u| u.name.starts_with(&spec));
            match damaged.and_then(|u| Some((u.id?, u.written))) {
                Some((id, written)) => Ok(decision(
                    id,
                    "<unreadable>",
                    "?",
                    written.unwrap_or_default(),
                )),
                None => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
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
