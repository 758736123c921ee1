//! The state a drill or a recovery brings each source back to, and the snapshot that holds it.

use crate::catalog::Snapshots;
use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

/// Which state of each source a drill or a recovery brings back.
#[derive(Debug, Clone)]
pub enum Point {
    /// The newest: what a failure now would recover.
    Latest,
    /// The snapshots of one backup set (an id prefix).
    Set(String),
    /// The newest state at or before this moment (PostgreSQL with WAL: exactly this moment).
    Time { at: jiff::Timestamp, text: String },
}

impl Point {
    /// The point a command line asks for: a set, a time (with offset), or the newest.
    pub fn from_args(set: Option<&str>, time: Option<&str>) -> crate::error::Result<Self> {
        Ok(match (set, time) {
            (Some(set), _) => Point::Set(set.to_string()),
            (None, Some(t)) => Point::Time {
                at: crate::connectors::interface::parse_time(t)?,
                text: t.to_string(),
            },
            (None, None) => Point::Latest,
        })
    }

    /// For messages and records.
    pub fn describe(&self) -> String {
        match self {
            Point::Latest => "the newest state".into(),
            Point::Set(s) => format!("backup set {s}"),
            Point::Time { text, .. } => format!("the state at {text}"),
        }
    }
}

/// The snapshot of `source` that brings back `point`: complete snapshots only.
pub fn choose<'s>(
    snapshots: &'s Snapshots,
    source: &str,
    point: &Point,
) -> std::result::Result<&'s (SnapshotId, Snapshot), String> {
    let complete = snapshots
        .list
        .iter()
        .filter(|(_, s)| s.source.name == source && !s.summary.partial);
    let found = match point {
        Point::Latest => complete.max_by_key(|(_, s)| s.time),
        Point::Set(set) => complete
            .filter(|(_, s)| {
                s.set_id
                    .is_some_and(|id| id.to_hex().starts_with(&set.to_ascii_lowercase()))
            })
            .max_by_key(|(_, s)| s.time),
        Point::Time { at, .. } => complete
            .filter(|(_, s)| s.time <= *at)
            .max_by_key(|(_, s)| s.time),
    };
    found.ok_or_else(|| match point {
        Point::Latest => format!("{source} has no complete snapshot"),
        Point::Set(set) => format!("backup set {set} has no complete snapshot of {source}"),
        Point::Time { text, .. } => {
            format!("{source} has no complete snapshot finished before {text}")
        }
    })
}
