use std::sync::Arc;

use anyhow::Result;

use crate::cli::HistoryArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, local_time, print_json};

pub fn run(ctx: &Context, args: &HistoryArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let path = args.path.trim_start_matches('/');
    let list: Vec<_> = ctx
        .snapshots(&repo)?
        .list
        .into_iter()
        .filter(|(_, s)| args.source.as_ref().is_none_or(|src| &s.source.name == src))
        .collect();
    let index = Arc::new(repo.load_index()?);
    let versions = engine::diff::history(&repo, &index, &list, path)?;
    if ctx.json {
        print_json(&versions)?;
        return Ok(Status::Ok);
    }
    if versions.is_empty() {
        println!("{path} is in no snapshot");
        return Ok(Status::Ok);
    }
    println!(
        "{:<3} {:<19} {:<19} {:>10} {:>5}  first snapshot",
        "#", "first seen", "last seen", "size", "snaps"
    );
    for (n, v) in versions.iter().enumerate() {
        println!(
            "{:<3} {:<19} {:<19} {:>10} {:>5}  {}",
            n + 1,
            local_time(v.first_seen),
            local_time(v.last_seen),
            bytes(v.size),
            v.snapshots.len(),
            v.snapshots.first().map(|s| s.short()).unwrap_or_default()
        );
    }
    println!("{} distinct version(s) of {path}", versions.len());
    Ok(Status::Ok)
}
