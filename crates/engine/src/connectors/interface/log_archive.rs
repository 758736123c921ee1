//! Log archives kept beside the snapshots (PostgreSQL's WAL is the first): objects of their
//! own, written continuously, that retention, copies and checks must treat with the snapshots
//! that need them. The core verbs reach them only through this trait and the registry.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::ReadData;
use crate::error::Result;
use crate::id::SnapshotId;
use crate::progress::Reporter;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

pub trait LogArchive: Sync {
    /// The key reports list it under (`wal`).
    fn name(&self) -> &'static str;

    /// Deletes, per source, what no kept snapshot's recovery can read any more.
    fn expire(
        &self,
        repo: &Repository,
        kept: &[(SnapshotId, Snapshot)],
        dry_run: bool,
    ) -> Result<Vec<LogExpiry>>;

    /// Copies to `dst` what recovering the copied snapshots reads and `dst` lacks.
    fn copy(
        &self,
        src: &Repository,
        dst: &Repository,
        snapshots: &[(SnapshotId, Snapshot)],
    ) -> Result<LogCopy>;

    /// Checks the archive: its objects' names and structure always, their contents with
    /// `read`, and the gaps in what each snapshot's recovery reads.
    fn check(
        &self,
        repo: &Repository,
        snapshots: &[(SnapshotId, Snapshot)],
        read: ReadData,
        progress: &Reporter,
    ) -> Result<LogCheck>;
}

/// What retention deleted from one source's archive.
#[derive(Debug, Clone, Serialize)]
pub struct LogExpiry {
    pub source: String,
    /// Files before this position went; all later ones stay.
    pub kept_from: String,
    pub files_deleted: usize,
    pub bytes_freed: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogCopy {
    pub files_copied: usize,
    pub bytes_copied: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct LogCheck {
    pub sources: Vec<LogSourceCheck>,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
    /// Per snapshot, what in the archive breaks its recovery.
    pub affected: BTreeMap<SnapshotId, Vec<String>>,
}

/// One source's archive as `check` found it.
#[derive(Debug, Default, Serialize)]
pub struct LogSourceCheck {
    pub source: String,
    pub files: usize,
    /// Snapshots whose recovery reads this archive (base backups).
    pub base_backups: usize,
    pub files_read: usize,
    pub bytes_read: u64,
}

/// Every kind's log archive, once each.
pub fn log_archives() -> Vec<&'static dyn LogArchive> {
    let mut out: Vec<&'static dyn LogArchive> = Vec::new();
    for kind in super::Kind::ALL {
        if let Some(a) = kind.connector().log_archive() {
            if !out.iter().any(|o| o.name() == a.name()) {
                out.push(a);
            }
        }
    }
    out
}
