//! `run-job NAME`: one run of a configured job, recorded in the state database like a
//! scheduled one (systemd timers and cron call this; so does the daemon).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Result};

use crate::cli::RunJobArgs;
use crate::context::Context;
use crate::daemon::runner::{self, JobLock, Request};
use crate::daemon::state::{RunResult, State};
use crate::exit::{usage, Status};
use crate::output::print_json;

pub fn run(ctx: &Context, args: &RunJobArgs) -> Result<Status> {
    let loaded = ctx
        .config
        .as_ref()
        .ok_or_else(|| usage("run-job needs a config file with [jobs.NAME] sections"))?;
    let job = loaded.config.jobs.get(&args.name).ok_or_else(|| {
        let names: Vec<&str> = loaded.config.jobs.keys().map(String::as_str).collect();
        usage(format!(
            "no [jobs.{}] section (the jobs are: {})",
            args.name,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ))
    })?;
    let state_dir = crate::daemon::state_dir(loaded);
    let state = State::open(&state_dir)
        .map_err(|e| eprintln!("warning: {e:#}; the run is not recorded"))
        .ok();
    let _lock = match JobLock::take(&state_dir, &job.name) {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => {
            if let (Some(s), Some(id)) = (&state, args.run_id) {
                let _ = s.finish_if_running(id, RunResult::Failed, "the job was running already");
            }
            return Err(anyhow!(engine::Error::new(
                engine::ErrorKind::Locked,
                format!("job '{}' is running already on this host", job.name)
            )));
        }
        Err(e) => {
            eprintln!("warning: no job lock in {}: {e}", state_dir.display());
            None
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let mut global_args = vec!["--config".to_string(), loaded.path.to_string_lossy().into()];
    if let Some(repo) = job.repository.as_ref().or(ctx.repo_arg.as_ref()) {
        global_args.extend(["--repo".into(), repo.clone()]);
    }
    if let Some(p) = &ctx.password_file {
        let p = std::path::absolute(p).unwrap_or(p.clone());
        global_args.extend(["--password-file".into(), p.to_string_lossy().into()]);
    }
    match &ctx.index_cache {
        Some(cache) => {
            let dir = std::path::absolute(&cache.dir).unwrap_or(cache.dir.clone());
            global_args.extend(["--cache-dir".into(), dir.to_string_lossy().into()]);
        }
        None => global_args.push("--no-cache".into()),
    }
    let req = Request {
        job,
        trigger: &args.trigger,
        slot: args.slot.and_then(|s| jiff::Timestamp::from_second(s).ok()),
        run_id: args.run_id,
        global_args,
    };
    let finished = runner::run(&req, state.as_ref(), &stop);
    let o = &finished.outcome;
    if ctx.json {
        print_json(&serde_json::json!({
            "job": job.name,
            "run": finished.run_id,
            "result": o.result,
            "exit_code": o.exit_code,
            "error": o.error,
        }))?;
    } else {
        println!(
            "job '{}' {}{}",
            job.name,
            o.result.as_str(),
            o.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(match o.result {
        RunResult::Success => Status::Ok,
        RunResult::Partial => Status::Partial,
        RunResult::Interrupted => Status::Interrupted,
        RunResult::Failed | RunResult::Timeout | RunResult::Running => Status::Failed,
    })
}
