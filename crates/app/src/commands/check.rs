use anyhow::Result;
use engine::check::{CheckOptions, ReadData};
use engine::check_record::{self, CheckRecord};

use crate::cli::CheckArgs;
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::{bytes, print_json};

pub fn run(ctx: &Context, args: &CheckArgs) -> Result<Status> {
    let read_data = match (args.read_data_subset, args.read_data) {
        (Some(0.0), _) => return Err(usage("--read-data-subset must be above 0%")),
        (Some(pct), _) => ReadData::Subset(pct),
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let repo = ctx.open()?;
    let report = ctx.with_progress("check", |progress| {
        engine::check::check(
            &repo,
            &CheckOptions {
                read_data,
                progress,
            },
        )
    })?;
    // Kept for `assess`; a repository that takes no writes (read-only credentials) is still
    // checked.
    if let Err(e) = check_record::save(&repo, &CheckRecord::of(&report, &read_data)) {
        eprintln!("warning: the check's record could not be stored: {e}");
    }
    if ctx.json {
        print_json(&report)?;
    } else {
        println!(
            "checked {} snapshots, {} packs, {} chunks; read {} packs ({})",
            report.snapshots,
            report.packs,
            report.blobs,
            report.packs_read,
            bytes(report.bytes_read)
        );
        for w in report
            .logs
            .iter()
            .flat_map(|(name, l)| l.iter().map(move |w| (name, w)))
        {
            let (name, w) = w;
            println!(
                "{} archive of '{}': {} file(s), {} base backup(s); read {} file(s) ({})",
                name.to_uppercase(),
                w.source,
                w.files,
                w.base_backups,
                w.files_read,
                bytes(w.bytes_read)
            );
        }
        for n in &report.notes {
            println!("note: {n}");
        }
        for e in &report.errors {
            println!("error: {e}");
        }
        for a in &report.affected {
            println!(
                "damaged: snapshot {} ({}, {}):",
                a.snapshot.short(),
                a.source,
                a.time
            );
            for p in &a.paths {
                println!("  {p}");
            }
        }
        println!(
            "{}",
            if report.ok() {
                "no errors found"
            } else {
                "REPOSITORY HAS ERRORS"
            }
        );
    }
    Ok(if report.ok() {
        Status::Ok
    } else {
        Status::Damaged
    })
}
