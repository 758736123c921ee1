//! Restore drills: each chosen source, in recovery order, restored into a sandbox, verified at
//! the data level and removed; the time until it was usable and verified (RTO) measured, the
//! age of the point it came back to (RPO) computed, both judged against the source's targets.
//! The record is stored in the repository (`drills/`), so it outlives the host and travels
//! with `copy`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::point::{choose, Point};
use super::stack::Member;
use crate::catalog::Snapshots;
use crate::connectors::interface::{
    self, started, RestoreInput, RestoreRequest, Restored, Timings, Verdict,
};
use crate::connectors::sandbox;
use crate::error::Result;
use crate::id::SnapshotId;
use crate::progress::Reporter;
use crate::repo::Repository;
use crate::store::ObjectKind;

/// How a drill, or one source in it, ended. Ordered: the worse is the greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillResult {
    Passed,
    /// The data came back verified, but slower than the RTO or older than the RPO target.
    TargetMissed,
    /// The restore failed, or the data differs from the backup, or is damaged.
    Failed,
    /// Ctrl-C or SIGTERM: the sandboxes were removed, the rest was not drilled.
    Interrupted,
}

impl std::fmt::Display for DrillResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DrillResult::Passed => "passed",
            DrillResult::TargetMissed => "target missed",
            DrillResult::Failed => "failed",
            DrillResult::Interrupted => "interrupted",
        })
    }
}

/// One source's part of a drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillStep {
    pub source: String,
    /// The kind's name (as in snapshot manifests: a record of a kind this build does not
    /// know still reads).
    pub kind: String,
    pub priority: u32,
    pub result: DrillResult,
    /// What went wrong: the error, each mismatch, the damage.
    pub problems: Vec<String>,
    pub snapshot: Option<SnapshotId>,
    /// The moment the restored data represents.
    pub recovery_point: Option<jiff::Timestamp>,
    /// From the recovery point to the start of the drill: the data a failure then would lose.
    /// Judged only when the drill restores the newest state (no set or time asked).
    pub rpo_secs: Option<f64>,
    pub rpo_target_secs: u64,
    pub rpo_met: Option<bool>,
    /// From the start of the restore until its data was usable and verified.
    pub rto_secs: Option<f64>,
    pub rto_target_secs: u64,
    pub rto_met: Option<bool>,
    /// What the sandbox was (described; it no longer exists).
    pub sandbox: Option<String>,
    pub items: u64,
    pub unit: String,
    pub bytes: u64,
    pub timings: Option<Timings>,
    pub verdict: Option<Verdict>,
}

/// A drill as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    pub version: u32,
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    pub hostname: String,
    pub username: String,
    pub scenario: Option<String>,
    /// The backup set drilled, when one was asked for.
    pub set: Option<String>,
    /// The moment drilled back to, when one was asked for.
    pub target_time: Option<String>,
    /// Verified by samples (`--verify sample`) rather than in full.
    #[serde(default)]
    pub sampled: bool,
    pub result: DrillResult,
    pub total_secs: f64,
    pub steps: Vec<DrillStep>,
}

pub struct DrillRequest {
    pub scenario: Option<String>,
    pub point: Point,
    /// Where sandboxes are made.
    pub scratch: PathBuf,
    /// Verify by samples where a kind can, to bound the drill's time on large data.
    pub sample: bool,
    /// This program's command line, for a restored PostgreSQL that fetches WAL.
    pub callback: std::result::Result<String, String>,
    /// How long each restore waits for an exclusive lock to go away.
    pub lock_wait: Duration,
}

/// Told about each source as the drill reaches it (a terminal shows progress; a daemon logs).
pub trait DrillObserver {
    fn started(&mut self, source: &str) -> Reporter;
    fn finished(&mut self, step: &DrillStep);
}

/// Drills `members` in the order given. Never fails as a whole: every problem is in the
/// record (a source that fails does not stop the others; an interrupt does).
pub fn run(
    repo: &Repository,
    snapshots: &Snapshots,
    members: &[&Member<'_>],
    req: &DrillRequest,
    observer: &mut dyn DrillObserver,
) -> DrillRecord {
    let started_at = jiff::Timestamp::now();
    let clock = Instant::now();
    let mut steps = Vec::new();
    for m in members {
        if sandbox::interrupted() {
            break;
        }
        let progress = observer.started(m.name());
        let step = drill_one(repo, snapshots, m, req, started_at, progress);
        observer.finished(&step);
        steps.push(step);
    }
    let interrupted = sandbox::interrupted();
    let result = if interrupted {
        DrillResult::Interrupted
    } else {
        steps
            .iter()
            .map(|s| s.result)
            .max()
            .unwrap_or(DrillResult::Passed)
    };
    DrillRecord {
        version: 1,
        started: started_at,
        finished: jiff::Timestamp::now(),
        hostname: crate::repo::hostname(),
        username: crate::repo::username(),
        scenario: req.scenario.clone(),
        set: match &req.point {
            Point::Set(s) => Some(s.clone()),
            _ => None,
        },
        target_time: match &req.point {
            Point::Time { text, .. } => Some(text.clone()),
            _ => None,
        },
        sampled: req.sample,
        result,
        total_secs: clock.elapsed().as_secs_f64(),
        steps,
    }
}

fn drill_one(
    repo: &Repository,
    snapshots: &Snapshots,
    m: &Member<'_>,
    req: &DrillRequest,
    drill_started: jiff::Timestamp,
    progress: Reporter,
) -> DrillStep {
    let mut step = DrillStep {
        source: m.name().to_string(),
        kind: m.kind().name().to_string(),
        priority: m.targets.priority,
        result: DrillResult::Failed,
        problems: Vec::new(),
        snapshot: None,
        recovery_point: None,
        rpo_secs: None,
        rpo_target_secs: m.targets.rpo_secs,
        rpo_met: None,
        rto_secs: None,
        rto_target_secs: m.targets.rto_secs,
        rto_met: None,
        sandbox: None,
        items: 0,
        unit: String::new(),
        bytes: 0,
        timings: None,
        verdict: None,
    };
    let entry = match choose(snapshots, m.name(), &req.point) {
        Ok(e) => e,
        Err(problem) => {
            step.problems.push(problem);
            return step;
        }
    };
    step.snapshot = Some(entry.0);
    // A source with a log archive is drilled the way it recovers: by replaying it.
    let replay = m.kind().connector().replay_options(&entry.1, &req.point);
    let restore_req = RestoreRequest {
        target: None,
        options: replay.clone().unwrap_or_default(),
        dry_run: false,
        verify: true,
        sample: req.sample,
        start: false,
        port: None,
        scratch: req.scratch.clone(),
        configured: m.section.cloned(),
        callback: req.callback.clone(),
        secret: None,
        lock_wait: req.lock_wait,
        progress,
    };
    let clock = Instant::now();
    let restored = RestoreInput::new(repo, snapshots, entry, req.point.latest())
        .and_then(|input| interface::sandbox(&input, &restore_req));
    let rto = clock.elapsed().as_secs_f64();
    match restored {
        Err(e) => {
            step.result = if sandbox::interrupted() {
                DrillResult::Interrupted
            } else {
                DrillResult::Failed
            };
            step.problems.push(format!("{e:#}"));
        }
        Ok(r) => judge(&mut step, r, rto),
    }
    // The point restored: the newest the repository offers for the source when the drill
    // replayed the log to its end, the snapshot's start otherwise (also when the log's newest
    // point cannot be read: the RPO is then overstated, never understated).
    let snapshot_start = started(&entry.1);
    step.recovery_point = Some(match (&req.point, replay.is_some()) {
        (Point::Time { at, .. }, true) => *at,
        (Point::Latest, true) => m
            .kind()
            .connector()
            .recovery_point(repo, snapshots, m.name())
            .ok()
            .flatten()
            .map_or(snapshot_start, |p| p.time.max(snapshot_start)),
        _ => snapshot_start,
    });
    if matches!(req.point, Point::Latest) {
        if let Some(point) = step.recovery_point {
            let rpo = drill_started.duration_since(point).as_secs_f64().max(0.0);
            step.rpo_secs = Some(rpo);
            step.rpo_met = Some(rpo <= step.rpo_target_secs as f64);
        }
    }
    if step.result == DrillResult::Passed
        && (step.rto_met == Some(false) || step.rpo_met == Some(false))
    {
        step.result = DrillResult::TargetMissed;
    }
    step
}

/// Passed only when the data came back whole and the comparison with the backup found no
/// difference; every damage, gap and mismatch is a problem named in the step.
fn judge(step: &mut DrillStep, r: Restored, rto: f64) {
    let o = r.outcome;
    step.problems.extend(o.problems());
    step.result = if step.problems.is_empty() {
        DrillResult::Passed
    } else {
        DrillResult::Failed
    };
    step.rto_secs = Some(rto);
    step.rto_met = Some(rto <= step.rto_target_secs as f64);
    step.sandbox = Some(o.target);
    step.items = o.items;
    step.unit = o.unit;
    step.bytes = o.bytes;
    step.timings = Some(o.timings);
    step.verdict = o.verdict;
}

/// Stores a drill record; returns its id.
pub fn save(repo: &Repository, record: &DrillRecord) -> Result<String> {
    repo.save_json(ObjectKind::Drill, record)
}

/// A stored drill record and its id.
pub type StoredDrill = (String, DrillRecord);

/// Every readable drill record, oldest first, and the names of those that could not be read.
pub fn load_all(repo: &Repository) -> Result<(Vec<StoredDrill>, Vec<String>)> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for listed in repo.store().list(ObjectKind::Drill)? {
        match repo.load_json::<DrillRecord>(ObjectKind::Drill, &listed.name) {
            Ok(r) => records.push((listed.name, r)),
            Err(e) => unreadable.push(format!("{}: {e}", listed.name)),
        }
    }
    records.sort_by_key(|(_, r)| r.started);
    Ok((records, unreadable))
}

/// Copies the drill records `dst` lacks (a record is the same when it started at the same
/// moment on the same host); returns how many. Their snapshot ids stay those of `src`, which
/// copied snapshots keep as their `original`.
pub fn copy_records(src: &Repository, dst: &Repository) -> Result<usize> {
    let (have, _) = load_all(dst)?;
    let key = |r: &DrillRecord| (r.started, r.hostname.clone());
    let have: std::collections::HashSet<_> = have.iter().map(|(_, r)| key(r)).collect();
    let (records, _) = load_all(src)?;
    let mut copied = 0;
    for (_, r) in records.iter().filter(|(_, r)| !have.contains(&key(r))) {
        save(dst, r)?;
        copied += 1;
    }
    Ok(copied)
}
