//! Alerts: the rules that look at the state database and the latest assessment, one open alert
//! per rule and datastore (fired once, repeated while critical and unacknowledged, resolved
//! when the condition clears), and the notifications that go to the channels.

pub mod channels;
pub mod settings;

use std::collections::BTreeSet;

use anyhow::Result;
use jiff::Timestamp;

use crate::daemon::Daemon;
use settings::Severity;

/// A condition that holds now: an alert should be open for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub rule: &'static str,
    pub datastore: String,
    pub severity: Severity,
    pub summary: String,
}

/// What to tell the channels.
#[derive(Debug, Clone)]
pub struct Notification {
    pub alert: crate::daemon::state::Alert,
    /// `firing` or `resolved`.
    pub status: &'static str,
}

/// The conditions that hold now.
pub fn conditions(d: &Daemon, now: Timestamp) -> Result<Vec<Condition>> {
    let config = d.config();
    let alerts = &config.config.alerts;
    let mut out = Vec::new();
    let mut push = |rule, datastore: &str, severity, summary: String| {
        out.push(Condition {
            rule,
            datastore: datastore.to_string(),
            severity,
            summary,
        })
    };
    for s in d.with_state(|s| s.source_stats())? {
        if s.last_success.is_none_or(|ok| ok < s.last_attempt) {
            let why = s
                .last_error
                .clone()
                .unwrap_or_else(|| "no reason recorded".into());
            push(
                "backup_failed",
                &s.source,
                Severity::Critical,
                format!("the last backup of {} failed: {why}", s.source),
            );
        }
    }
    let survey = d.survey();
    let assess = survey.as_ref().and_then(|s| s.assess.as_ref());
    for svc in assess
        .and_then(|a| a["services"].as_array())
        .into_iter()
        .flatten()
    {
        let name = svc["name"].as_str().unwrap_or_default();
        let details = &svc["details"];
        if details["health"]["reachable"] == false {
            push(
                "datastore_unreachable",
                name,
                Severity::Critical,
                format!("{name} cannot be reached"),
            );
        }
        if let (Some(age), Some(rpo)) = (
            details["recovery_point_age_secs"].as_f64(),
            details["targets"]["rpo_secs"].as_f64(),
        ) {
            let hours = |s: f64| format!("{:.1} h", s / 3600.0);
            if age > 2.0 * rpo {
                push(
                    "backup_age",
                    name,
                    Severity::Critical,
                    format!(
                        "the newest recovery point of {name} is {} old, twice its RPO of {}",
                        hours(age),
                        hours(rpo)
                    ),
                );
            } else if age > rpo {
                push(
                    "backup_age",
                    name,
                    Severity::Warning,
                    format!(
                        "the newest recovery point of {name} is {} old, over its RPO of {}",
                        hours(age),
                        hours(rpo)
                    ),
                );
            }
        }
        let archiving: Vec<&str> = details["health"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str())
            .filter(|w| w.contains("archiv"))
            .collect();
        if svc["kind"] == "postgres" && !archiving.is_empty() {
            push(
                "wal_archiving",
                name,
                Severity::Critical,
                format!("WAL archiving of {name}: {}", archiving.join("; ")),
            );
        }
    }
    if let Some(repo) = assess.map(|a| &a["repository"]) {
        if repo["last_check"]["ok"] == false {
            let errors = repo["last_check"]["error_count"].as_u64().unwrap_or(0);
            push(
                "check_damage",
                "repository",
                Severity::Critical,
                format!("the last check found {errors} error(s) in the repository"),
            );
        }
    }
    if let Some(audit) = survey.as_ref().and_then(|s| s.audit.as_ref()) {
        if audit["ok"] == false {
            let problems: Vec<&str> = audit["problems_text"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str())
                .collect();
            push(
                "audit_chain",
                "repository",
                Severity::Critical,
                format!("the audit log was tampered with: {}", problems.join("; ")),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for drill in d.with_state(|s| s.drills(100))? {
        let scenario = drill.scenario.clone().unwrap_or_else(|| "sources".into());
        if !seen.insert(scenario.clone()) {
            continue; // only the newest drill of each scenario counts
        }
        if drill.result != "passed" {
            push(
                "drill_failed",
                &scenario,
                Severity::Warning,
                format!("the last drill of {scenario} ended {}", drill.result),
            );
        }
    }
    if let Some(used) = crate::web::disk_used_percent(d) {
        if used > alerts.disk_critical_percent {
            push(
                "disk_full",
                "repository",
                Severity::Critical,
                format!("the repository's disk is {used:.1}% full"),
            );
        } else if used > alerts.disk_warning_percent {
            push(
                "disk_full",
                "repository",
                Severity::Warning,
                format!("the repository's disk is {used:.1}% full"),
            );
        }
    }
    for job in config.config.jobs.values() {
        let stats = d.with_state(|s| s.job_stats(&job.name))?;
        let Some(last) = stats.last.as_ref().map(|r| r.started) else {
            continue;
        };
        let next = job.schedule.next_after(last);
        let after = next.and_then(|n| job.schedule.next_after(n));
        if let (Some(next), Some(after)) = (next, after) {
            // Overdue by more than an interval: the slot after the one owed has passed too.
            if now > after && !d.is_running(&job.name) {
                push(
                    "job_overdue",
                    &job.name,
                    Severity::Warning,
                    format!(
                        "job {} has not run since {last}; it was due at {next}",
                        job.name
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// Brings the alert store in line with `now_true`: fires new alerts, updates changed ones,
/// resolves cleared ones, repeats critical unacknowledged ones; the notifications to send.
pub fn reconcile(d: &Daemon, now_true: &[Condition], now: Timestamp) -> Result<Vec<Notification>> {
    let repeat = jiff::SignedDuration::try_from(d.config().config.alerts.repeat_interval())?;
    let mut out = Vec::new();
    for c in now_true {
        let open = d.with_state(|s| s.open_alert(c.rule, &c.datastore))?;
        match open {
            None => {
                let id = d.with_state(|s| {
                    s.fire(c.rule, &c.datastore, c.severity.as_str(), &c.summary, now)
                })?;
                out.push(Notification {
                    alert: crate::daemon::state::Alert {
                        id,
                        rule: c.rule.to_string(),
                        datastore: c.datastore.clone(),
                        severity: c.severity.as_str().to_string(),
                        summary: c.summary.clone(),
                        fired: now,
                        resolved: None,
                        acknowledged: None,
                        acknowledged_by: None,
                    },
                    status: "firing",
                });
            }
            Some((mut alert, last_sent)) => {
                let escalated = c.severity == Severity::Critical && alert.severity != "critical";
                if alert.severity != c.severity.as_str() || alert.summary != c.summary {
                    d.with_state(|s| s.update_alert(alert.id, c.severity.as_str(), &c.summary))?;
                    alert.severity = c.severity.as_str().into();
                    alert.summary = c.summary.clone();
                }
                let due = last_sent.is_none_or(|t| t.checked_add(repeat).is_ok_and(|at| now >= at));
                let repeat_now =
                    c.severity == Severity::Critical && alert.acknowledged.is_none() && due;
                if escalated || repeat_now {
                    out.push(Notification {
                        alert,
                        status: "firing",
                    });
                }
            }
        }
    }
    for alert in d.with_state(|s| s.alerts(true))? {
        let holds = now_true
            .iter()
            .any(|c| c.rule == alert.rule && c.datastore == alert.datastore);
        if !holds {
            d.with_state(|s| s.resolve_alert(alert.id, now))?;
            let mut alert = alert;
            alert.resolved = Some(now);
            out.push(Notification {
                alert,
                status: "resolved",
            });
        }
    }
    Ok(out)
}
