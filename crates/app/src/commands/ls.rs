use std::sync::Arc;

use anyhow::Result;
use engine::filter::PathFilter;
use engine::items::{ItemKind, ItemReader};

use crate::cli::LsArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, local_time};

pub fn run(ctx: &Context, args: &LsArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let list = ctx.snapshots(&repo)?;
    let (_, snap) = list.resolve(&args.snapshot, args.source.as_deref())?;
    let index = Arc::new(repo.load_index()?);
    let filter = PathFilter::new(&args.include)?;
    for item in ItemReader::new(repo.clone(), index, snap.tree.clone()) {
        let item = item?;
        if !filter.is_empty() && !filter.matches(&item.path) {
            continue;
        }
        if ctx.json {
            // One JSON object per line: a snapshot may hold millions of items.
            let mut v = serde_json::to_value(&item)?;
            if let Some(o) = v.as_object_mut() {
                for k in ["chunks", "ctime_ns", "inode"] {
                    o.remove(k);
                }
            }
            println!("{v}");
            continue;
        }
        let kind = match item.kind {
            ItemKind::Dir => 'd',
            ItemKind::File => '-',
            ItemKind::Symlink => 'l',
        };
        let mtime = jiff::Timestamp::from_nanosecond(item.mtime_ns as i128)
            .map(local_time)
            .unwrap_or_default();
        let target = item
            .target
            .as_ref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        println!(
            "{kind} {:o} {:>10} {mtime}  /{}{target}",
            item.mode & 0o7777,
            bytes(item.size),
            item.path
        );
    }
    Ok(Status::Ok)
}
