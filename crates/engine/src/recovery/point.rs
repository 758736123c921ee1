//! The snapshot that holds the state a drill or a recovery brings a source back to.

use crate::catalog::Snapshots;
pub use crate::connectors::interface::Point;
use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

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
