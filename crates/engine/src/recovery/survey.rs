//! Every source's health and newest recovery point, probed at once: the figures an
//! assessment judges against RPO targets, the same way for every kind.

use serde::Serialize;

use crate::catalog::Snapshots;
use crate::connectors::interface::{
    newest_snapshot, oldest_snapshot, Datastore, Health, Kind, RecoveryPoint,
};
use crate::repo::Repository;

#[derive(Debug, Serialize)]
pub struct SourceState {
    pub source: String,
    pub kind: Kind,
    pub health: Health,
    /// The newest moment the repository can bring this source back to; None when it holds
    /// no complete snapshot of it.
    pub recovery_point: Option<RecoveryPoint>,
    /// The oldest moment it can be brought back to: the end of its oldest complete snapshot
    /// (for PostgreSQL with archived WAL, every moment from there to the recovery point).
    pub oldest_point: Option<jiff::Timestamp>,
    /// Seconds from the recovery point to now: the data lost if the source died now.
    pub recovery_point_age_secs: Option<f64>,
    /// Why the recovery point could not be read in full (an unreadable log archive: the point
    /// above is then the newest complete snapshot; an unreadable repository: it is unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_point_error: Option<String>,
}

/// Probes every source (in parallel: a server that does not answer costs its own timeout,
/// not everyone's) and finds its recovery point in the repository. One source's trouble is
/// reported for that source; it never hides the others.
/// Without a readable repository (`None`) the recovery points are unknown.
pub fn survey(
    repo: Option<(&Repository, &Snapshots)>,
    sources: &[&dyn Datastore],
) -> Vec<SourceState> {
    let healths: Vec<Health> = std::thread::scope(|scope| {
        let probes: Vec<_> = sources
            .iter()
            .map(|d| scope.spawn(move || d.health()))
            .collect();
        probes
            .into_iter()
            .map(|p| {
                p.join()
                    .unwrap_or_else(|_| Health::unreachable("the health probe panicked"))
            })
            .collect()
    });
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    for (d, health) in sources.iter().zip(healths) {
        let (point, error) = match repo {
            None => (None, Some("the repository cannot be read".to_string())),
            Some((repo, snapshots)) => {
                match d
                    .kind()
                    .connector()
                    .recovery_point(repo, snapshots, d.name())
                {
                    Ok(point) => (point, None),
                    Err(e) => (newest_snapshot(snapshots, d.name()), Some(e.to_string())),
                }
            }
        };
        out.push(SourceState {
            source: d.name().to_string(),
            kind: d.kind(),
            health,
            recovery_point_age_secs: point.as_ref().map(|p| p.age_secs(now)),
            oldest_point: repo.and_then(|(_, snapshots)| oldest_snapshot(snapshots, d.name())),
            recovery_point: point,
            recovery_point_error: error,
        });
    }
    out
}
