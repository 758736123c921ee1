//! What `schedule install` writes: a systemd service for the daemon, or one timer and service
//! per job, or crontab lines between marker comments. Text only; `commands::schedule` puts it
//! in place.

use std::path::Path;

use anyhow::{bail, Result};

use crate::jobs::Job;

/// The first line of every unit written, so that uninstall removes ours and nothing else.
pub const UNIT_MARK: &str =
    "# Written by `bulwark schedule install`; `bulwark schedule uninstall` removes it.";
pub const CRON_BEGIN: &str =
    "# BEGIN bulwark (written by `bulwark schedule install`; edit the config and run it again)";
pub const CRON_END: &str = "# END bulwark";

pub const DAEMON_UNIT: &str = "bulwark.service";

/// A file to write under the root: its path relative to the root, and its text.
pub struct File {
    pub path: String,
    pub text: String,
}

/// A shell-safe single-quoted word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A path as one word of a systemd command line (no `%` specifiers, quoted if needed).
fn unit_word(p: &Path) -> String {
    let s = p.display().to_string().replace('%', "%%");
    if s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

fn unit_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The daemon as a systemd service: SIGHUP reloads, SIGTERM stops within the jobs' grace.
pub fn daemon_unit(exe: &Path, config: &Path) -> File {
    let text = format!(
        "{UNIT_MARK}
[Unit]
Description=Bulwark backup daemon (scheduled backups, checks, retention, drills; API and metrics)
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart={exe} --config {config} daemon
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
TimeoutStopSec=120
Restart=on-failure
RestartSec=10s
StateDirectory=bulwark
StateDirectoryMode=0700
UMask=0077

[Install]
WantedBy=multi-user.target
",
        exe = unit_word(exe),
        config = unit_word(config),
    );
    File {
        path: format!("etc/systemd/system/{DAEMON_UNIT}"),
        text,
    }
}

/// One oneshot service and one timer per job: `Persistent=true` runs a missed slot once after
/// downtime, `RandomizedDelaySec` is the job's jitter.
pub fn timer_units(jobs: &[&Job], exe: &Path, config: &Path) -> Result<Vec<File>> {
    let mut files = Vec::new();
    for job in jobs {
        if !unit_name_ok(&job.name) {
            bail!(
                "job '{}': a systemd unit name takes letters, digits, '_', '-' and '.' only; rename the job or use the daemon",
                job.name
            );
        }
        let unit = format!("bulwark-job-{}", job.name);
        // run-job stops the job at its own timeout and reports it; systemd's is a backstop.
        let backstop = job.timeout.as_secs() + 180;
        files.push(File {
            path: format!("etc/systemd/system/{unit}.service"),
            text: format!(
                "{UNIT_MARK}
[Unit]
Description=Bulwark job {name} ({kind})
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart={exe} --config {config} run-job {name}
TimeoutStartSec={backstop}
KillMode=mixed
StateDirectory=bulwark
StateDirectoryMode=0700
UMask=0077
",
                name = job.name,
                kind = job.action.kind(),
                exe = unit_word(exe),
                config = unit_word(config),
            ),
        });
        let zone = match job.timezone.as_str() {
            "local" => String::new(),
            z => format!(" {z}"),
        };
        let calendars: String = job
            .schedule
            .systemd_calendars()
            .iter()
            .map(|c| format!("OnCalendar={c}{zone}\n"))
            .collect();
        files.push(File {
            path: format!("etc/systemd/system/{unit}.timer"),
            text: format!(
                "{UNIT_MARK}
[Unit]
Description=Bulwark job {name}: {schedule}

[Timer]
{calendars}Persistent=true
RandomizedDelaySec={jitter}
AccuracySec=1s

[Install]
WantedBy=timers.target
",
                name = job.name,
                schedule = job.schedule_text,
                jitter = job.jitter.as_secs(),
            ),
        });
    }
    Ok(files)
}

/// The crontab block: one line per job. Cron has neither seconds nor per-job time zones nor
/// jitter, so a job that needs the first two is refused and jitter is said to be ignored.
pub fn crontab_block(jobs: &[&Job], exe: &Path, config: &Path) -> Result<String> {
    let mut out = format!("{CRON_BEGIN}\n");
    for job in jobs {
        if !job.schedule.whole_minutes() {
            bail!(
                "job '{}': schedule '{}' has seconds; cron runs whole minutes: use the daemon or systemd timers",
                job.name, job.schedule_text
            );
        }
        if job.timezone != "local" {
            bail!(
                "job '{}': cron runs in the system's time zone, not {}: use the daemon or systemd timers",
                job.name, job.timezone
            );
        }
        let fields: Vec<&str> = job.schedule_text.split_whitespace().collect();
        let when = match fields.len() {
            6 => fields[1..].join(" "),
            _ => fields.join(" "),
        };
        if !job.jitter.is_zero() {
            out.push_str(&format!(
                "# job {}: cron does not apply its jitter\n",
                job.name
            ));
        }
        out.push_str(&format!(
            "{when} {} --quiet --config {} run-job {}\n",
            quote(&exe.display().to_string()),
            quote(&config.display().to_string()),
            quote(&job.name)
        ));
    }
    out.push_str(CRON_END);
    out.push('\n');
    Ok(out)
}

/// `crontab` without our block (the rest kept as it was).
pub fn without_block(crontab: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in crontab.lines() {
        if line == CRON_BEGIN {
            inside = true;
        } else if line == CRON_END && inside {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
