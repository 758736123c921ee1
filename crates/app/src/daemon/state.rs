//! The daemon's state: every job run with its report and log excerpt, per-source results, the
//! drill index, the metric history and the alerts, in one SQLite file under the state
//! directory. SQLite commits atomically (write-ahead log), so a SIGKILL at any moment leaves
//! the last committed state; the schema is versioned (`PRAGMA user_version`) and migrated
//! forward on open. Jobs run in their own processes and write here too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use jiff::Timestamp;
use rusqlite::{params, Connection};
use serde::Serialize;

/// Each entry moves the schema one version forward; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    first_seen REAL NOT NULL
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    kind TEXT NOT NULL,
    trigger TEXT NOT NULL,
    slot REAL,
    pid INTEGER,
    started REAL NOT NULL,
    ended REAL,
    result TEXT NOT NULL,
    exit_code INTEGER,
    error TEXT,
    report TEXT,
    log TEXT
);
CREATE INDEX runs_by_job ON runs (job, started);
CREATE TABLE source_runs (
    run INTEGER NOT NULL REFERENCES runs (id),
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    ok INTEGER NOT NULL,
    time REAL NOT NULL,
    duration REAL,
    bytes INTEGER,
    bytes_added INTEGER,
    error TEXT
);
CREATE INDEX source_runs_by_source ON source_runs (source, time);
CREATE TABLE drills (
    id TEXT PRIMARY KEY,
    run INTEGER REFERENCES runs (id),
    time REAL NOT NULL,
    scenario TEXT,
    result TEXT NOT NULL,
    rto_secs REAL,
    rpo_secs REAL,
    rto_target_secs REAL,
    rpo_target_secs REAL
);
CREATE TABLE samples (
    time REAL NOT NULL,
    series TEXT NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX samples_by_series ON samples (series, time);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL,
    datastore TEXT NOT NULL DEFAULT '',
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    fired REAL NOT NULL,
    resolved REAL,
    acknowledged REAL,
    acknowledged_by TEXT,
    last_sent REAL
);
"#,
    r#"
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert INTEGER NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    time REAL NOT NULL,
    ok INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX alerts_open ON alerts (rule, datastore) WHERE resolved IS NULL;
"#,
];

pub struct State {
    conn: Connection,
    path: PathBuf,
}

/// How a run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Running,
    Success,
    /// Finished, but some items or sources could not be backed up.
    Partial,
    Failed,
    /// Stopped by a signal (shutdown, SIGKILL of the host): never counts as done.
    Interrupted,
    /// Ran past its timeout and was stopped.
    Timeout,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Running => "running",
            RunResult::Success => "success",
            RunResult::Partial => "partial",
            RunResult::Failed => "failed",
            RunResult::Interrupted => "interrupted",
            RunResult::Timeout => "timeout",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => RunResult::Running,
            "success" => RunResult::Success,
            "partial" => RunResult::Partial,
            "interrupted" => RunResult::Interrupted,
            "timeout" => RunResult::Timeout,
            _ => RunResult::Failed,
        }
    }
}

/// One run as listed by the API.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub job: String,
    pub kind: String,
    pub trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<Timestamp>,
    pub started: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    pub result: RunResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// A run about to start.
pub struct NewRun<'a> {
    pub job: &'a str,
    pub kind: &'a str,
    pub trigger: &'a str,
    pub slot: Option<Timestamp>,
}

/// What a finished run leaves.
pub struct Outcome {
    pub result: RunResult,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub report: Option<serde_json::Value>,
    pub log: String,
}

/// One source's part in a backup run.
pub struct SourceRun<'a> {
    pub source: &'a str,
    pub kind: &'a str,
    pub ok: bool,
    pub duration: Option<f64>,
    pub bytes: Option<u64>,
    pub bytes_added: Option<u64>,
    pub error: Option<&'a str>,
}

/// One drill, as the index keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    pub id: String,
    pub run: Option<i64>,
    pub time: Timestamp,
    pub scenario: Option<String>,
    pub result: String,
    /// The slowest step's restore time and the oldest step's recovery point, with the
    /// targets of those steps.
    pub rto_secs: Option<f64>,
    pub rpo_secs: Option<f64>,
    pub rto_target_secs: Option<f64>,
    pub rpo_target_secs: Option<f64>,
}

fn secs(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn time(s: f64) -> Timestamp {
    Timestamp::from_millisecond((s * 1000.0).round() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl State {
    /// Opens (creating the directory and the file if needed) and migrates the schema.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        let path = dir.join("state.db");
        let conn = Connection::open(&path)
            .with_context(|| format!("opening the state database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "normal")?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        let mut state = Self { conn, path };
        state.migrate()?;
        Ok(state)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            bail!(
                "the state database {} has schema version {version}, newer than this bulwark knows ({known}); use the newer bulwark",
                self.path.display()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migrating the state database to version {}", i + 1))?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// When the scheduler first saw `job` (recorded now if never): a new job's first slot
    /// is the one after this, not every slot since the epoch.
    pub fn first_seen(&self, job: &str, now: Timestamp) -> Result<Timestamp> {
        self.conn.execute(
            "INSERT OR IGNORE INTO jobs (name, first_seen) VALUES (?1, ?2)",
            params![job, secs(now)],
        )?;
        let s: f64 =
            self.conn
                .query_row("SELECT first_seen FROM jobs WHERE name = ?1", [job], |r| {
                    r.get(0)
                })?;
        Ok(time(s))
    }

    /// The newest schedule slot of `job` that has a run, running or ended, other than an
    /// interrupted one (an interrupted slot is owed a run).
    pub fn last_slot(&self, job: &str) -> Result<Option<Timestamp>> {
        let s: Option<f64> = self.conn.query_row(
            "SELECT max(slot) FROM runs WHERE job = ?1 AND slot IS NOT NULL AND result != 'interrupted'",
            [job],
            |r| r.get(0),
        )?;
        Ok(s.map(time))
    }

    pub fn start_run(&self, run: &NewRun) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (job, kind, trigger, slot, pid, started, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running')",
            params![
                run.job,
                run.kind,
                run.trigger,
                run.slot.map(secs),
                std::process::id(),
                secs(Timestamp::now())
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// This process takes over a run another one recorded as started (the daemon records a
    /// run before it starts `run-job` for it).
    pub fn claim_run(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET pid = ?2 WHERE id = ?1",
            params![id, std::process::id()],
        )?;
        Ok(())
    }

    /// Ends a run only if nothing else did (its process died before it could).
    pub fn finish_if_running(&self, id: i64, result: RunResult, error: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET ended = ?2, result = ?3, error = ?4 WHERE id = ?1 AND result = 'running'",
            params![id, secs(Timestamp::now()), result.as_str(), error],
        )?;
        Ok(())
    }

    pub fn finish_run(&self, id: i64, o: &Outcome) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET ended = ?2, result = ?3, exit_code = ?4, error = ?5, report = ?6, log = ?7 WHERE id = ?1",
            params![
                id,
                secs(Timestamp::now()),
                o.result.as_str(),
                o.exit_code,
                o.error,
                o.report.as_ref().map(|r| r.to_string()),
                o.log
            ],
        )?;
        Ok(())
    }

    /// Runs still marked running whose process is gone (killed with the host, or with
    /// SIGKILL) are recorded as interrupted; returns how many.
    pub fn close_abandoned_runs(&self) -> Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid FROM runs WHERE result = 'running'")?;
        let running: Vec<(i64, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut closed = 0;
        for (id, pid) in running {
            if pid.is_some_and(process_alive) {
                continue;
            }
            self.conn.execute(
                "UPDATE runs SET result = 'interrupted', ended = ?2, error = 'the run ended without recording a result: its process was killed' WHERE id = ?1 AND result = 'running'",
                params![id, secs(Timestamp::now())],
            )?;
            closed += 1;
        }
        Ok(closed)
    }

    pub fn record_sources(&self, run: i64, sources: &[SourceRun]) -> Result<()> {
        let now = secs(Timestamp::now());
        for s in sources {
            self.conn.execute(
                "INSERT INTO source_runs (run, source, kind, ok, time, duration, bytes, bytes_added, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![run, s.source, s.kind, s.ok, now, s.duration, s.bytes.map(|b| b as i64), s.bytes_added.map(|b| b as i64), s.error],
            )?;
        }
        Ok(())
    }

    pub fn record_drill(&self, d: &Drill) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO drills (id, run, time, scenario, result, rto_secs, rpo_secs, rto_target_secs, rpo_target_secs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![d.id, d.run, secs(d.time), d.scenario, d.result, d.rto_secs, d.rpo_secs, d.rto_target_secs, d.rpo_target_secs],
        )?;
        Ok(())
    }

    pub fn add_sample(&self, series: &str, value: f64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO samples (time, series, value) VALUES (?1, ?2, ?3)",
            params![secs(Timestamp::now()), series, value],
        )?;
        Ok(())
    }

    /// The newest runs first; `job` narrows to one job; `with_detail` adds report and log.
    pub fn runs(&self, job: Option<&str>, limit: usize, with_detail: bool) -> Result<Vec<Run>> {
        self.select_runs(job, None, limit, with_detail)
    }

    fn select_runs(
        &self,
        job: Option<&str>,
        id: Option<i64>,
        limit: usize,
        with_detail: bool,
    ) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, job, kind, trigger, slot, started, ended, result, exit_code, error, report, log
             FROM runs WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR id = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![job, id, limit as i64], |r| {
            let report: Option<String> = r.get(10)?;
            Ok(Run {
                id: r.get(0)?,
                job: r.get(1)?,
                kind: r.get(2)?,
                trigger: r.get(3)?,
                slot: r.get::<_, Option<f64>>(4)?.map(time),
                started: time(r.get(5)?),
                ended: r.get::<_, Option<f64>>(6)?.map(time),
                result: RunResult::parse(&r.get::<_, String>(7)?),
                exit_code: r.get(8)?,
                error: r.get(9)?,
                report: report
                    .filter(|_| with_detail)
                    .and_then(|t| serde_json::from_str(&t).ok()),
                log: r.get::<_, Option<String>>(11)?.filter(|_| with_detail),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One run with its report and log.
    pub fn run(&self, id: i64) -> Result<Option<Run>> {
        Ok(self.select_runs(None, Some(id), 1, true)?.pop())
    }

    pub fn drills(&self, limit: usize) -> Result<Vec<Drill>> {
        self.select_drills(None, limit)
    }

    pub fn drill(&self, id: &str) -> Result<Option<Drill>> {
        Ok(self.select_drills(Some(id), 1)?.pop())
    }

    fn select_drills(&self, id: Option<&str>, limit: usize) -> Result<Vec<Drill>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, run, time, scenario, result, rto_secs, rpo_secs, rto_target_secs, rpo_target_secs
             FROM drills WHERE ?1 IS NULL OR id = ?1 ORDER BY time DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![id, limit as i64], |r| {
            Ok(Drill {
                id: r.get(0)?,
                run: r.get(1)?,
                time: time(r.get(2)?),
                scenario: r.get(3)?,
                result: r.get(4)?,
                rto_secs: r.get(5)?,
                rpo_secs: r.get(6)?,
                rto_target_secs: r.get(7)?,
                rpo_target_secs: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// One source's backup history, for `/metrics` and the status.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStats {
    pub source: String,
    pub kind: String,
    pub last_success: Option<Timestamp>,
    pub last_attempt: Timestamp,
    pub successes: u64,
    pub failures: u64,
    pub last_duration_secs: Option<f64>,
    pub last_bytes_added: Option<u64>,
    pub last_error: Option<String>,
    /// What the newest successful backup held.
    pub last_size_bytes: Option<u64>,
}

/// One source's part in one backup run, for the history charts.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePoint {
    pub source: String,
    pub time: Timestamp,
    pub ok: bool,
    pub duration_secs: Option<f64>,
    pub bytes: Option<u64>,
    pub bytes_added: Option<u64>,
}

/// One job's run counts and newest run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobStats {
    pub runs_by_result: BTreeMap<String, u64>,
    pub last: Option<Run>,
    pub last_success: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    pub rule: String,
    pub datastore: String,
    pub severity: String,
    pub summary: String,
    pub fired: Timestamp,
    pub resolved: Option<Timestamp>,
    pub acknowledged: Option<Timestamp>,
    pub acknowledged_by: Option<String>,
}

impl State {
    pub fn source_stats(&self) -> Result<Vec<SourceStats>> {
        let mut stmt = self.conn.prepare(
            "SELECT source, kind, max(CASE WHEN ok THEN time END), max(time), sum(ok), sum(NOT ok),
                (SELECT duration FROM source_runs l WHERE l.source = s.source ORDER BY time DESC LIMIT 1),
                (SELECT bytes_added FROM source_runs l WHERE l.source = s.source ORDER BY time DESC LIMIT 1),
                (SELECT error FROM source_runs l WHERE l.source = s.source ORDER BY time DESC LIMIT 1),
                (SELECT bytes FROM source_runs l WHERE l.source = s.source AND l.ok ORDER BY time DESC LIMIT 1)
             FROM source_runs s GROUP BY source ORDER BY source",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SourceStats {
                source: r.get(0)?,
                kind: r.get(1)?,
                last_success: r.get::<_, Option<f64>>(2)?.map(time),
                last_attempt: time(r.get(3)?),
                successes: r.get::<_, i64>(4)? as u64,
                failures: r.get::<_, i64>(5)? as u64,
                last_duration_secs: r.get(6)?,
                last_bytes_added: r.get::<_, Option<i64>>(7)?.map(|b| b as u64),
                last_error: r.get(8)?,
                last_size_bytes: r.get::<_, Option<i64>>(9)?.map(|b| b as u64),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every source backup since `since`, oldest first: what the dashboard's charts draw.
    pub fn source_history(&self, since: Timestamp) -> Result<Vec<SourcePoint>> {
        let mut stmt = self.conn.prepare(
            "SELECT source, time, ok, duration, bytes, bytes_added FROM source_runs
             WHERE time >= ?1 ORDER BY time",
        )?;
        let rows = stmt.query_map([secs(since)], |r| {
            Ok(SourcePoint {
                source: r.get(0)?,
                time: time(r.get(1)?),
                ok: r.get(2)?,
                duration_secs: r.get(3)?,
                bytes: r.get::<_, Option<i64>>(4)?.map(|b| b as u64),
                bytes_added: r.get::<_, Option<i64>>(5)?.map(|b| b as u64),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Per source, the share of its backups since `since` that succeeded.
    pub fn source_success_rates(&self, since: Timestamp) -> Result<BTreeMap<String, f64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT source, avg(ok) FROM source_runs WHERE time >= ?1 GROUP BY source")?;
        let rows = stmt.query_map([secs(since)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The share of source backups since `since` that succeeded; None without any.
    pub fn success_rate(&self, since: Timestamp) -> Result<Option<f64>> {
        let (ok, all): (i64, i64) = self.conn.query_row(
            "SELECT coalesce(sum(ok), 0), count(*) FROM source_runs WHERE time >= ?1",
            [secs(since)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((all > 0).then(|| ok as f64 / all as f64))
    }

    pub fn job_stats(&self, job: &str) -> Result<JobStats> {
        let mut stats = JobStats::default();
        let mut stmt = self
            .conn
            .prepare("SELECT result, count(*) FROM runs WHERE job = ?1 GROUP BY result")?;
        for row in stmt.query_map([job], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (result, n) = row?;
            stats.runs_by_result.insert(result, n as u64);
        }
        stats.last = self.runs(Some(job), 1, false)?.pop();
        stats.last_success = self
            .conn
            .query_row(
                "SELECT max(ended) FROM runs WHERE job = ?1 AND result = 'success'",
                [job],
                |r| r.get::<_, Option<f64>>(0),
            )?
            .map(time);
        Ok(stats)
    }

    /// Alerts, the open ones first; `open_only` leaves out resolved ones.
    pub fn alerts(&self, open_only: bool) -> Result<Vec<Alert>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, rule, datastore, severity, summary, fired, resolved, acknowledged, acknowledged_by
             FROM alerts WHERE NOT ?1 OR resolved IS NULL ORDER BY resolved IS NOT NULL, fired DESC LIMIT 500",
        )?;
        let rows = stmt.query_map([open_only], alert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The open alert of `rule` on `datastore`, with when it was last sent.
    pub fn open_alert(
        &self,
        rule: &str,
        datastore: &str,
    ) -> Result<Option<(Alert, Option<Timestamp>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, rule, datastore, severity, summary, fired, resolved, acknowledged, acknowledged_by, last_sent
             FROM alerts WHERE rule = ?1 AND datastore = ?2 AND resolved IS NULL ORDER BY fired DESC LIMIT 1",
        )?;
        let mut rows = stmt.query_map([rule, datastore], |r| {
            Ok((alert_row(r)?, r.get::<_, Option<f64>>(9)?.map(time)))
        })?;
        Ok(rows.next().transpose()?)
    }

    /// A new open alert; its id.
    pub fn fire(
        &self,
        rule: &str,
        datastore: &str,
        severity: &str,
        summary: &str,
        now: Timestamp,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO alerts (rule, datastore, severity, summary, fired) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![rule, datastore, severity, summary, secs(now)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// An open alert's condition changed severity or wording.
    pub fn update_alert(&self, id: i64, severity: &str, summary: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE alerts SET severity = ?2, summary = ?3 WHERE id = ?1",
            params![id, severity, summary],
        )?;
        Ok(())
    }

    pub fn resolve_alert(&self, id: i64, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "UPDATE alerts SET resolved = ?2 WHERE id = ?1",
            params![id, secs(now)],
        )?;
        Ok(())
    }

    pub fn mark_sent(&self, id: i64, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "UPDATE alerts SET last_sent = ?2 WHERE id = ?1",
            params![id, secs(now)],
        )?;
        Ok(())
    }

    /// One notification's fate on one channel, after its retries.
    pub fn record_delivery(&self, d: &Delivery) -> Result<()> {
        self.conn.execute(
            "INSERT INTO deliveries (alert, channel, status, time, ok, attempts, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![d.alert, d.channel, d.status, secs(d.time), d.ok, d.attempts, d.error],
        )?;
        Ok(())
    }

    /// The newest deliveries first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<Delivery>> {
        let mut stmt = self.conn.prepare(
            "SELECT alert, channel, status, time, ok, attempts, error FROM deliveries ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(Delivery {
                alert: r.get(0)?,
                channel: r.get(1)?,
                status: r.get(2)?,
                time: time(r.get(3)?),
                ok: r.get(4)?,
                attempts: r.get(5)?,
                error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deliveries by channel and outcome: (channel, delivered, count).
    pub fn delivery_counts(&self) -> Result<Vec<(String, bool, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT channel, ok, count(*) FROM deliveries GROUP BY channel, ok ORDER BY channel, ok",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks an alert acknowledged by `by`; false when there is no such alert. Acknowledging
    /// twice keeps the first.
    pub fn acknowledge(&self, id: i64, by: &str) -> Result<bool> {
        let exists: bool =
            self.conn
                .query_row("SELECT count(*) > 0 FROM alerts WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
        self.conn.execute(
            "UPDATE alerts SET acknowledged = ?2, acknowledged_by = ?3 WHERE id = ?1 AND acknowledged IS NULL",
            params![id, secs(Timestamp::now()), by],
        )?;
        Ok(exists)
    }
}

/// An alert from the first nine columns of `alerts` in declaration order.
fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(0)?,
        rule: r.get(1)?,
        datastore: r.get(2)?,
        severity: r.get(3)?,
        summary: r.get(4)?,
        fired: time(r.get(5)?),
        resolved: r.get::<_, Option<f64>>(6)?.map(time),
        acknowledged: r.get::<_, Option<f64>>(7)?.map(time),
        acknowledged_by: r.get(8)?,
    })
}

/// A notification's delivery to one channel.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub alert: i64,
    pub channel: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub time: Timestamp,
    pub ok: bool,
    pub attempts: u32,
    pub error: Option<String>,
}

/// Whether a process with this id is alive: it exists and is not a zombie waiting to be
/// reaped (a killed run-job whose parent died too may linger so). The id may have been
/// reused by another process; the run is then closed at a later start instead.
fn process_alive(pid: i64) -> bool {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X') | None);
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
