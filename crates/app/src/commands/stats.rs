use std::sync::Arc;

use anyhow::Result;

use crate::cli::StatsArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, print_json};

pub fn run(ctx: &Context, args: &StatsArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let list = ctx.snapshots(&repo)?;
    let chosen = list.select(&args.snapshots, &Default::default())?;
    let index = Arc::new(repo.load_index()?);
    let st = engine::stats::stats(&repo, &index, &chosen)?;
    if ctx.json {
        print_json(&st)?;
    } else {
        println!("snapshots:         {}", st.snapshots);
        println!("files:             {}", st.files);
        println!("logical size:      {}", bytes(st.logical_bytes));
        println!(
            "after dedup:       {} in {} chunks (dedup ratio {:.2}x)",
            bytes(st.unique_bytes),
            st.unique_chunks,
            st.dedup_ratio
        );
        println!(
            "stored:            {} (compression ratio {:.2}x)",
            bytes(st.stored_bytes),
            st.compression_ratio
        );
        println!("repository packs:  {}", bytes(st.repository_bytes));
    }
    Ok(Status::Ok)
}
