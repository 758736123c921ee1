use anyhow::Result;
use engine::prune::{PruneOptions, PruneReport};

use crate::cli::PruneArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, duration, print_json};

pub fn run(ctx: &Context, args: &PruneArgs) -> Result<Status> {
    let r = execute(ctx, args)?;
    if ctx.json {
        print_json(&r)?;
    } else {
        print(&r);
    }
    Ok(Status::Ok)
}

/// Prunes, printing nothing but progress.
pub fn execute(ctx: &Context, args: &PruneArgs) -> Result<PruneReport> {
    let repo = ctx.open()?;
    let report = ctx.with_progress("prune", |progress| {
        engine::prune::prune(
            &repo,
            &PruneOptions {
                dry_run: args.dry_run,
                max_unused: args.max_unused / 100.0,
                lock_wait: ctx.lock_wait,
                exclusive: args.exclusive,
                grace: args.grace,
                progress,
            },
        )
    });
    Ok(report?)
}

pub fn print(r: &PruneReport) {
    {
        let (would, verb) = match r.dry_run {
            true => ("would be ", "would free"),
            false => ("", "freed"),
        };
        println!(
            "{} packs: {} deleted, {} repacked into {}; {verb} {} of {}",
            r.packs_before,
            r.packs_deleted,
            r.packs_repacked,
            r.packs_written,
            bytes(r.bytes_freed),
            bytes(r.bytes_before)
        );
        if r.orphan_packs > 0 {
            println!(
                "{} pack(s) no index lists (interrupted backups, or backups still running)",
                r.orphan_packs
            );
        }
        if r.packs_marked > 0 {
            println!(
                "{} pack(s) ({}) {would}marked for deletion: a prune deletes them once the mark is {} old and the backups running now have ended",
                r.packs_marked,
                bytes(r.bytes_marked),
                duration(std::time::Duration::from_secs(r.grace_secs))
            );
        }
        if r.packs_unmarked > 0 {
            println!(
                "{} marked pack(s) {would}put back: a newer snapshot uses them",
                r.packs_unmarked
            );
        }
        if r.packs_pending > 0 {
            println!(
                "{} pack(s) ({}) marked earlier are not due yet (`bulwark maintenance` shows when)",
                r.packs_pending,
                bytes(r.bytes_pending)
            );
        }
        for (name, w) in r
            .logs
            .iter()
            .flat_map(|(n, l)| l.iter().map(move |w| (n, w)))
        {
            println!(
                "{} of '{}': {} {} files ({}) before log position {}, the oldest kept base backup's start",
                name.to_uppercase(),
                w.source,
                if r.dry_run { "would delete" } else { "deleted" },
                w.files_deleted,
                bytes(w.bytes_freed),
                w.kept_from
            );
        }
        if r.temp_bytes_removed > 0 {
            println!(
                "removed {} of partial files left by failed writes",
                bytes(r.temp_bytes_removed)
            );
        }
    }
}
