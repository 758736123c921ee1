use anyhow::Result;
use engine::restore::RestoreOptions;

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, print_json};

pub fn run(ctx: &Context, args: &RestoreArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let list = ctx.snapshots(&repo)?;
    let (id, snap) = engine::catalog::resolve(&list, &args.snapshot, args.source.as_deref())?;
    let view = ctx.progress("restore");
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include.clone(),
        dry_run: args.dry_run,
        threads: 0,
        progress: view.reporter(),
    };
    let summary = engine::restore::restore(&repo, snap, &opts);
    view.finish();
    let summary = summary?;
    if ctx.json {
        print_json(
            &serde_json::json!({ "snapshot": id, "target": args.target, "dry_run": args.dry_run, "summary": summary }),
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
            args.target.display(),
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
    if !summary.errors.is_empty() {
        eprintln!(
            "{} file(s) could NOT be restored; every other file was verified against its chunk ids",
            summary.errors.len()
        );
        return Ok(Status::Partial);
    }
    Ok(Status::Ok)
}
