//! `schedule install | status | uninstall`: the jobs of the config file run by systemd (the
//! daemon as a service, or a timer per job) or by cron; and what they did last.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::cli::{ScheduleCommand, ScheduleInstall, ScheduleTarget};
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::jobs::Job;
use crate::output::{local_time, print_json};
use crate::schedule::{self, File, UNIT_MARK};

pub fn run(ctx: &Context, cmd: &ScheduleCommand) -> Result<Status> {
    match cmd {
        ScheduleCommand::Install(a) => install(ctx, a),
        ScheduleCommand::Status(t) => status(ctx, t),
        ScheduleCommand::Uninstall { target, dry_run } => uninstall(ctx, target, *dry_run),
    }
}

/// Where the units or the crontab go, and how they are put in force.
enum Place {
    /// systemd units under `root`; `live` when root is `/` (systemctl is called).
    Systemd { root: PathBuf, live: bool },
    /// The user's crontab: through `crontab` itself, or a spool file under a root.
    Cron {
        user: String,
        spool: Option<PathBuf>,
    },
}

fn place(t: &ScheduleTarget) -> Place {
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    if t.cron || (!root_user && t.root.is_none()) {
        let user = crate::audit::os_user()
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        let spool = t
            .root
            .as_ref()
            .map(|r| r.join("var/spool/cron/crontabs").join(&user));
        return Place::Cron { user, spool };
    }
    match &t.root {
        Some(r) => Place::Systemd {
            root: r.clone(),
            live: false,
        },
        None => Place::Systemd {
            root: PathBuf::from("/"),
            live: true,
        },
    }
}

/// The config file's path and jobs, and this binary: what the units call.
fn setup(ctx: &Context) -> Result<(PathBuf, Vec<&Job>, PathBuf)> {
    let config = ctx
        .config_path()
        .ok_or_else(|| usage("schedule needs a config file with [jobs.NAME]: pass --config"))?
        .to_path_buf();
    let jobs: Vec<&Job> = ctx
        .config_file()
        .map(|c| c.jobs.values().collect())
        .unwrap_or_default();
    let exe = std::env::current_exe().context("locating the bulwark binary")?;
    Ok((config, jobs, exe))
}

fn install(ctx: &Context, a: &ScheduleInstall) -> Result<Status> {
    let (config, jobs, exe) = setup(ctx)?;
    if jobs.is_empty() {
        bail!(usage(format!(
            "{}: no [jobs.NAME] to schedule",
            config.display()
        )));
    }
    match place(&a.target) {
        Place::Systemd { root, live } => {
            let files = if a.timers {
                schedule::timer_units(&jobs, &exe, &config)?
            } else {
                vec![schedule::daemon_unit(&exe, &config)]
            };
            if a.dry_run {
                for f in &files {
                    println!("# would write {}\n{}", root.join(&f.path).display(), f.text);
                }
                return Ok(Status::Ok);
            }
            let stale = remove_units(&root, &files)?;
            if live && !stale.is_empty() {
                systemctl(&[&["disable", "--now"][..], &names(&stale)].concat())?;
            }
            for f in &files {
                let path = root.join(&f.path);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                std::fs::write(&path, &f.text)
                    .with_context(|| format!("writing {}", path.display()))?;
                report(ctx, &format!("wrote {}", path.display()));
            }
            if live {
                systemctl(&["daemon-reload"])?;
                let enable: Vec<String> = files
                    .iter()
                    .map(|f| unit_of(&f.path))
                    .filter(|u| u.ends_with(".timer") || !a.timers)
                    .collect();
                let enable: Vec<&str> = enable.iter().map(String::as_str).collect();
                systemctl(&[&["enable", "--now"][..], &enable].concat())?;
                report(ctx, &format!("enabled and started {}", enable.join(", ")));
            } else {
                report(ctx, "systemctl was not called (--root)");
            }
        }
        Place::Cron { user, spool } => {
            let block = schedule::crontab_block(&jobs, &exe, &config)?;
            let old = read_crontab(spool.as_deref())?;
            let new = format!("{}{block}", schedule::without_block(&old));
            if a.dry_run {
                println!("# would set the crontab of {user} to\n{new}");
                return Ok(Status::Ok);
            }
            write_crontab(spool.as_deref(), &new)?;
            report(
                ctx,
                &format!(
                    "crontab of {user}: {} job line(s) between the bulwark markers",
                    jobs.len()
                ),
            );
        }
    }
    if ctx.json {
        print_json(&serde_json::json!({ "installed": true }))?;
    }
    Ok(Status::Ok)
}

fn uninstall(ctx: &Context, t: &ScheduleTarget, dry_run: bool) -> Result<Status> {
    match place(t) {
        Place::Systemd { root, live } => {
            let ours = our_units(&root)?;
            if dry_run {
                for p in &ours {
                    println!("would remove {}", p.display());
                }
                return Ok(Status::Ok);
            }
            if live && !ours.is_empty() {
                systemctl(&[&["disable", "--now"][..], &names(&ours)].concat())?;
            }
            for p in &ours {
                std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
                report(ctx, &format!("removed {}", p.display()));
            }
            if live {
                systemctl(&["daemon-reload"])?;
            }
        }
        Place::Cron { user, spool } => {
            let old = read_crontab(spool.as_deref())?;
            let new = schedule::without_block(&old);
            if dry_run {
                println!("# would set the crontab of {user} to\n{new}");
                return Ok(Status::Ok);
            }
            write_crontab(spool.as_deref(), &new)?;
            report(ctx, &format!("crontab of {user}: bulwark lines removed"));
        }
    }
    Ok(Status::Ok)
}

/// Each job with its next run and last result, and how the schedule is installed.
fn status(ctx: &Context, t: &ScheduleTarget) -> Result<Status> {
    let (_, jobs, _) = setup(ctx)?;
    let installed = match place(t) {
        Place::Systemd { root, .. } => {
            let units = our_units(&root)?;
            let timers = units
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "timer"))
                .count();
            match (units.len(), timers) {
                (0, _) => "not installed".to_string(),
                (_, 0) => format!("systemd service {}", schedule::DAEMON_UNIT),
                (_, n) => format!("{n} systemd timer(s)"),
            }
        }
        Place::Cron { user, spool } => {
            let crontab = read_crontab(spool.as_deref())?;
            if crontab.contains(schedule::CRON_BEGIN) {
                format!("crontab of {user}")
            } else {
                "not installed".to_string()
            }
        }
    };
    let state = crate::daemon::state::State::open(&ctx.state_dir())?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for job in &jobs {
        let stats = state.job_stats(&job.name)?;
        rows.push(serde_json::json!({
            "name": job.name,
            "kind": job.action.kind(),
            "schedule": job.schedule_text,
            "timezone": job.timezone,
            "next_run": job.schedule.next_after(now),
            "last_run": stats.last.as_ref().map(|r| r.started),
            "last_result": stats.last.as_ref().map(|r| r.result.as_str()),
            "last_error": stats.last.as_ref().and_then(|r| r.error.clone()),
            "last_success": stats.last_success,
        }));
    }
    if ctx.json {
        print_json(&serde_json::json!({ "installed": installed, "jobs": rows }))?;
        return Ok(Status::Ok);
    }
    println!("schedule: {installed}");
    println!(
        "{:<16} {:<10} {:<20} {:<19}  last run",
        "job", "kind", "schedule", "next run"
    );
    for (job, row) in jobs.iter().zip(&rows) {
        let last = match (&row["last_run"], row["last_result"].as_str()) {
            (serde_json::Value::String(t), Some(r)) => format!(
                "{} {r}{}",
                t.parse().map(local_time).unwrap_or_default(),
                row["last_error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            _ => "never".into(),
        };
        println!(
            "{:<16} {:<10} {:<20} {:<19}  {last}",
            job.name,
            job.action.kind(),
            job.schedule_text,
            job.schedule
                .next_after(now)
                .map(local_time)
                .unwrap_or_else(|| "never".into()),
        );
    }
    Ok(Status::Ok)
}

fn report(ctx: &Context, line: &str) {
    if !ctx.quiet && !ctx.json {
        println!("{line}");
    }
}

/// The unit files under `root` that we wrote (they start with [`UNIT_MARK`]).
fn our_units(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("etc/systemd/system");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", dir.display()))),
    };
    let mut ours = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("bulwark")
            && std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with(UNIT_MARK))
        {
            ours.push(path);
        }
    }
    ours.sort();
    Ok(ours)
}

/// Removes our units that `keep` does not rewrite (jobs gone, or the other mode); returns them.
fn remove_units(root: &Path, keep: &[File]) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for p in our_units(root)? {
        if !keep.iter().any(|f| root.join(&f.path) == p) {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            removed.push(p);
        }
    }
    Ok(removed)
}

fn unit_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

fn names(paths: &[PathBuf]) -> Vec<&str> {
    paths
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
        .collect()
}

fn systemctl(args: &[&str]) -> Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .context("running systemctl (is systemd running? --root writes the units without it)")?;
    if !status.success() {
        bail!("systemctl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn read_crontab(spool: Option<&Path>) -> Result<String> {
    if let Some(path) = spool {
        return match std::fs::read_to_string(path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(anyhow!(e).context(format!("reading {}", path.display()))),
        };
    }
    let out = Command::new("crontab")
        .arg("-l")
        .stderr(Stdio::piped())
        .output()
        .context("running crontab -l (is cron installed?)")?;
    // No crontab yet is exit 1 with "no crontab for USER".
    if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("no crontab") {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    bail!(
        "crontab -l: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn write_crontab(spool: Option<&Path>, text: &str) -> Result<()> {
    if let Some(path) = spool {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        return std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    }
    use std::io::Write;
    let mut child = Command::new("crontab")
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .context("running crontab -")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("crontab: no stdin"))?
        .write_all(text.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("crontab - failed ({status})");
    }
    Ok(())
}
