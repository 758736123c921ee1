use std::sync::Arc;

use anyhow::Result;
use engine::diff::ChangeKind;

use crate::cli::DiffArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::print_json;

pub fn run(ctx: &Context, args: &DiffArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let list = ctx.snapshots(&repo)?;
    let (_, a) = list.resolve(&args.a, None)?;
    let (_, b) = list.resolve(&args.b, None)?;
    let index = Arc::new(repo.load_index()?);
    let mut changes = Vec::new();
    engine::diff::diff(&repo, &index, a, b, |c| changes.push(c))?;
    if ctx.json {
        print_json(&changes)?;
        return Ok(Status::Ok);
    }
    let count = |k: ChangeKind| changes.iter().filter(|c| c.kind == k).count();
    for c in &changes {
        let mark = match c.kind {
            ChangeKind::Added => "+",
            ChangeKind::Removed => "-",
            ChangeKind::Modified => "M",
            ChangeKind::Metadata => "U",
        };
        println!("{mark}  {}", c.path);
    }
    println!(
        "{} added, {} removed, {} modified, {} metadata only",
        count(ChangeKind::Added),
        count(ChangeKind::Removed),
        count(ChangeKind::Modified),
        count(ChangeKind::Metadata)
    );
    Ok(Status::Ok)
}
