use anyhow::Result;

use crate::cli::UnlockArgs;
use crate::context::Context;
use crate::exit::Status;

pub fn run(ctx: &Context, args: &UnlockArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let removed = engine::lock::remove(&repo, args.remove_all)?;
    if ctx.json {
        crate::output::print_json(&serde_json::json!({ "removed": removed }))?;
    } else {
        println!("removed {removed} lock(s)");
    }
    Ok(Status::Ok)
}
