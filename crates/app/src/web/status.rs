//! `/api/status` and `/api/jobs`: the state database's history joined with the latest
//! assessment of the stack (see `daemon::survey`).

use std::collections::BTreeMap;

use anyhow::Result;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

use crate::daemon::state::{Run, SourceStats};
use crate::daemon::Daemon;

#[derive(Serialize)]
pub struct JobView {
    pub name: String,
    pub kind: String,
    pub schedule: String,
    pub timezone: String,
    pub next_run: Option<Timestamp>,
    /// Seconds between the next two slots: how often a run is expected.
    pub interval_secs: Option<i64>,
    pub running: bool,
    pub last_run: Option<Run>,
    pub last_success: Option<Timestamp>,
    pub runs_by_result: BTreeMap<String, u64>,
}

pub fn jobs(d: &Daemon) -> Result<Vec<JobView>> {
    let now = Timestamp::now();
    let config = d.config();
    config
        .config
        .jobs
        .values()
        .map(|job| {
            let stats = d.with_state(|s| s.job_stats(&job.name))?;
            let next = job.schedule.next_after(now);
            let after = next.and_then(|n| job.schedule.next_after(n));
            Ok(JobView {
                name: job.name.clone(),
                kind: job.action.kind().into(),
                schedule: job.schedule_text.clone(),
                timezone: job.timezone.clone(),
                next_run: next,
                interval_secs: next.zip(after).map(|(a, b)| b.as_second() - a.as_second()),
                running: d.is_running(&job.name),
                last_run: stats.last,
                last_success: stats.last_success,
                runs_by_result: stats.runs_by_result,
            })
        })
        .collect()
}

/// The next slot of any backup job that covers `source` (a job naming no sources backs up
/// all of them).
fn next_backup(
    jobs: &BTreeMap<String, crate::jobs::Job>,
    source: &str,
    now: Timestamp,
) -> Option<Timestamp> {
    jobs.values()
        .filter(|j| match &j.action {
            crate::jobs::Action::Backup { sources } => {
                sources.is_empty() || sources.iter().any(|s| s == source)
            }
            _ => false,
        })
        .filter_map(|j| j.schedule.next_after(now))
        .min()
}

/// Seconds from `t` to now.
fn age(t: Timestamp, now: Timestamp) -> f64 {
    (now.as_millisecond() - t.as_millisecond()) as f64 / 1000.0
}

pub fn status(d: &Daemon) -> Result<Value> {
    let now = Timestamp::now();
    let survey = d.survey();
    let assess = survey.as_ref().and_then(|s| s.assess.as_ref());
    let services: BTreeMap<&str, &Value> = assess
        .and_then(|a| a["services"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?, s)))
        .collect();
    let stats: BTreeMap<String, SourceStats> = d
        .with_state(|s| s.source_stats())?
        .into_iter()
        .map(|s| (s.source.clone(), s))
        .collect();
    let config = d.config();
    let day = now.checked_sub(jiff::SignedDuration::from_hours(24))?;
    let week = now.checked_sub(jiff::SignedDuration::from_hours(7 * 24))?;
    let month = now.checked_sub(jiff::SignedDuration::from_hours(30 * 24))?;
    let rates_7d = d.with_state(|s| s.source_success_rates(week))?;
    let rates_30d = d.with_state(|s| s.source_success_rates(month))?;
    let mut worst_age: Option<f64> = None;
    let datastores: Vec<Value> = config
        .config
        .sources
        .iter()
        .map(|(name, source)| {
            let st = stats.get(name);
            let service = services.get(name.as_str()).copied();
            let point_age = service.and_then(|s| s["details"]["recovery_point_age_secs"].as_f64());
            let backup_age = point_age.or_else(|| {
                st.and_then(|s| s.last_success).map(|t| age(t, now))
            });
            if let Some(a) = backup_age {
                worst_age = Some(worst_age.map_or(a, |w: f64| w.max(a)));
            }
            json!({
                "name": name,
                "kind": source.kind.config_name(),
                "status": service.and_then(|s| s["status"].as_str()).unwrap_or("unknown"),
                "reachable": service.and_then(|s| s["details"]["health"]["reachable"].as_bool()),
                "rpo_target_secs": service.and_then(|s| s["details"]["targets"]["rpo_secs"].as_u64()),
                "recovery_point": service.map(|s| s["details"]["recovery_point"]["time"].clone()),
                "oldest_point": service.map(|s| s["details"]["oldest_point"].clone()),
                "next_backup": next_backup(&config.config.jobs, name, now),
                "last_backup_age_secs": backup_age,
                "last_success": st.and_then(|s| s.last_success),
                "last_attempt": st.map(|s| s.last_attempt),
                "last_error": st.and_then(|s| s.last_error.clone()),
                "backups_succeeded": st.map_or(0, |s| s.successes),
                "backups_failed": st.map_or(0, |s| s.failures),
                "last_duration_secs": st.and_then(|s| s.last_duration_secs),
                "last_bytes_added": st.and_then(|s| s.last_bytes_added),
                "last_size_bytes": st.and_then(|s| s.last_size_bytes),
                "success_rate_7d": rates_7d.get(name),
                "success_rate_30d": rates_30d.get(name),
                "last_drill": service.map(|s| s["details"]["last_drill"].clone()),
                "findings": service.map(|s| s["findings"].clone()),
            })
        })
        .collect();
    let recent = d.with_state(|s| s.runs(None, 1000, false))?;
    let last_day: Vec<&Run> = recent.iter().filter(|r| r.started >= day).collect();
    let failed_day = last_day
        .iter()
        .filter(|r| {
            matches!(
                r.result,
                crate::daemon::state::RunResult::Failed | crate::daemon::state::RunResult::Timeout
            )
        })
        .count();
    let alerts = d.with_state(|s| s.alerts(true))?;
    let state_error = d
        .state_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut monitoring = assess
        .and_then(|a| a["overall_status"].as_str())
        .unwrap_or("unknown")
        .to_string();
    if monitoring == "healthy" && (failed_day > 0 || state_error.is_some()) {
        monitoring = "degraded".into();
    }
    Ok(json!({
        "monitoring_status": monitoring,
        "time": now,
        "current_metrics": {
            "backup_success_rate": d.with_state(|s| s.success_rate(week))?,
            "last_backup_age_hours": worst_age.map(|a| a / 3600.0),
            "disk_space_used_percent": disk_used_percent(d),
        },
        "active_alerts": alerts,
        "history_stats": {
            "runs_last_24h": last_day.len(),
            "failed_runs_last_24h": failed_day,
            "backup_success_rate_7d": d.with_state(|s| s.success_rate(week))?,
            "backup_success_rate_30d": d.with_state(|s| s.success_rate(month))?,
        },
        "datastores": datastores,
        "repository": assess.map(|a| a["repository"].clone()),
        "recommendations": assess.map(|a| a["recommendations"].clone()),
        "daemon": {
            "version": env!("CARGO_PKG_VERSION"),
            "started": d.started,
            "state_error": state_error,
            "assessed_at": survey.as_ref().map(|s| s.time),
            "assessment_error": survey.as_ref().and_then(|s| s.error.clone()),
        },
    }))
}

/// The local repository's file system, or else the state directory's: how full it is.
pub fn disk_used_percent(d: &Daemon) -> Option<f64> {
    let config = d.config();
    let repo_url = std::env::var("BULWARK_REPOSITORY").ok().or_else(|| {
        let c = &config.config;
        c.default_repository
            .as_ref()
            .and_then(|n| c.repositories.get(n))
            .map(|r| r.url.clone())
    });
    let path = match repo_url.map(|u| engine::store::Backend::parse(&u)) {
        Some(Ok(engine::store::Backend::Local(p))) => p,
        _ => d.state_dir().to_path_buf(),
    };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the struct for a NUL-terminated path.
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut v) } != 0 || v.f_blocks == 0 {
        return None;
    }
    let used = v.f_blocks.saturating_sub(v.f_bfree) as f64;
    let usable = used + v.f_bavail as f64;
    Some((used / usable * 1000.0).round() / 10.0)
}
