//! One thin file per verb: parse options, call the engine, print.

mod alert;
mod assess;
mod audit;
mod backup;
mod check;
mod copy;
mod daemon;
mod diff;
pub mod drill;
mod forget;
mod health;
mod history;
mod init;
mod key;
mod ls;
mod maintenance;
mod prune;
mod recover;
mod repair;
mod restore;
mod run_job;
mod schedule;
mod sets;
mod snapshots;
mod stats;
mod status;
mod unlock;
mod wal;

use anyhow::Result;

use crate::cli::{Command, SnapshotFilter};
use crate::context::Context;
use crate::exit::Status;

/// Runs the command and leaves its audit entry, if it changes anything.
pub fn run(ctx: &Context, command: &Command) -> Result<Status> {
    let result = dispatch(ctx, command);
    if let Some((action, target)) = audit::action(command) {
        audit::record(ctx, action, &target, &result);
    }
    result
}

fn dispatch(ctx: &Context, command: &Command) -> Result<Status> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Key(k) => key::run(ctx, k),
        Command::Backup(a) => backup::run(ctx, a),
        Command::Snapshots(a) => snapshots::run(ctx, a),
        Command::Ls(a) => ls::run(ctx, a),
        Command::Restore(a) => restore::run(ctx, a),
        Command::Check(a) => check::run(ctx, a),
        Command::Forget(a) => forget::run(ctx, a),
        Command::Prune(a) => prune::run(ctx, a),
        Command::Maintenance(a) => maintenance::run(ctx, a),
        Command::Diff(a) => diff::run(ctx, a),
        Command::Stats(a) => stats::run(ctx, a),
        Command::Copy(a) => copy::run(ctx, a),
        Command::History(a) => history::run(ctx, a),
        Command::Unlock(a) => unlock::run(ctx, a),
        Command::Health(a) => health::run(ctx, a),
        Command::Assess(a) => assess::run(ctx, a),
        Command::Scenarios => assess::scenarios(ctx),
        Command::Drill(a) => drill::run(ctx, a),
        Command::Drills(a) => drill::list(ctx, a),
        Command::Recover(a) => recover::run(ctx, a),
        Command::Sets => sets::list(ctx),
        Command::Set(c) => sets::show(ctx, c),
        Command::Repair(c) => repair::run(ctx, c),
        Command::WalPush(a) => wal::push(ctx, a),
        Command::WalFetch(a) => wal::fetch(ctx, a),
        Command::Wal(c) => wal::run(ctx, c),
        Command::Daemon => daemon::run(ctx),
        Command::RunJob(a) => run_job::run(ctx, a),
        Command::Audit(a) => audit::run(ctx, a),
        Command::Schedule(c) => schedule::run(ctx, c),
        Command::Status(a) => status::run(ctx, a),
        Command::Alert(c) => alert::run(ctx, c),
    }
}

impl SnapshotFilter {
    pub fn to_engine(&self) -> engine::catalog::Filter {
        engine::catalog::Filter {
            source: self.source.clone(),
            tags: self.tag.clone(),
            set: self.set.clone(),
            host: self.host.clone(),
        }
    }
}
