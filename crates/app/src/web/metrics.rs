//! `/metrics` in Prometheus' text format, and the same figures as JSON (`/api/metrics`).
//! Names: one `bulwark_` prefix, base units as suffixes, `_total` only on counters, event
//! times as `_timestamp_seconds`, 1 = good for status gauges; labels name datastores, jobs
//! and scenarios, never a snapshot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Result;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use super::{status, ApiError, Web};
use crate::daemon::Daemon;

#[derive(Serialize)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub samples: Vec<Sample>,
}

#[derive(Serialize)]
pub struct Sample {
    pub labels: BTreeMap<&'static str, String>,
    pub value: f64,
}

/// The families in the order they are printed; each is declared once with its help.
struct Families(Vec<Family>);

impl Families {
    fn add(&mut self, name: &'static str, kind: &'static str, help: &'static str) -> &mut Family {
        let at = self.0.len();
        self.0.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        &mut self.0[at]
    }
}

impl Family {
    fn put(&mut self, labels: &[(&'static str, &str)], value: f64) -> &mut Self {
        self.samples.push(Sample {
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        });
        self
    }
}

fn secs(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn time_of(v: &Value) -> Option<f64> {
    v.as_str()?.parse::<Timestamp>().ok().map(secs)
}

fn bool_gauge(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub fn collect(d: &Daemon) -> Result<Vec<Family>> {
    let mut f = Families(Vec::new());
    let version = env!("CARGO_PKG_VERSION");
    f.add(
        "bulwark_build_info",
        "gauge",
        "Always 1; the version as a label.",
    )
    .put(&[("version", version)], 1.0);
    f.add(
        "bulwark_daemon_start_timestamp_seconds",
        "gauge",
        "When the daemon started.",
    )
    .put(&[], secs(d.started));
    let state_ok = d
        .state_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_none();
    f.add(
        "bulwark_state_ok",
        "gauge",
        "1 while the state database takes writes.",
    )
    .put(&[], bool_gauge(state_ok));

    let open = d.with_state(|s| s.alerts(true))?;
    let alerts = f.add("bulwark_alerts_open", "gauge", "Open alerts by severity.");
    for severity in ["warning", "critical"] {
        let n = open.iter().filter(|a| a.severity == severity).count();
        alerts.put(&[("severity", severity)], n as f64);
    }
    let deliveries = f.add(
        "bulwark_alert_deliveries_total",
        "counter",
        "Alert notifications by channel and whether they were delivered (after retries).",
    );
    for (channel, ok, n) in d.with_state(|s| s.delivery_counts())? {
        let result = if ok { "success" } else { "failed" };
        deliveries.put(&[("channel", &channel), ("result", result)], n as f64);
    }

    let survey = d.survey();
    let assess = survey.as_ref().and_then(|s| s.assess.clone());
    let config = d.config();
    let stats: BTreeMap<String, _> = d
        .with_state(|s| s.source_stats())?
        .into_iter()
        .map(|s| (s.source.clone(), s))
        .collect();
    let services: BTreeMap<String, Value> = assess
        .as_ref()
        .and_then(|a| a["services"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), s)))
        .collect();

    let names: Vec<(&str, &str)> = config
        .config
        .sources
        .iter()
        .map(|(n, s)| (n.as_str(), s.kind.config_name()))
        .collect();
    let per_source = |f: &mut Families,
                      name: &'static str,
                      kind: &'static str,
                      help: &'static str,
                      value: &dyn Fn(&str) -> Option<f64>| {
        let fam = f.add(name, kind, help);
        for (n, k) in &names {
            if let Some(v) = value(n) {
                fam.put(&[("datastore", n), ("kind", k)], v);
            }
        }
    };
    let service = |n: &str| services.get(n);
    per_source(
        &mut f,
        "bulwark_datastore_up",
        "gauge",
        "1 when the datastore answered the last health probe.",
        &|n| {
            service(n)
                .and_then(|s| s["details"]["health"]["reachable"].as_bool())
                .map(bool_gauge)
        },
    );
    per_source(
        &mut f,
        "bulwark_datastore_healthy",
        "gauge",
        "1 when the last assessment found the datastore healthy (within its RPO, drilled).",
        &|n| {
            service(n)
                .and_then(|s| s["status"].as_str())
                .map(|s| bool_gauge(s == "healthy"))
        },
    );
    per_source(
        &mut f,
        "bulwark_datastore_last_success_timestamp_seconds",
        "gauge",
        "When the datastore's last successful backup ended.",
        &|n| stats.get(n).and_then(|s| s.last_success).map(secs),
    );
    per_source(
        &mut f,
        "bulwark_datastore_last_attempt_timestamp_seconds",
        "gauge",
        "When the datastore's last backup attempt ended, successful or not.",
        &|n| stats.get(n).map(|s| secs(s.last_attempt)),
    );
    {
        let fam = f.add(
            "bulwark_datastore_backups_total",
            "counter",
            "Backups of the datastore run by scheduled jobs, by result.",
        );
        for (n, k) in &names {
            let st = stats.get(*n);
            fam.put(
                &[("datastore", n), ("kind", k), ("result", "success")],
                st.map_or(0.0, |s| s.successes as f64),
            );
            fam.put(
                &[("datastore", n), ("kind", k), ("result", "failure")],
                st.map_or(0.0, |s| s.failures as f64),
            );
        }
    }
    per_source(
        &mut f,
        "bulwark_datastore_backup_duration_seconds",
        "gauge",
        "How long the datastore's last backup took.",
        &|n| stats.get(n).and_then(|s| s.last_duration_secs),
    );
    per_source(
        &mut f,
        "bulwark_datastore_backup_added_bytes",
        "gauge",
        "Bytes the datastore's last backup added to the repository (after dedup and compression).",
        &|n| {
            stats
                .get(n)
                .and_then(|s| s.last_bytes_added)
                .map(|b| b as f64)
        },
    );
    per_source(
        &mut f,
        "bulwark_datastore_rpo_target_seconds",
        "gauge",
        "The datastore's recovery point objective.",
        &|n| service(n).and_then(|s| s["details"]["targets"]["rpo_secs"].as_f64()),
    );
    per_source(
        &mut f,
        "bulwark_datastore_rto_target_seconds",
        "gauge",
        "The datastore's recovery time objective.",
        &|n| service(n).and_then(|s| s["details"]["targets"]["rto_secs"].as_f64()),
    );
    per_source(&mut f, "bulwark_datastore_recovery_point_timestamp_seconds", "gauge",
        "The newest point the datastore can be recovered to (for PostgreSQL with WAL archiving: the newest archived WAL).",
        &|n| service(n).and_then(|s| time_of(&s["details"]["recovery_point"]["time"])));

    let repo = assess
        .as_ref()
        .map(|a| a["repository"].clone())
        .unwrap_or_default();
    f.add(
        "bulwark_repository_up",
        "gauge",
        "1 when the repository could be opened and listed.",
    )
    .put(&[], bool_gauge(repo["reachable"].as_bool() == Some(true)));
    if let Some(v) = repo["size_bytes"].as_f64() {
        f.add(
            "bulwark_repository_size_bytes",
            "gauge",
            "Bytes stored in the repository.",
        )
        .put(&[], v);
    }
    if let Some(v) = repo["snapshots"].as_f64() {
        f.add(
            "bulwark_repository_snapshots",
            "gauge",
            "Snapshots in the repository.",
        )
        .put(&[], v);
    }
    if let Some(t) = time_of(&repo["last_check"]["time"]) {
        f.add(
            "bulwark_repository_last_check_timestamp_seconds",
            "gauge",
            "When the repository was last checked.",
        )
        .put(&[], t);
        f.add(
            "bulwark_repository_check_ok",
            "gauge",
            "1 when the last check found no damage.",
        )
        .put(
            &[],
            bool_gauge(repo["last_check"]["ok"].as_bool() == Some(true)),
        );
    }
    if let Some(audit) = survey.as_ref().and_then(|s| s.audit.as_ref()) {
        f.add(
            "bulwark_audit_chain_ok",
            "gauge",
            "1 when every audit log entry is intact, in order and linked up to the repository's seal.",
        )
        .put(&[], bool_gauge(audit["ok"].as_bool() == Some(true)));
    }
    if let Some(p) = status::disk_used_percent(d) {
        f.add("bulwark_repository_disk_used_ratio", "gauge",
            "How full the file system holding the repository (or, for object storage, the state) is, 0 to 1.")
            .put(&[], p / 100.0);
    }

    let drills = d.with_state(|s| s.drills(500))?;
    let mut newest: BTreeMap<String, &crate::daemon::state::Drill> = BTreeMap::new();
    for dr in &drills {
        let scenario = dr.scenario.clone().unwrap_or_else(|| "sources".into());
        newest.entry(scenario).or_insert(dr);
    }
    let per_scenario =
        |f: &mut Families,
         name,
         help,
         value: &dyn Fn(&crate::daemon::state::Drill) -> Option<f64>| {
            let fam = f.add(name, "gauge", help);
            for (s, dr) in &newest {
                if let Some(v) = value(dr) {
                    fam.put(&[("scenario", s)], v);
                }
            }
        };
    per_scenario(
        &mut f,
        "bulwark_scenario_last_drill_timestamp_seconds",
        "When the scenario was last drilled.",
        &|dr| Some(secs(dr.time)),
    );
    per_scenario(
        &mut f,
        "bulwark_scenario_drill_passed",
        "1 when the scenario's last drill restored and verified everything within its targets.",
        &|dr| Some(bool_gauge(dr.result == "passed")),
    );
    per_scenario(
        &mut f,
        "bulwark_scenario_drill_rto_seconds",
        "The slowest restore of the scenario's last drill.",
        &|dr| dr.rto_secs,
    );
    per_scenario(
        &mut f,
        "bulwark_scenario_drill_rpo_seconds",
        "The oldest recovery point in the scenario's last drill.",
        &|dr| dr.rpo_secs,
    );
    per_scenario(
        &mut f,
        "bulwark_scenario_rto_target_seconds",
        "The RTO target the scenario's last drill was judged against.",
        &|dr| dr.rto_target_secs,
    );
    per_scenario(
        &mut f,
        "bulwark_scenario_rpo_target_seconds",
        "The RPO target the scenario's last drill was judged against.",
        &|dr| dr.rpo_target_secs,
    );

    let jobs = status::jobs(d)?;
    let per_job =
        |f: &mut Families, name, kind, help, value: &dyn Fn(&status::JobView) -> Option<f64>| {
            let fam = f.add(name, kind, help);
            for j in &jobs {
                if let Some(v) = value(j) {
                    fam.put(&[("job", &j.name), ("kind", &j.kind)], v);
                }
            }
        };
    per_job(
        &mut f,
        "bulwark_job_next_run_timestamp_seconds",
        "gauge",
        "When the job is next due.",
        &|j| j.next_run.map(secs),
    );
    per_job(
        &mut f,
        "bulwark_job_interval_seconds",
        "gauge",
        "The time between the job's scheduled runs.",
        &|j| j.interval_secs.map(|s| s as f64),
    );
    per_job(
        &mut f,
        "bulwark_job_last_run_timestamp_seconds",
        "gauge",
        "When the job's last run started.",
        &|j| j.last_run.as_ref().map(|r| secs(r.started)),
    );
    per_job(
        &mut f,
        "bulwark_job_last_success_timestamp_seconds",
        "gauge",
        "When the job's last successful run ended.",
        &|j| j.last_success.map(secs),
    );
    per_job(
        &mut f,
        "bulwark_job_last_run_ok",
        "gauge",
        "1 when the job's last finished run succeeded.",
        &|j| {
            j.last_run.as_ref().filter(|r| r.ended.is_some()).map(|r| {
                bool_gauge(matches!(
                    r.result,
                    crate::daemon::state::RunResult::Success
                        | crate::daemon::state::RunResult::Partial
                ))
            })
        },
    );
    per_job(
        &mut f,
        "bulwark_job_running",
        "gauge",
        "1 while the job runs.",
        &|j| Some(bool_gauge(j.running)),
    );
    {
        let fam = f.add(
            "bulwark_job_runs_total",
            "counter",
            "Runs of the job, by result.",
        );
        for j in &jobs {
            for (result, n) in &j.runs_by_result {
                if result != "running" {
                    fam.put(
                        &[("job", &j.name), ("kind", &j.kind), ("result", result)],
                        *n as f64,
                    );
                }
            }
        }
    }
    Ok(f.0
        .into_iter()
        .filter(|fam| !fam.samples.is_empty())
        .collect())
}

/// The text exposition format, version 0.0.4.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for fam in families {
        let _ = writeln!(out, "# HELP {} {}", fam.name, fam.help);
        let _ = writeln!(out, "# TYPE {} {}", fam.name, fam.kind);
        for s in &fam.samples {
            out.push_str(fam.name);
            if !s.labels.is_empty() {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(out, " {}", s.value);
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn prometheus(State(web): State<Arc<Web>>) -> Result<impl IntoResponse, ApiError> {
    let text = render(&collect(&web.daemon)?);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

pub async fn json(State(web): State<Arc<Web>>) -> super::Answer<Vec<Family>> {
    Ok(Json(collect(&web.daemon)?))
}
