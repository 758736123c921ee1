use std::collections::HashMap;

use anyhow::Result;

use crate::cli::SnapshotsArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, local_time, print_json};

pub fn run(ctx: &Context, args: &SnapshotsArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let filter = args.filter.to_engine();
    let mut list: Vec<_> = ctx
        .snapshots(&repo)?
        .list
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    if let Some(n) = args.latest {
        let mut seen: HashMap<String, usize> = HashMap::new();
        list.reverse();
        list.retain(|(_, s)| {
            let c = seen.entry(s.source.name.clone()).or_default();
            *c += 1;
            *c <= n
        });
        list.reverse();
    }
    if ctx.json {
        let rows: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("id".into(), serde_json::json!(id));
                    o.remove("tree");
                }
                v
            })
            .collect();
        return print_json(&rows).map(|_| Status::Ok);
    }
    println!(
        "{:<9} {:<19} {:<12} {:<14} {:<7} {:<9} {:>7} {:>10}  paths",
        "id", "time", "host", "source", "kind", "set", "files", "size"
    );
    for (id, s) in &list {
        let set = s.set_id.map(|x| x.short()).unwrap_or_default();
        let flag = if s.summary.partial { " (partial)" } else { "" };
        println!(
            "{:<9} {:<19} {:<12} {:<14} {:<7} {:<9} {:>7} {:>10}  {}{flag}",
            id.short(),
            local_time(s.time),
            s.hostname,
            s.source.name,
            s.source.kind,
            set,
            s.summary.files,
            bytes(s.summary.bytes),
            s.paths.join(" ")
        );
    }
    println!("{} snapshot(s)", list.len());
    Ok(Status::Ok)
}
