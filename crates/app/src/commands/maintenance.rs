use anyhow::Result;

use crate::cli::MaintenanceArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, duration, local_time, print_json};

pub fn run(ctx: &Context, args: &MaintenanceArgs) -> Result<Status> {
    let repo = ctx.open()?;
    if args.owner.is_some() || args.grace.is_some() {
        engine::maintenance::set(&repo, args.owner.as_deref(), args.grace)?;
    }
    let status = engine::maintenance::status(&repo)?;
    if ctx.json {
        print_json(&status)?;
        return Ok(Status::Ok);
    }
    match &status.settings {
        Some(s) => println!(
            "maintenance owner: {} (set by {} at {})",
            s.owner,
            s.changed_by,
            local_time(s.changed)
        ),
        None => println!("maintenance owner: none yet (the first host to prune becomes it)"),
    }
    println!(
        "grace period: {} (marked data is deleted by a prune after that)",
        duration(std::time::Duration::from_secs(status.grace_secs))
    );
    if status.marks.is_empty() {
        println!("nothing is marked for deletion");
    }
    for m in &status.marks {
        let waiting = match m.waiting_for_locks {
            0 => String::new(),
            n => format!(", and after {n} running operation(s) end"),
        };
        println!(
            "marked {} by {}: {} pack(s), {}; deleted by a prune from {}{waiting}",
            local_time(m.marked),
            m.hostname,
            m.packs,
            bytes(m.bytes),
            local_time(m.due)
        );
    }
    Ok(Status::Ok)
}
