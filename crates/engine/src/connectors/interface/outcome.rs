//! What every restore reports, whatever the datastore: one outcome, timings in one
//! vocabulary, one verdict type naming each difference.

use serde::{Deserialize, Serialize};

use super::{Kind, RestoreInput};
use crate::id::SnapshotId;

/// A finished restore: the common outcome, the connector's own detailed report, and that
/// report as lines for a terminal.
#[derive(Debug, Clone)]
pub struct Restored {
    pub outcome: RestoreOutcome,
    pub report: serde_json::Value,
    pub lines: Vec<String>,
}

impl Restored {
    pub fn new(outcome: RestoreOutcome, report: &impl Serialize, lines: Vec<String>) -> Self {
        Self {
            outcome,
            // Reports are plain structs with string keys: serialising them cannot fail.
            report: serde_json::to_value(report)
                .unwrap_or_else(|e| serde_json::json!({ "unserialisable": e.to_string() })),
            lines,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub kind: Kind,
    /// The source the snapshot was taken from.
    pub source: String,
    pub snapshot: SnapshotId,
    /// Where the data went, described without passwords (for a sandbox: what was created
    /// and removed again).
    pub target: String,
    pub sandbox: bool,
    pub dry_run: bool,
    /// What was restored, counted in `unit` (files, keys, points, databases).
    pub items: u64,
    pub unit: String,
    pub bytes: u64,
    pub timings: Timings,
    /// The comparison with the backup; None when it was skipped (--no-verify, dry run).
    pub verdict: Option<Verdict>,
    /// Why the result is incomplete although what is there is correct: items that failed,
    /// a partial snapshot, a recovery stopped at a WAL gap on request.
    pub incomplete: Vec<String>,
    /// The snapshot's data is damaged: what preceded the damage was restored, the rest not.
    pub damaged: Option<String>,
}

impl RestoreOutcome {
    /// The outcome of restoring `input` into `target`, with nothing counted yet; connectors
    /// fill in the rest with struct update syntax.
    pub fn of(input: &RestoreInput<'_>, target: impl Into<String>, unit: &str) -> Self {
        Self {
            kind: input.kind,
            source: input.snapshot.source.name.clone(),
            snapshot: input.id,
            target: target.into(),
            sandbox: false,
            dry_run: false,
            items: 0,
            unit: unit.to_string(),
            bytes: 0,
            timings: Timings::default(),
            verdict: None,
            incomplete: Vec::new(),
            damaged: None,
        }
    }
}

impl RestoreOutcome {
    /// Everything that keeps this restore from being exactly what was asked: damage, what is
    /// missing, each difference from the backup, or that nothing was compared at all. Empty
    /// only for a restore that came back whole and verified.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.damaged.iter().cloned().collect();
        out.extend(self.incomplete.iter().cloned());
        match &self.verdict {
            None => out.push("nothing was compared with the backup".into()),
            Some(v) => out.extend(v.mismatches.iter().map(|m| format!("MISMATCH {m}"))),
        }
        out
    }
}

/// Seconds, measured the same way for every kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// From the start of the restore until the target was usable (what RTO measures).
    pub total_secs: f64,
    /// Moving the data: laying out files, loading keys, uploading points.
    pub transfer_secs: f64,
    /// Starting a server and waiting until it answers (load, WAL replay); None when no
    /// server was started.
    pub ready_secs: Option<f64>,
    /// Comparing with the backup; None when it was not timed apart from the transfer.
    pub verify_secs: Option<f64>,
}

/// The comparison of restored data with the figures recorded at backup time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verdict {
    /// Objects compared (tables, keys, points, files).
    pub checked: u64,
    pub mismatches: Vec<Mismatch>,
    /// What the comparison could not judge, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// Adds the mismatches and counts of another verdict (one per database, collection...).
    pub fn merge(&mut self, other: Verdict) {
        self.checked += other.checked;
        self.mismatches.extend(other.mismatches);
        self.notes.extend(other.notes);
    }
}

/// One difference, named: which object of which kind, and what is wrong with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mismatch {
    /// `table`, `database`, `key`, `point`, `collection`, `file`.
    pub object: String,
    pub name: String,
    pub problem: String,
}

impl Mismatch {
    pub fn new(object: &str, name: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            object: object.to_string(),
            name: name.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.object, self.name, self.problem)
    }
}

/// How much of an expected top-K answer (`(id, distance or score)`, best first) a search
/// found, from 0 to 1. A different id counts as found when its value ties with the last
/// expected one within `tie` (relative): exact search orders equal values arbitrarily.
pub fn top_k_overlap<K: Eq + std::hash::Hash>(
    expected: &[(K, f64)],
    got: &[(K, f64)],
    tie: f64,
) -> f64 {
    let Some((_, last)) = expected.last() else {
        return if got.is_empty() { 1.0 } else { 0.0 };
    };
    let want: std::collections::HashSet<&K> = expected.iter().map(|(id, _)| id).collect();
    let ties = |v: f64| (v - last).abs() <= tie * last.abs().max(1.0);
    let found = got
        .iter()
        .filter(|(id, v)| want.contains(id) || ties(*v))
        .count();
    (found as f64 / expected.len() as f64).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::top_k_overlap;

    #[test]
    fn overlap_counts_ties_at_the_boundary() {
        let want = [(1, 0.9), (2, 0.8), (3, 0.5)];
        assert_eq!(top_k_overlap(&want, &want, 1e-5), 1.0);
        // 4 ties with 3: the same answer in another order.
        assert_eq!(
            top_k_overlap(&want, &[(1, 0.9), (2, 0.8), (4, 0.5)], 1e-5),
            1.0
        );
        let o = top_k_overlap(&want, &[(1, 0.9), (7, 0.6), (4, 0.4)], 1e-5);
        assert!((o - 1.0 / 3.0).abs() < 1e-9, "{o}");
        assert_eq!(top_k_overlap(&want, &[], 1e-5), 0.0);
        assert_eq!(top_k_overlap::<u8>(&[], &[], 1e-5), 1.0);
    }
}
