use anyhow::{Context as _, Result};
use engine::repo::{InitOptions, Repository};

use crate::cli::InitArgs;
use crate::context::Context;
use crate::exit::Status;

pub fn run(ctx: &Context, args: &InitArgs) -> Result<Status> {
    let target = ctx.target(None)?;
    let password = ctx.password(&target, true)?;
    let store = ctx.new_store(&target)?;
    let opts = InitOptions {
        label: args.label.clone(),
        kdf: kdf_from_env(),
        pack_size: args.pack_size << 20,
        ..Default::default()
    };
    let repo = match &args.copy_params_from {
        Some(from) => {
            let src = ctx.open_at(&ctx.target(Some(from))?)?;
            Repository::init_like(store, &password, opts, &src)
        }
        None => Repository::init(store, &password, opts),
    }
    .with_context(|| format!("cannot create repository at {}", target.url))?;
    ctx.working_on(&target, &repo);
    if ctx.json {
        crate::output::print_json(
            &serde_json::json!({ "repository": target.url, "id": repo.config().id }),
        )?;
    } else {
        println!("created repository {} at {}", repo.config().id, target.url);
        println!("keep the password safe: without it the data cannot be read");
    }
    Ok(Status::Ok)
}

/// Key-derivation cost; `BULWARK_KDF_MEMORY_KIB` lowers it for tests and demos only.
pub fn kdf_from_env() -> engine::crypto::KdfParams {
    match std::env::var("BULWARK_KDF_MEMORY_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(kib) => engine::crypto::KdfParams::with_cost(kib, 1),
        None => engine::crypto::KdfParams::recommended(),
    }
}
