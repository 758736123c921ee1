//! Recovery by scenario. First a plan: for each source in order, the snapshot, what goes
//! where and how, what is there now, and how long the last drill took; nothing is touched
//! while any step has a problem (a server that does not answer, data in the way without
//! `--replace`). Then the steps in order, each verified; the first that fails stops the rest.
//! Steps an earlier run of the same plan finished are not done again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::drill::StoredDrill;
use super::point::{choose, Point};
use super::stack::Member;
use crate::catalog::Snapshots;
use crate::connectors::interface::{self, Recovery, RestoreInput, RestoreRequest, Verdict};
use crate::connectors::sandbox;
use crate::error::Result;
use crate::id::SnapshotId;
use crate::progress::Reporter;
use crate::repo::Repository;
use crate::store::ObjectKind;

/// Steps by source and the snapshot they restore: what makes a step "the same" for a later
/// run of a plan.
pub type Steps = BTreeSet<(String, SnapshotId)>;

/// What earlier runs of a plan did: steps they finished, and steps they began (whose target
/// may hold part of their own output, which a rerun may write over).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub done: Steps,
    pub begun: Steps,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub source: String,
    pub kind: String,
    pub priority: u32,
    pub snapshot: Option<SnapshotId>,
    pub snapshot_time: Option<jiff::Timestamp>,
    pub recovery: Option<Recovery>,
    /// How long the last drill of this source took to bring it back.
    pub expected_secs: Option<f64>,
    /// An earlier run of this plan recovered it from the same snapshot.
    pub done_before: bool,
    /// An earlier run began it and did not finish: what is in its target may be that run's.
    pub begun_before: bool,
    /// Why the step cannot run now; while any step has one, nothing is touched.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub scenario: String,
    pub point: String,
    pub replace: bool,
    pub steps: Vec<PlanStep>,
}

impl Plan {
    pub fn problems(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| s.problem.as_ref().map(|p| format!("{}: {p}", s.source)))
            .collect()
    }
}

/// Plans `members` (in their order) back to `point`.
pub fn plan(
    snapshots: &Snapshots,
    members: &[&Member<'_>],
    scenario: &str,
    point: &Point,
    replace: bool,
    drills: &[StoredDrill],
    earlier: &Progress,
) -> Plan {
    let steps = members
        .iter()
        .map(|m| plan_step(snapshots, m, point, replace, drills, earlier))
        .collect();
    Plan {
        scenario: scenario.to_string(),
        point: point.describe(),
        replace,
        steps,
    }
}

fn plan_step(
    snapshots: &Snapshots,
    m: &Member<'_>,
    point: &Point,
    replace: bool,
    drills: &[StoredDrill],
    earlier: &Progress,
) -> PlanStep {
    let mut step = PlanStep {
        source: m.name().to_string(),
        kind: m.kind().name().to_string(),
        priority: m.targets.priority,
        snapshot: None,
        snapshot_time: None,
        recovery: None,
        expected_secs: drills
            .iter()
            .filter_map(|(_, r)| r.steps.iter().find(|s| s.source == m.name()))
            .filter_map(|s| s.rto_secs)
            .next_back(),
        done_before: false,
        begun_before: false,
        problem: None,
    };
    let (id, snap) = match choose(snapshots, m.name(), point) {
        Ok(e) => e,
        Err(problem) => {
            step.problem = Some(problem);
            return step;
        }
    };
    step.snapshot = Some(*id);
    step.snapshot_time = Some(snap.time);
    let key = (m.name().to_string(), *id);
    step.done_before = earlier.done.contains(&key);
    step.begun_before = earlier.begun.contains(&key);
    match m.datastore.recovery(snap, point, replace) {
        Err(e) => step.problem = Some(format!("{e:#}")),
        Ok(r) => {
            if !step.done_before && !r.manual {
                step.problem = blocker(m, &r, replace || step.begun_before);
            }
            step.recovery = Some(r);
        }
    }
    step
}

/// Why a recovery cannot start: its server does not answer, its target must not be
/// written over, or data is in the way and replacing it is not allowed (by the user, or
/// because an earlier run of the step put it there).
fn blocker(m: &Member<'_>, r: &Recovery, replace: bool) -> Option<String> {
    if r.needs_server {
        let h = m.datastore.health();
        if !h.reachable {
            return Some(format!(
                "the target does not answer: {}",
                h.error.as_deref().unwrap_or("unreachable")
            ));
        }
    }
    if let Some(b) = &r.blocked {
        return Some(b.clone());
    }
    match (&r.occupied, replace) {
        (Some(what), false) => Some(format!("{what}; pass --replace to replace it")),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    Recovered,
    /// An earlier run of the same plan recovered it.
    AlreadyDone,
    /// Nothing to do automatically (a command's output): the plan says what to do by hand.
    Manual,
    /// A step before it failed, or the run was interrupted.
    NotRun,
    /// The run was interrupted during this step: its target may hold part of the data (a
    /// rerun does the step again).
    Interrupted,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveredStep {
    pub source: String,
    pub kind: String,
    pub result: StepResult,
    pub snapshot: Option<SnapshotId>,
    pub target: Option<String>,
    pub method: Option<String>,
    pub problems: Vec<String>,
    pub secs: Option<f64>,
    pub items: u64,
    pub unit: String,
    pub bytes: u64,
    pub verdict: Option<Verdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryResult {
    /// Every step that can be done automatically was, and verified.
    Complete,
    Failed,
    Interrupted,
}

/// A recovery run as stored (who, when, what, result).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryRecord {
    pub version: u32,
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    pub hostname: String,
    pub username: String,
    pub scenario: String,
    pub point: String,
    pub replace: bool,
    pub result: RecoveryResult,
    pub steps: Vec<RecoveredStep>,
}

pub struct RecoverRequest {
    pub point: Point,
    pub scratch: PathBuf,
    pub callback: std::result::Result<String, String>,
    /// How long each restore waits for an exclusive lock to go away.
    pub lock_wait: Duration,
}

/// Told about each step: where its progress goes, and its result (a caller keeps the steps
/// begun and recovered, so that a later run continues after them).
pub trait RecoverObserver {
    fn started(&mut self, step: &PlanStep) -> Reporter;
    fn finished(&mut self, step: &RecoveredStep);
}

/// Runs a plan that has no problems, step by step.
pub fn execute(
    repo: &Repository,
    snapshots: &Snapshots,
    plan: &Plan,
    members: &[&Member<'_>],
    req: &RecoverRequest,
    observer: &mut dyn RecoverObserver,
) -> RecoveryRecord {
    let started = jiff::Timestamp::now();
    let mut steps: Vec<RecoveredStep> = Vec::new();
    let mut stopped = false;
    for (p, m) in plan.steps.iter().zip(members) {
        let mut step = RecoveredStep::pending(p);
        stopped = stopped || sandbox::interrupted();
        match (&p.recovery, p.snapshot) {
            _ if stopped => {}
            _ if p.done_before => step.result = StepResult::AlreadyDone,
            (Some(r), _) if r.manual => step.result = StepResult::Manual,
            (Some(r), Some(id)) => {
                let progress = observer.started(p);
                let from = Source {
                    repo,
                    snapshots,
                    id,
                };
                run_step(&from, m, r, req, progress, &mut step);
                stopped = step.result == StepResult::Failed;
            }
            _ => {
                step.result = StepResult::Failed;
                step.problems.extend(p.problem.clone());
                stopped = true;
            }
        }
        observer.finished(&step);
        steps.push(step);
    }
    let result = if sandbox::interrupted() {
        RecoveryResult::Interrupted
    } else if steps.iter().any(|s| s.result == StepResult::Failed) {
        RecoveryResult::Failed
    } else {
        RecoveryResult::Complete
    };
    RecoveryRecord::new(plan, started, result, steps)
}

impl RecoveredStep {
    /// A step of the plan before it runs.
    fn pending(p: &PlanStep) -> Self {
        Self {
            source: p.source.clone(),
            kind: p.kind.clone(),
            result: StepResult::NotRun,
            snapshot: p.snapshot,
            target: p.recovery.as_ref().map(|r| r.target.clone()),
            method: p.recovery.as_ref().map(|r| r.method.clone()),
            problems: Vec::new(),
            secs: None,
            items: 0,
            unit: String::new(),
            bytes: 0,
            verdict: None,
        }
    }
}

impl RecoveryRecord {
    fn new(
        plan: &Plan,
        started: jiff::Timestamp,
        result: RecoveryResult,
        steps: Vec<RecoveredStep>,
    ) -> Self {
        Self {
            version: 1,
            started,
            finished: jiff::Timestamp::now(),
            hostname: crate::repo::hostname(),
            username: crate::repo::username(),
            scenario: plan.scenario.clone(),
            point: plan.point.clone(),
            replace: plan.replace,
            result,
            steps,
        }
    }

    /// The record of a run stopped during the step after `finished` (a step that would not
    /// end when interrupted): that step interrupted, the rest not run.
    pub fn interrupted(plan: &Plan, started: jiff::Timestamp, finished: &[RecoveredStep]) -> Self {
        let mut steps = finished.to_vec();
        for (n, p) in plan.steps.iter().enumerate().skip(finished.len()) {
            let mut step = RecoveredStep::pending(p);
            if n == finished.len() {
                step.result = StepResult::Interrupted;
            }
            steps.push(step);
        }
        Self::new(plan, started, RecoveryResult::Interrupted, steps)
    }
}

/// The snapshot a step restores, and the repository listing it is in.
struct Source<'a> {
    repo: &'a Repository,
    snapshots: &'a Snapshots,
    id: SnapshotId,
}

fn run_step(
    from: &Source<'_>,
    m: &Member<'_>,
    r: &Recovery,
    req: &RecoverRequest,
    progress: Reporter,
    step: &mut RecoveredStep,
) {
    let Source {
        repo,
        snapshots,
        id,
    } = *from;
    let restore_req = RestoreRequest {
        target: Some(r.target.clone()),
        options: r.options.clone(),
        dry_run: false,
        verify: true,
        sample: false,
        start: r.start,
        port: None,
        scratch: req.scratch.clone(),
        configured: m.section.cloned(),
        callback: req.callback.clone(),
        secret: r.secret.clone(),
        lock_wait: req.lock_wait,
        progress,
    };
    let Some(entry) = snapshots.list.iter().find(|(i, _)| *i == id) else {
        step.result = StepResult::Failed;
        step.problems
            .push(format!("snapshot {} is gone", id.short()));
        return;
    };
    let clock = Instant::now();
    let restored = RestoreInput::new(repo, snapshots, entry, req.point.latest())
        .and_then(|input| interface::restore(&input, &restore_req));
    step.secs = Some(clock.elapsed().as_secs_f64());
    match restored {
        Err(e) => {
            step.result = match sandbox::interrupted() {
                true => StepResult::Interrupted,
                false => StepResult::Failed,
            };
            step.problems.push(format!("{e:#}"));
        }
        Ok(done) => {
            let o = done.outcome;
            step.problems = o.problems();
            step.result = if step.problems.is_empty() {
                StepResult::Recovered
            } else {
                StepResult::Failed
            };
            step.items = o.items;
            step.unit = o.unit;
            step.bytes = o.bytes;
            step.verdict = o.verdict;
        }
    }
}

/// Stores a recovery record; returns its id.
pub fn save(repo: &Repository, record: &RecoveryRecord) -> Result<String> {
    repo.save_json(ObjectKind::Recovery, record)
}
