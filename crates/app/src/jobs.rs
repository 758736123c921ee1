//! `[jobs.NAME]`: what the daemon (or a systemd timer, or cron) runs, and when. A job is a
//! kind of work and a schedule; it runs as one or more ordinary `bulwark` command lines, so a
//! scheduled backup is exactly the backup a person would run.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::config::{locate, parse_duration};
use crate::cron::Schedule;

/// A job section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    kind: String,
    schedule: String,
    timezone: Option<String>,
    jitter: Option<String>,
    timeout: Option<String>,
    ping_url: Option<String>,
    repository: Option<String>,
    #[serde(default)]
    sources: Vec<String>,
    scenario: Option<String>,
    #[serde(default)]
    read_data: bool,
    read_data_subset: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub action: Action,
    pub schedule: Schedule,
    /// The expression as written, and its zone's name, for listings and systemd units.
    pub schedule_text: String,
    pub timezone: String,
    /// Each run starts up to this much after its slot (the same delay for the same slot).
    pub jitter: Duration,
    pub timeout: Duration,
    /// A healthchecks-style URL: `/start` when a run begins, itself on success, `/fail`.
    pub ping_url: Option<String>,
    /// The repository the job works on (default: the configured default).
    pub repository: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The named sources (all when empty) as one backup set.
    Backup {
        sources: Vec<String>,
    },
    Check {
        read_data: bool,
        subset: Option<String>,
    },
    /// Forget by the configured retention policy, then prune.
    Retention,
    Copy {
        to: String,
    },
    Drill {
        scenario: Option<String>,
        sources: Vec<String>,
    },
}

pub const KINDS: [&str; 5] = ["backup", "check", "retention", "copy", "drill"];

/// A job runs until this unless it sets `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Backup { .. } => "backup",
            Action::Check { .. } => "check",
            Action::Retention => "retention",
            Action::Copy { .. } => "copy",
            Action::Drill { .. } => "drill",
        }
    }

    /// The `bulwark` command lines (after the global options) the job runs, in order.
    pub fn command_lines(&self) -> Vec<Vec<String>> {
        let line: Vec<String> = match self {
            Action::Backup { sources } => {
                let mut l = vec!["backup".to_string()];
                l.extend(sources.iter().cloned());
                l
            }
            Action::Check { read_data, subset } => {
                let mut l = vec!["check".to_string()];
                match subset {
                    Some(s) => l.extend(["--read-data-subset".into(), s.clone()]),
                    None if *read_data => l.push("--read-data".into()),
                    None => {}
                }
                l
            }
            Action::Retention => vec!["forget".into(), "--prune".into()],
            Action::Copy { to } => vec!["copy".into(), "--to".into(), to.clone()],
            Action::Drill { scenario, sources } => {
                let mut l = vec!["drill".to_string()];
                match scenario {
                    Some(s) => l.extend(["--scenario".into(), s.clone()]),
                    None => l.extend(sources.iter().cloned()),
                }
                l
            }
        };
        vec![line]
    }
}

/// What a job section may refer to.
pub struct Known<'a> {
    pub sources: &'a BTreeMap<String, crate::config::SourceConfig>,
    pub scenarios: &'a [String],
    pub repositories: &'a [String],
}

/// Checks every job against what the config defines; errors start with `LINE: `.
pub fn parse(
    text: &str,
    raw: BTreeMap<String, RawJob>,
    known: &Known,
) -> Result<BTreeMap<String, Job>, String> {
    raw.into_iter()
        .map(|(name, r)| job(text, &name, r, known).map(|j| (name, j)))
        .collect()
}

fn job(text: &str, name: &str, r: RawJob, known: &Known) -> Result<Job, String> {
    let section = format!("jobs.{name}");
    let err = |key: &str, msg: String| {
        format!(
            "{}: [{section}] {key}: {msg}",
            locate(text, &section, Some(key))
        )
    };
    let duration = |key: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
        v.as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| err(key, e.to_string()))
    };
    let zone_name = r.timezone.clone().unwrap_or_else(|| "local".into());
    let zone = match r.timezone.as_deref() {
        None => TimeZone::system(),
        Some(z) => TimeZone::get(z).map_err(|e| err("timezone", format!("'{z}': {e}")))?,
    };
    let schedule = Schedule::parse(&r.schedule, zone).map_err(|e| err("schedule", e))?;
    for s in &r.sources {
        if !known.sources.contains_key(s) {
            let all: Vec<&str> = known.sources.keys().map(String::as_str).collect();
            return Err(err(
                "sources",
                format!(
                    "no [sources.{s}] section (the sources are: {})",
                    all.join(", ")
                ),
            ));
        }
    }
    let unused = |key: &str, set: bool| match set {
        true => Err(err(key, format!("a {} job takes no `{key}`", r.kind))),
        false => Ok(()),
    };
    let action = match r.kind.as_str() {
        "backup" => {
            unused("scenario", r.scenario.is_some())?;
            Action::Backup { sources: r.sources }
        }
        "check" => {
            unused("sources", !r.sources.is_empty())?;
            if let Some(s) = &r.read_data_subset {
                let v: Result<f64, _> = s.trim_end_matches('%').parse();
                if !v.is_ok_and(|v| (0.0..=100.0).contains(&v)) {
                    return Err(err(
                        "read_data_subset",
                        format!("'{s}' is not a percentage like \"10%\""),
                    ));
                }
            }
            Action::Check {
                read_data: r.read_data,
                subset: r.read_data_subset,
            }
        }
        "retention" => {
            unused("sources", !r.sources.is_empty())?;
            Action::Retention
        }
        "copy" => {
            let to = r.to.ok_or_else(|| {
                err(
                    "to",
                    "a copy job needs `to`: a repository name or URL".into(),
                )
            })?;
            let is_url = to.contains(':') || to.contains('/');
            if !is_url && !known.repositories.contains(&to) {
                return Err(err("to", format!("no [repositories.{to}] section")));
            }
            Action::Copy { to }
        }
        "drill" => {
            if let Some(s) = &r.scenario {
                if !known.scenarios.contains(s) {
                    return Err(err(
                        "scenario",
                        format!(
                            "unknown scenario '{s}' (one of {})",
                            known.scenarios.join(", ")
                        ),
                    ));
                }
            }
            Action::Drill {
                scenario: r.scenario,
                sources: r.sources,
            }
        }
        other => {
            return Err(err(
                "kind",
                format!("unknown job kind '{other}' (one of {})", KINDS.join(", ")),
            ))
        }
    };
    if let Some(repo) = &r.repository {
        if !known.repositories.contains(repo) {
            return Err(err(
                "repository",
                format!("no [repositories.{repo}] section"),
            ));
        }
    }
    if let Some(url) = &r.ping_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err("ping_url", format!("'{url}' is not an http(s) URL")));
        }
    }
    Ok(Job {
        name: name.to_string(),
        action,
        schedule,
        schedule_text: r.schedule,
        timezone: zone_name,
        jitter: duration("jitter", &r.jitter)?.unwrap_or_default(),
        timeout: duration("timeout", &r.timeout)?.unwrap_or(DEFAULT_TIMEOUT),
        ping_url: r.ping_url,
        repository: r.repository,
    })
}

impl Job {
    /// How long after `slot` this job's run starts: a fixed share of the jitter for each slot,
    /// so a restart does not draw another delay.
    pub fn delay_for(&self, slot: jiff::Timestamp) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        let mut h = blake3::Hasher::new();
        h.update(self.name.as_bytes());
        h.update(&slot.as_second().to_le_bytes());
        let n = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or_default());
        Duration::from_millis(n % self.jitter.as_millis().max(1) as u64)
    }
}
