//! `sets` and `set show`: the records of backup sets (and the sets of older snapshots, rebuilt
//! from the snapshots themselves).

use anyhow::{bail, Result};
use engine::set_manifest::{self, SetManifest};

use crate::cli::SetCommand;
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::{bytes, local_time, print_json};

fn load(ctx: &Context) -> Result<Vec<SetManifest>> {
    let repo = ctx.open()?;
    let snapshots = ctx.snapshots(&repo)?;
    let (sets, unreadable) = set_manifest::list(&repo, &snapshots)?;
    for u in &unreadable {
        eprintln!("warning: unreadable backup set record {u}");
    }
    Ok(sets)
}

fn state(m: &SetManifest) -> &'static str {
    if m.complete {
        "complete"
    } else {
        "PARTIAL"
    }
}

pub fn list(ctx: &Context) -> Result<Status> {
    let sets = load(ctx)?;
    if ctx.json {
        print_json(&sets)?;
        return Ok(Status::Ok);
    }
    for m in &sets {
        let failed: Vec<&str> = m
            .sources
            .iter()
            .filter(|s| s.snapshot.is_none() || s.partial)
            .map(|s| s.name.as_str())
            .collect();
        println!(
            "{}  {}  {:<8}  {} source(s){}",
            &m.set_id.to_hex()[..8],
            local_time(m.started),
            state(m),
            m.sources.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed or partial: {}", failed.join(", "))
            }
        );
    }
    Ok(Status::Ok)
}

pub fn show(ctx: &Context, command: &SetCommand) -> Result<Status> {
    let SetCommand::Show { id } = command;
    let prefix = id.to_ascii_lowercase();
    let sets = load(ctx)?;
    let matching: Vec<&SetManifest> = sets
        .iter()
        .filter(|m| m.set_id.to_hex().starts_with(&prefix))
        .collect();
    let m = match matching.as_slice() {
        [one] => *one,
        [] => bail!(usage(format!("no backup set {id}"))),
        _ => bail!(usage(format!(
            "{id} names {} backup sets; give more of the id",
            matching.len()
        ))),
    };
    if ctx.json {
        print_json(m)?;
        return Ok(Status::Ok);
    }
    println!(
        "backup set {} ({}), {} to {}",
        m.set_id.to_hex(),
        state(m),
        local_time(m.started),
        local_time(m.finished)
    );
    for s in &m.sources {
        match (&s.snapshot, &s.error) {
            (Some(snap), _) => println!(
                "  {} ({}): snapshot {}{}, {}, data from {}{}",
                s.name,
                s.kind,
                snap.short(),
                if s.partial { " (partial)" } else { "" },
                bytes(s.bytes),
                s.point_time.map(local_time).unwrap_or_default(),
                s.point
                    .as_ref()
                    .map(|p| format!("; {p}"))
                    .unwrap_or_default()
            ),
            (None, e) => println!(
                "  {} ({}): FAILED: {}",
                s.name,
                s.kind,
                e.as_deref().unwrap_or("no snapshot")
            ),
        }
    }
    let sys = &m.system;
    if !sys.hostname.is_empty() {
        println!(
            "  system: {} — {}, {}, bulwark {}",
            sys.hostname, sys.os, sys.kernel, sys.bulwark_version
        );
        for (path, free) in &sys.free_bytes {
            println!("  free: {path} {}", bytes(*free));
        }
        for (path, hash) in &sys.config_files {
            println!("  config: {path} blake3:{}", &hash[..16]);
        }
    }
    Ok(Status::Ok)
}
