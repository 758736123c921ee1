use anyhow::{Context as _, Result};

use crate::access::read_password_file;
use crate::cli::CopyArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, print_json};

pub fn run(ctx: &Context, args: &CopyArgs) -> Result<Status> {
    let src = ctx.open()?;
    let dst_target = ctx.target(Some(&args.to))?;
    let dst = match &args.to_password_file {
        Some(p) => ctx
            .open_with(
                ctx.store(&dst_target)?,
                &dst_target,
                &read_password_file(p)?,
            )
            .with_context(|| format!("cannot open destination {}", dst_target.url))?,
        None => ctx.open_at(&dst_target)?,
    };
    let list = ctx.snapshots(&src)?;
    let chosen = list.select(&args.snapshots, &args.filter.to_engine())?;
    let report = ctx.with_progress("copy", |progress| {
        engine::copy::copy(&src, &dst, &chosen, ctx.lock_wait, &progress)
    })?;
    if ctx.json {
        print_json(&report)?;
    } else {
        for c in &report.snapshots {
            match c.copied_as {
                Some(id) => println!(
                    "copied {} as {} ({} chunks, {})",
                    c.source_snapshot.short(),
                    id.short(),
                    c.chunks_copied,
                    bytes(c.bytes_copied)
                ),
                None => println!(
                    "skipped {} (already in {})",
                    c.source_snapshot.short(),
                    dst_target.url
                ),
            }
        }
        for (name, c) in report.logs.iter().filter(|(_, c)| c.files_copied > 0) {
            println!(
                "copied {} archived {} files ({}) the copied snapshots need",
                c.files_copied,
                name.to_uppercase(),
                bytes(c.bytes_copied)
            );
        }
        if report.drills_copied > 0 {
            println!("copied {} drill record(s)", report.drills_copied);
        }
    }
    // Copying "everything" past a damaged manifest would leave the copy short without a word.
    if args.snapshots.is_empty() && !list.unreadable.is_empty() {
        eprintln!(
            "{} unreadable snapshot manifest(s) could not be copied (see the warnings above)",
            list.unreadable.len()
        );
        return Ok(Status::Partial);
    }
    Ok(Status::Ok)
}
