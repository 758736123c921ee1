//! `daemon`: the scheduler and the API, in the foreground until SIGTERM.

use anyhow::Result;

use crate::context::Context;
use crate::exit::{usage, Status};

pub fn run(ctx: &Context) -> Result<Status> {
    let path = ctx.config_path().ok_or_else(|| {
        usage("the daemon needs a config file: pass --config or create /etc/bulwark/bulwark.toml")
    })?;
    // The daemon reloads on SIGHUP, so it owns its own copy of the config.
    let loaded = crate::config::load(Some(path))?.ok_or_else(|| usage("no config file"))?;
    crate::daemon::run(loaded)?;
    Ok(Status::Ok)
}
