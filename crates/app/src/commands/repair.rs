use anyhow::Result;
use engine::repair::{RepairOptions, SnapshotRepairOptions};

use crate::cli::RepairCommand;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{local_time, print_json};

pub fn run(ctx: &Context, command: &RepairCommand) -> Result<Status> {
    let repo = ctx.open()?;
    match command {
        RepairCommand::Index { dry_run } => {
            let r = ctx.with_progress("repair", |progress| {
                engine::repair::repair_index(
                    &repo,
                    &RepairOptions {
                        dry_run: *dry_run,
                        lock_wait: ctx.lock_wait,
                        progress,
                    },
                )
            })?;
            if ctx.json {
                print_json(&r)?;
            } else {
                println!(
                    "{} packs, {} blobs read from their headers; {} of {} index file(s) damaged; {}",
                    r.packs,
                    r.blobs,
                    r.index_files_damaged,
                    r.index_files_before,
                    if r.dry_run {
                        "dry run: nothing written".to_string()
                    } else {
                        format!("wrote {} index file(s) in their place", r.index_files_written)
                    }
                );
                for h in &r.unreadable_headers {
                    println!("  unreadable header: {h}");
                }
                for p in &r.lost_packs {
                    println!("  LOST: pack {p} (header unreadable, in no intact index file)");
                }
            }
            Ok(if r.lost_packs.is_empty() {
                Status::Ok
            } else {
                Status::Damaged
            })
        }
        RepairCommand::Snapshots {
            dry_run,
            read_data,
            forget,
        } => {
            let r = ctx.with_progress("repair", |progress| {
                engine::repair::repair_snapshots(
                    &repo,
                    &SnapshotRepairOptions {
                        dry_run: *dry_run,
                        read_data: *read_data,
                        forget: *forget,
                        lock_wait: ctx.lock_wait,
                        progress,
                    },
                )
            })?;
            if ctx.json {
                print_json(&r)?;
            } else {
                if r.index_files_damaged > 0 {
                    println!(
                        "warning: {} index file(s) are damaged; run `bulwark repair index` first, or their data counts as lost",
                        r.index_files_damaged
                    );
                }
                for s in &r.repaired {
                    let outcome = match (&s.repaired_as, s.original_forgotten) {
                        (Some(new), true) => {
                            format!("repaired as {} (original forgotten)", new.short())
                        }
                        (Some(new), false) => {
                            format!("repaired as {} (original kept)", new.short())
                        }
                        (None, _) => "would be repaired".to_string(),
                    };
                    println!(
                        "snapshot {} ({}, {}): {} item(s) lost; {outcome}",
                        s.original.short(),
                        s.source,
                        local_time(s.time),
                        s.lost.len()
                    );
                    for l in &s.lost {
                        println!("  {}: {}", l.path, l.message);
                    }
                }
                println!(
                    "{} snapshot(s) checked, {} with lost data",
                    r.snapshots,
                    r.repaired.len()
                );
            }
            Ok(if *dry_run && !r.repaired.is_empty() {
                Status::Damaged
            } else {
                Status::Ok
            })
        }
    }
}
