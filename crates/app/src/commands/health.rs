//! `health`: each configured source probed (through its connector) and its newest recovery
//! point in the repository. Exit 1 when a source cannot be reached.

use anyhow::Result;
use engine::connectors::Datastore;
use engine::recovery::survey::survey;

use crate::cli::HealthArgs;
use crate::context::Context;
use crate::exit::Status;

use crate::output::{local_time, print_json};

pub fn run(ctx: &Context, args: &HealthArgs) -> Result<Status> {
    let stack = ctx.stack()?;
    let chosen: Vec<&dyn Datastore> = stack
        .select(&args.sources)?
        .into_iter()
        .map(|m| m.datastore)
        .collect();
    let repo = ctx.open()?;
    let snapshots = ctx.snapshots(&repo)?;
    let states = survey(Some((&repo, &snapshots)), &chosen);
    if ctx.json {
        print_json(&states)?;
    } else {
        for s in &states {
            let h = &s.health;
            let what: Vec<&str> = [h.version.as_deref(), h.role.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            println!(
                "{} ({}): {}{}",
                s.source,
                s.kind,
                if h.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                },
                if what.is_empty() {
                    String::new()
                } else {
                    format!(", {}", what.join(", "))
                }
            );
            if let Some(e) = &h.error {
                println!("  error: {e}");
            }
            for w in &h.warnings {
                println!("  warning: {w}");
            }
            if let Some(e) = &s.recovery_point_error {
                println!(
                    "  warning: the recovery point beyond the newest snapshot is unknown: {e}"
                );
            }
            match (&s.recovery_point, s.recovery_point_age_secs) {
                (Some(p), Some(age)) => println!(
                    "  recoverable to {} ({:.0} min ago, from snapshot {} via {})",
                    local_time(p.time),
                    age / 60.0,
                    p.snapshot.short(),
                    p.via
                ),
                _ => println!("  no complete snapshot in the repository"),
            }
        }
    }
    Ok(if states.iter().all(|s| s.health.reachable) {
        Status::Ok
    } else {
        eprintln!("a source cannot be reached");
        Status::Failed
    })
}
