//! A backup set: the sources of one `bulwark backup` run, backed up one after another under
//! one set id, each against its own parent. Returns one serialisable report; the command line
//! and the daemon only render it.

use serde::Serialize;

use crate::backup::{BackupOptions, Source};
use crate::catalog::Snapshots;
use crate::error::{Error, ErrorKind};
use crate::id::{SetId, SnapshotId};
use crate::progress::Reporter;
use crate::repo::Repository;
use crate::snapshot::{Snapshot, Summary};

/// One source of the set, with the tags its configuration adds.
pub struct Member {
    pub source: Box<dyn Source>,
    pub tags: Vec<String>,
}

pub struct SetOptions {
    /// Tags for every snapshot of the set.
    pub tags: Vec<String>,
    /// Read every file even if the parent says it is unchanged.
    pub force: bool,
    pub threads: usize,
    pub lock_wait: std::time::Duration,
    /// The configuration files the run read (their hashes go into the set's record).
    pub config_files: Vec<std::path::PathBuf>,
}

/// Told about each source as the set runs (progress bars, log lines).
pub trait SetObserver {
    /// A source starts; where its progress goes.
    fn started(&mut self, source: &str) -> Reporter;
    /// A source is done, saved or failed.
    fn finished(&mut self, result: &MemberResult);
}

#[derive(Debug, Serialize)]
pub struct SetReport {
    pub set_id: SetId,
    pub results: Vec<MemberResult>,
    /// The run stopped before the remaining sources: every one would meet this (a lock).
    #[serde(skip)]
    pub aborted: Option<Error>,
    /// Why the set's record could not be stored (the snapshots are saved all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
}

impl SetReport {
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| r.error.is_some()).count()
    }

    pub fn partial(&self) -> bool {
        self.results
            .iter()
            .any(|r| r.summary.as_ref().is_some_and(|s| s.partial))
    }
}

/// A source's result: its snapshot and summary, or the error that left it without one.
#[derive(Debug, Serialize)]
pub struct MemberResult {
    pub source: String,
    /// The kind's name.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_id: Option<SetId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The saved manifest, for whoever renders the result.
    #[serde(skip)]
    pub saved: Option<Snapshot>,
}

/// The snapshot a new backup of `source` from `host` compares against: the newest complete
/// one (a partial snapshot may lack files that are unchanged now).
pub fn parent_of(existing: &Snapshots, source: &str, host: &str) -> Option<SnapshotId> {
    existing
        .list
        .iter()
        .filter(|(_, s)| s.source.name == source && s.hostname == host && !s.summary.partial)
        .max_by_key(|(_, s)| s.time)
        .map(|(id, _)| *id)
}

/// Backs up every member in order. A failed source does not stop the others, except a lock
/// that every one of them would meet.
pub fn run(
    repo: &Repository,
    existing: &Snapshots,
    members: Vec<Member>,
    opts: &SetOptions,
    observer: &mut dyn SetObserver,
) -> SetReport {
    let host = crate::repo::hostname();
    let mut report = SetReport {
        set_id: SetId::random(),
        results: Vec::new(),
        aborted: None,
        record_error: None,
    };
    let started = jiff::Timestamp::now();
    for mut member in members {
        let info = member.source.info();
        let (name, kind) = (info.name.clone(), info.kind.clone());
        let parent = if opts.force {
            None
        } else {
            parent_of(existing, &name, &host)
        };
        let mut tags = opts.tags.clone();
        tags.extend(member.tags);
        let backup_opts = BackupOptions {
            tags,
            set_id: Some(report.set_id),
            parent,
            threads: opts.threads,
            uploads: 0,
            lock_wait: opts.lock_wait,
            progress: observer.started(&name),
        };
        let outcome = crate::backup::run(repo, member.source.as_mut(), backup_opts);
        let result = match outcome {
            Ok((id, snap)) => MemberResult {
                source: name,
                kind,
                snapshot: Some(id),
                set_id: Some(report.set_id),
                summary: Some(snap.summary.clone()),
                error: None,
                saved: Some(snap),
            },
            Err(e) => {
                let result = MemberResult {
                    source: name,
                    kind,
                    snapshot: None,
                    set_id: None,
                    summary: None,
                    error: Some(e.to_string()),
                    saved: None,
                };
                if e.kind() == ErrorKind::Locked {
                    observer.finished(&result);
                    report.results.push(result);
                    report.aborted = Some(e);
                    return report;
                }
                result
            }
        };
        observer.finished(&result);
        report.results.push(result);
    }
    record(repo, &mut report, started, opts);
    report
}

/// Stores the set's record: each source's snapshot and consistency point, and the system.
fn record(repo: &Repository, report: &mut SetReport, started: jiff::Timestamp, opts: &SetOptions) {
    let system = crate::set_manifest::SystemState::now(repo, &opts.config_files);
    let manifest = crate::set_manifest::of_report(report, started, system);
    if let Err(e) = crate::set_manifest::save(repo, &manifest) {
        report.record_error = Some(e.to_string());
    }
}
