//! `restore`: the snapshot's connector restores it (or a sandbox of it) and compares the
//! result with the backup; this file only renders the outcome and picks the exit status.

use anyhow::Result;
use engine::connectors::interface::{self, RestoreInput, RestoreRequest, Restored};

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::print_json;

pub fn run(ctx: &Context, args: &RestoreArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let list = ctx.snapshots(&repo)?;
    let options = args.kind.set();
    // `--pitr` and the like say which kind is meant, and so which source's "latest".
    let source = args
        .source
        .clone()
        .or_else(|| interface::source_for_options(&list, &options));
    let chosen = list.resolve(&args.snapshot, source.as_deref())?;
    let input = RestoreInput::new(&repo, &list, chosen, args.snapshot == "latest")?;
    let label = if args.sandbox { "sandbox" } else { "restore" };
    let restored = ctx.with_progress(label, |progress| {
        let req = RestoreRequest {
            target: args.target.clone(),
            options,
            dry_run: args.dry_run,
            verify: !args.no_verify,
            sample: false,
            start: args.start,
            port: args.port,
            scratch: args.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            configured: ctx
                .config_file()
                .and_then(|c| c.sources.get(&chosen.1.source.name))
                .map(|s| s.section.clone()),
            callback: ctx.callback(),
            secret: None,
            lock_wait: ctx.lock_wait,
            progress,
        };
        if args.sandbox {
            crate::exit::remove_sandboxes_on_interrupt(std::time::Duration::ZERO);
            interface::sandbox(&input, &req)
        } else {
            interface::restore(&input, &req)
        }
    })?;
    render(ctx, &restored)
}

/// Prints a restore (JSON: the common outcome and the connector's own report) and returns
/// its exit status: damaged data 6, a difference from the backup 7, incomplete 4.
pub fn render(ctx: &Context, r: &Restored) -> Result<Status> {
    let o = &r.outcome;
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot": o.snapshot,
            "target": o.target,
            "dry_run": o.dry_run,
            "outcome": o,
            "report": r.report,
        }))?;
    } else {
        for line in &r.lines {
            println!("{line}");
        }
    }
    for line in &o.incomplete {
        eprintln!("{line}");
    }
    if let Some(d) = &o.damaged {
        eprintln!("{d}");
        return Ok(Status::Damaged);
    }
    if let Some(v) = o.verdict.as_ref().filter(|v| !v.ok()) {
        eprintln!(
            "the restored data differs from the backup: {} of {} compared object(s)",
            v.mismatches.len(),
            v.checked
        );
        if ctx.json || r.lines.is_empty() {
            for m in &v.mismatches {
                eprintln!("  MISMATCH {m}");
            }
        }
        return Ok(Status::Mismatch);
    }
    if !o.incomplete.is_empty() {
        return Ok(Status::Partial);
    }
    Ok(Status::Ok)
}
