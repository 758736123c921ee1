//! What `check` found, kept in the repository (`checks/`), so that an assessment can tell how
//! recently the repository was proven readable and whether it was clean.

use serde::{Deserialize, Serialize};

use crate::check::{CheckReport, ReadData};
use crate::error::Result;
use crate::repo::Repository;
use crate::store::ObjectKind;

/// How many of a check's errors its record keeps (the full list is in the check's output).
const ERRORS_KEPT: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRecord {
    pub version: u32,
    pub time: jiff::Timestamp,
    pub hostname: String,
    /// `none`, `all`, or the percentage of packs read (`10%`).
    pub read_data: String,
    pub ok: bool,
    pub error_count: usize,
    pub errors: Vec<String>,
    pub snapshots: usize,
    pub packs_read: usize,
}

impl CheckRecord {
    pub fn of(report: &CheckReport, read_data: &ReadData) -> Self {
        Self {
            version: 1,
            time: jiff::Timestamp::now(),
            hostname: crate::repo::hostname(),
            read_data: match read_data {
                ReadData::None => "none".into(),
                ReadData::All => "all".into(),
                ReadData::Subset(pct) => format!("{pct}%"),
            },
            ok: report.ok(),
            error_count: report.errors.len(),
            errors: report.errors.iter().take(ERRORS_KEPT).cloned().collect(),
            snapshots: report.snapshots,
            packs_read: report.packs_read,
        }
    }
}

pub fn save(repo: &Repository, record: &CheckRecord) -> Result<String> {
    repo.save_json(ObjectKind::Check, record)
}

/// The newest readable check record, if any.
pub fn last(repo: &Repository) -> Result<Option<CheckRecord>> {
    let mut newest: Option<CheckRecord> = None;
    for listed in repo.store().list(ObjectKind::Check)? {
        if let Ok(r) = repo.load_json::<CheckRecord>(ObjectKind::Check, &listed.name) {
            if newest.as_ref().is_none_or(|n| r.time > n.time) {
                newest = Some(r);
            }
        }
    }
    Ok(newest)
}
