//! `recover`: the engine plans a scenario's recovery and runs it; this file shows the plan,
//! keeps the steps finished (so that a rerun continues), and renders the result.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use engine::progress::Reporter;
use engine::recovery::assess::span;
use engine::recovery::drill;
use engine::recovery::point::Point;
use engine::recovery::recover::{
    self, Plan, PlanStep, Progress, RecoverObserver, RecoverRequest, RecoveredStep, RecoveryRecord,
    RecoveryResult, StepResult,
};
use serde::{Deserialize, Serialize};

use crate::cli::RecoverArgs;
use crate::context::{Context, Steps};
use crate::exit::{remove_sandboxes_on_interrupt_then, Status};
use crate::output::{bytes, local_time, print_json};

/// How long an interrupted recovery gets to finish its step and write its record.
const RECORD_GRACE: Duration = Duration::from_secs(30);

pub fn run(ctx: &Context, args: &RecoverArgs) -> Result<Status> {
    let stack = ctx.stack()?;
    let (scenario, members) = stack.scenario(&args.scenario)?;
    let point = Point::from_args(args.set.as_deref(), args.target_time.as_deref())?;
    let repo = ctx.open()?;
    let snapshots = ctx.snapshots(&repo)?;
    let (drills, _) = drill::load_all(&repo)?;
    let state_dir = args.state_dir.clone().unwrap_or_else(|| ctx.state_dir());
    let state = StateFile::new(&state_dir, &scenario.name);
    let earlier = state.load(&point.describe());
    let plan = recover::plan(
        &snapshots,
        &members,
        &scenario.name,
        &point,
        args.replace,
        &drills,
        &earlier,
    );
    let problems = plan.problems();
    if ctx.json && (args.dry_run || !problems.is_empty()) {
        print_json(&serde_json::json!({ "plan": plan, "problems": problems }))?;
    } else if !ctx.json {
        print_plan(&plan);
    }
    if !problems.is_empty() {
        eprintln!("nothing was touched: the plan has problems:");
        for p in &problems {
            eprintln!("  {p}");
        }
        return Ok(Status::Failed);
    }
    if args.dry_run {
        return Ok(Status::Ok);
    }
    let journal = Journal::default();
    remove_sandboxes_on_interrupt_then(RECORD_GRACE, {
        let (journal, repo, plan) = (journal.clone(), repo.clone(), plan.clone());
        let started = jiff::Timestamp::now();
        move || {
            let finished = journal.claim_record();
            if let Some(finished) = finished {
                let record = RecoveryRecord::interrupted(&plan, started, &finished);
                match recover::save(&repo, &record) {
                    Ok(id) => eprintln!("the recovery is recorded as interrupted: {id}"),
                    Err(e) => eprintln!("the interrupted recovery could not be recorded: {e:#}"),
                }
            }
        }
    });
    let req = RecoverRequest {
        point,
        scratch: args.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
        callback: ctx.callback(),
        lock_wait: ctx.lock_wait,
    };
    let mut terminal = Terminal {
        ctx,
        steps: ctx.steps(),
        state: &state,
        progress: earlier,
        point: plan.point.clone(),
        journal: journal.clone(),
    };
    let record = recover::execute(&repo, &snapshots, &plan, &members, &req, &mut terminal);
    if record.result == RecoveryResult::Complete {
        state.clear();
    }
    if journal.claim_record().is_none() {
        // Interrupted, and the grace ran out as this run ended: the handler writes the record
        // and ends the process.
        loop {
            std::thread::park();
        }
    }
    let id = recover::save(&repo, &record);
    if ctx.json {
        print_json(&serde_json::json!({ "id": id.as_ref().ok(), "plan": plan, "record": record }))?;
    }
    id.context("storing the recovery record in the repository")?;
    let manual: Vec<&RecoveredStep> = record
        .steps
        .iter()
        .filter(|s| s.result == StepResult::Manual)
        .collect();
    if !ctx.json {
        for s in &manual {
            println!(
                "{}: left to do {}",
                s.source,
                s.method.as_deref().unwrap_or("by hand")
            );
        }
    }
    Ok(match record.result {
        RecoveryResult::Complete => Status::Ok,
        RecoveryResult::Interrupted => Status::Interrupted,
        RecoveryResult::Failed => {
            eprintln!(
                "the recovery stopped at a failed step; fix its cause and run the same command again: it continues from there"
            );
            Status::Failed
        }
    })
}

fn print_plan(plan: &Plan) {
    println!(
        "recovery plan for {}, back to {}{}:",
        plan.scenario,
        plan.point,
        if plan.replace {
            ", replacing what is there"
        } else {
            ""
        }
    );
    for (n, s) in plan.steps.iter().enumerate() {
        let from = match (s.snapshot, s.snapshot_time) {
            (Some(id), Some(t)) => format!(" from snapshot {} ({})", id.short(), local_time(t)),
            _ => String::new(),
        };
        println!("{:>3}. {} ({}){from}", n + 1, s.source, s.kind);
        if let Some(r) = &s.recovery {
            println!("     {}", r.method);
            if let Some(o) = &r.occupied {
                println!("     now there: {o}");
            }
        }
        if let Some(t) = s.expected_secs {
            println!("     the last drill took {}", span(t));
        }
        if s.done_before {
            println!("     recovered by an earlier run: skipped");
        } else if s.begun_before {
            println!("     begun by an earlier run that stopped: done again");
        }
        if let Some(p) = &s.problem {
            println!("     PROBLEM: {p}");
        }
    }
}

/// The steps finished so far, for a record written by the interrupt handler, and who writes
/// the record: this run at its end, or the handler when the grace ran out first.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<(Vec<RecoveredStep>, bool)>>);

impl Journal {
    fn add(&self, step: &RecoveredStep) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(step.clone());
    }

    /// The steps finished, for the first caller only: the one that writes the record.
    fn claim_record(&self) -> Option<Vec<RecoveredStep>> {
        let mut j = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (!std::mem::replace(&mut j.1, true)).then(|| j.0.clone())
    }
}

struct Terminal<'a> {
    ctx: &'a Context,
    steps: Steps<'a>,
    state: &'a StateFile,
    progress: Progress,
    point: String,
    journal: Journal,
}

impl Terminal<'_> {
    fn keep(&self) {
        if let Err(e) = self.state.save(&self.point, &self.progress) {
            eprintln!("warning: {e:#}; a rerun will not know where this one got to");
        }
    }
}

impl RecoverObserver for Terminal<'_> {
    fn started(&mut self, step: &PlanStep) -> Reporter {
        if let Some(id) = step.snapshot {
            self.progress.begun.insert((step.source.clone(), id));
            self.keep();
        }
        self.steps.start(&format!("recover {}", step.source))
    }

    fn finished(&mut self, step: &RecoveredStep) {
        self.steps.finish();
        self.journal.add(step);
        if let (StepResult::Recovered, Some(id)) = (step.result, step.snapshot) {
            self.progress.done.insert((step.source.clone(), id));
            self.keep();
        }
        if self.ctx.json {
            return;
        }
        let label = match step.result {
            StepResult::Recovered => "recovered and verified",
            StepResult::AlreadyDone => "already recovered by an earlier run",
            StepResult::Manual => "left to do by hand",
            StepResult::NotRun => "NOT RUN",
            StepResult::Interrupted => "INTERRUPTED",
            StepResult::Failed => "FAILED",
        };
        let what = match (step.result, &step.verdict) {
            (StepResult::Recovered, Some(v)) => format!(
                ": {} {} ({}) in {}, {} compared with the backup",
                step.items,
                step.unit,
                bytes(step.bytes),
                span(step.secs.unwrap_or(0.0)),
                v.checked
            ),
            _ => String::new(),
        };
        println!("{} ({}): {label}{what}", step.source, step.kind);
        for p in &step.problems {
            println!("  {p}");
        }
    }
}

/// The steps a run of a scenario's plan finished, kept between runs.
struct StateFile {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct State {
    point: String,
    #[serde(flatten)]
    progress: Progress,
}

impl StateFile {
    fn new(dir: &Path, scenario: &str) -> Self {
        // A scenario's name comes from the config: keep only what is safe in a file name.
        let safe: String = scenario
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            path: dir.join(format!("recover-{safe}.json")),
        }
    }

    /// What earlier runs back to the same point did (nothing, for another point, or when
    /// there is no state yet).
    fn load(&self, point: &str) -> Progress {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return Progress::default();
        };
        match serde_json::from_slice::<State>(&bytes) {
            Ok(s) if s.point == point => s.progress,
            Ok(_) => Progress::default(),
            Err(e) => {
                eprintln!(
                    "warning: {} is unreadable ({e}); this run starts from the first step",
                    self.path.display()
                );
                Progress::default()
            }
        }
    }

    fn save(&self, point: &str, progress: &Progress) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let state = State {
            point: point.to_string(),
            progress: progress.clone(),
        };
        std::fs::write(&self.path, serde_json::to_vec_pretty(&state)?)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
