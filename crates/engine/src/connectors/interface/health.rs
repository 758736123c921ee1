//! Health and recovery point: the same two questions asked of every datastore. Is it there,
//! what is it, what is wrong with it now; and what is the newest moment it can be brought
//! back to from the repository (the recovery point whose age is the RPO).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::Snapshots;
use crate::id::SnapshotId;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    pub reachable: bool,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// primary / replica, master / slave, ... as the datastore names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What needs attention although it answers (archiving failing, last save failed, a
    /// collection not green, a path missing, a disk nearly full).
    pub warnings: Vec<String>,
    /// Kind-specific figures (archiver counters, free bytes, collection states).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl Health {
    pub fn unreachable(error: impl std::fmt::Display) -> Self {
        Self {
            error: Some(error.to_string()),
            ..Self::default()
        }
    }

    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        if let Ok(v) = serde_json::to_value(value) {
            self.details.insert(key.to_string(), v);
        }
    }
}

/// The newest moment a source can be recovered to.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryPoint {
    pub time: jiff::Timestamp,
    /// The snapshot a recovery starts from.
    pub snapshot: SnapshotId,
    /// How that moment is reached: `snapshot`, or a log archive's name (`wal`) replayed on top.
    pub via: String,
}

impl RecoveryPoint {
    /// Seconds from the recovery point to `now`: what would be lost if the source died now.
    pub fn age_secs(&self, now: jiff::Timestamp) -> f64 {
        now.duration_since(self.time).as_secs_f64().max(0.0)
    }
}

/// The newest complete snapshot of `source`: a recovery point every kind has. A manifest's
/// time is when its backup finished; the point is when it started (the data is at least that
/// new, and a dump's consistent view is taken at its start), so RPO is never understated.
pub fn newest_snapshot(snapshots: &Snapshots, source: &str) -> Option<RecoveryPoint> {
    snapshots
        .list
        .iter()
        .filter(|(_, s)| s.source.name == source && !s.summary.partial)
        .max_by_key(|(_, s)| s.time)
        .map(|(id, s)| RecoveryPoint {
            time: started(s),
            snapshot: *id,
            via: "snapshot".into(),
        })
}

/// When the oldest complete snapshot of `source` finished: the earliest moment it restores.
pub fn oldest_snapshot(snapshots: &Snapshots, source: &str) -> Option<jiff::Timestamp> {
    snapshots
        .list
        .iter()
        .filter(|(_, s)| s.source.name == source && !s.summary.partial)
        .map(|(_, s)| s.time)
        .min()
}

/// When a snapshot's backup started.
pub fn started(s: &crate::snapshot::Snapshot) -> jiff::Timestamp {
    let took = jiff::SignedDuration::from_secs_f64(s.summary.duration_secs.max(0.0));
    s.time.checked_sub(took).unwrap_or(s.time)
}

/// A target time as the user gives it; an offset is required, so that it cannot mean another
/// instant on a server than here.
pub fn parse_time(t: &str) -> crate::error::Result<jiff::Timestamp> {
    t.parse().map_err(|e| {
        crate::error::Error::invalid(format!(
            "--target-time '{t}': {e} (give an offset, e.g. '2026-11-21 14:30:00+00')"
        ))
    })
}
