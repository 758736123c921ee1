//! What makes a point-in-time recovery trustworthy: before anything is written, the target is
//! checked against the base backup and the WAL chain from the base backup to the target is
//! proven complete; after the server has promoted, where replay actually ended is compared
//! with where it was meant to end. A recovery that stopped short is a failure, never
//! "recovered".

use std::path::Path;

use serde::Serialize;

use super::physical::BaseBackupFacts;
use super::pitr::RecoveryTarget;
use super::wal::timeline::{parse_history, HistoryEntry};
use super::wal::{ArchiveMap, Chain, ChainEnd, Lsn, WalArchive};
use crate::connectors::interface::parse_time;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Repository;

/// The WAL a recovery will read, proven present before the base backup is laid out.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryPlan {
    /// The timeline recovery follows (the newest descending from the base backup's, unless
    /// one was asked for).
    pub timeline: u32,
    /// Where the base backup becomes consistent, from its backup history file.
    pub base_stop: Option<Lsn>,
    pub chain: Chain,
    /// Set when `allow_gap` let a recovery through although the chain has a gap: the last
    /// segment replay can reach.
    pub stops_at_gap: Option<String>,
}

impl RecoveryPlan {
    /// True if the recovery, by request, ends at a gap instead of the newest WAL.
    pub fn short_by_request(&self, target: &RecoveryTarget) -> bool {
        self.stops_at_gap.is_some() && *target == RecoveryTarget::Latest
    }
}

/// Refuses a target the base backup cannot reach: one before it started (the result would be
/// the base backup's own, later, state) or, for a location, before it became consistent.
/// `finished` (when its snapshot was written) bounds the start where the label's time zone
/// cannot be read.
pub fn check_target(
    base: &BaseBackupFacts,
    finished: jiff::Timestamp,
    base_stop: Option<Lsn>,
    target: &RecoveryTarget,
) -> Result<()> {
    match target {
        RecoveryTarget::Time(t) => {
            let when = parse_time(t)?;
            let (bound, what) = match base.started() {
                Some(started) => (started, "started".to_string()),
                None => (
                    finished,
                    format!(
                        "was saved (its label's start time, '{}', names a zone Bulwark cannot read)",
                        base.start_time
                    ),
                ),
            };
            if when < bound {
                return Err(Error::invalid(format!(
                    "--target-time {t} is before this base backup {what} ({bound}): it cannot recover an earlier state. Choose an older base backup (omit --snapshot to pick one)"
                )));
            }
        }
        RecoveryTarget::Lsn(l) => {
            let lsn = Lsn::parse(l)?;
            let (floor, what) = match base_stop {
                Some(stop) => (stop, "became consistent"),
                None => (Lsn::parse(&base.start_lsn)?, "started"),
            };
            if lsn < floor {
                return Err(Error::invalid(format!(
                    "--target-lsn {lsn} is before this base backup {what} ({floor}): it cannot recover an earlier state. Choose an older base backup"
                )));
            }
        }
        RecoveryTarget::Latest | RecoveryTarget::Xid(_) | RecoveryTarget::Name(_) => {}
    }
    Ok(())
}

/// Checks the target against the base backup and proves the WAL chain. A gap fails, naming
/// the missing segments, unless `allow_gap` (then the plan says where replay will stop).
pub fn plan(
    repo: &Repository,
    base: &BaseBackupFacts,
    finished: jiff::Timestamp,
    target: &RecoveryTarget,
    timeline: Option<u32>,
    allow_gap: bool,
) -> Result<RecoveryPlan> {
    let archive = WalArchive::new(repo, &base.wal_source)?;
    let map = ArchiveMap::load(&archive)?;
    let base_stop = map.backup_stop(&archive, &base.start_wal)?;
    check_target(base, finished, base_stop, target)?;
    let start = Lsn::parse(&base.start_lsn)?;
    let tli = timeline.unwrap_or_else(|| map.newest_timeline(base.timeline));
    let path = map.path(base.timeline, start, tli)?;
    let end = match target {
        RecoveryTarget::Lsn(l) => ChainEnd::Lsn(Lsn::parse(l)?),
        _ => ChainEnd::Newest,
    };
    let chain = map.chain(path, base_stop, end);
    let mut plan = RecoveryPlan {
        timeline: tli,
        base_stop,
        stops_at_gap: None,
        chain,
    };
    if plan.chain.complete() {
        return Ok(plan);
    }
    let missing = plan
        .chain
        .missing
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let source = &base.wal_source;
    let gap = |why: String| Error::new(ErrorKind::Corrupt, why);
    let consistent = base_stop.map_or(start, |s| s).segment(map.seg_size);
    if plan.chain.reachable_segment() < consistent {
        return Err(gap(format!(
            "the WAL archive of '{source}' lacks {missing}, which this base backup needs to become consistent: it cannot be recovered. Pick another base backup"
        )));
    }
    if let ChainEnd::Lsn(l) = end {
        return Err(gap(format!(
            "the WAL archive of '{source}' lacks {missing}: recovery cannot reach {l}. The newest reachable point is in segment {}",
            plan.chain.reachable_segment_name()
        )));
    }
    if !allow_gap {
        let advice = match target {
            RecoveryTarget::Latest => format!(
                "recovery would stop in segment {} instead of {}. Pass --allow-gap to recover up to the gap on purpose",
                plan.chain.reachable_segment_name(),
                plan.chain.last_segment
            ),
            _ => format!(
                "recovery cannot pass it. If the target lies before segment {}, pass --allow-gap (recovery then fails if it reaches the gap first)",
                plan.chain.reachable_segment_name()
            ),
        };
        return Err(gap(format!(
            "the WAL archive of '{source}' lacks {missing}: {advice}. `bulwark check` shows which base backups the gap affects"
        )));
    }
    plan.stops_at_gap = Some(plan.chain.reachable_segment_name());
    Ok(plan)
}

/// Where replay ended, from the history file PostgreSQL wrote for the new timeline.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayEnd {
    pub timeline: u32,
    pub lsn: Lsn,
    pub reason: String,
}

/// Reads `pg_wal/<new timeline>.history` of a promoted data directory.
pub fn replay_end(data_dir: &Path, new_timeline: u32) -> Result<ReplayEnd> {
    let path = data_dir.join(format!("pg_wal/{new_timeline:08X}.history"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::new(
            ErrorKind::Source,
            format!(
                "cannot tell where recovery ended: {} is unreadable",
                path.display()
            ),
        )
        .with_source(e)
    })?;
    let last: HistoryEntry = parse_history(&text)?.pop().ok_or_else(|| {
        Error::new(
            ErrorKind::Source,
            format!(
                "cannot tell where recovery ended: {} is empty",
                path.display()
            ),
        )
    })?;
    Ok(ReplayEnd {
        timeline: last.parent,
        lsn: last.switchpoint,
        reason: last.reason,
    })
}

/// Compares where replay ended with where it was meant to end.
pub fn verify(plan: &RecoveryPlan, target: &RecoveryTarget, end: &ReplayEnd) -> Result<()> {
    let short = |why: String| {
        Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "recovery stopped short: {why}. The restored server was stopped; do not use it"
            ),
        ))
    };
    if end.timeline != plan.timeline {
        return short(format!(
            "replay ended at {} on timeline {}, but was to follow timeline {}",
            end.lsn, end.timeline, plan.timeline
        ));
    }
    match target {
        RecoveryTarget::Latest => {
            if !plan.chain.reached(end.lsn) {
                return short(format!(
                    "replay ended at {}, but the archive holds WAL through segment {}",
                    end.lsn,
                    plan.chain.reachable_segment_name()
                ));
            }
        }
        RecoveryTarget::Lsn(l) => {
            let wanted = Lsn::parse(l)?;
            if end.lsn < wanted {
                return short(format!(
                    "replay ended at {}, before the target {wanted}",
                    end.lsn
                ));
            }
        }
        RecoveryTarget::Time(_) | RecoveryTarget::Xid(_) | RecoveryTarget::Name(_) => {
            // PostgreSQL records why it stopped; this text means it ran out of WAL first
            // (servers before 13 promote there instead of failing).
            if end.reason == "no recovery target specified" {
                return short(format!(
                    "replay ran out of WAL at {} before reaching the target",
                    end.lsn
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SEG: u64 = 16 << 20;

    fn lsn(s: &str) -> Lsn {
        Lsn::parse(s).expect("lsn")
    }

    /// Timeline 1, segments 2..=5 archived, base backup from 0/2000028 to 0/2000100.
    fn plan_of(target: &RecoveryTarget) -> RecoveryPlan {
        let map = ArchiveMap {
            files: BTreeMap::new(),
            seg_size: SEG,
            segments: [(1, (2..=5).collect())].into_iter().collect(),
            histories: BTreeMap::new(),
            bad_histories: Vec::new(),
        };
        let path = map.path(1, lsn("0/2000028"), 1).expect("path");
        let end = match target {
            RecoveryTarget::Lsn(l) => ChainEnd::Lsn(lsn(l)),
            _ => ChainEnd::Newest,
        };
        RecoveryPlan {
            timeline: 1,
            base_stop: Some(lsn("0/2000100")),
            chain: map.chain(path, Some(lsn("0/2000100")), end),
            stops_at_gap: None,
        }
    }

    fn end(timeline: u32, at: &str, reason: &str) -> ReplayEnd {
        ReplayEnd {
            timeline,
            lsn: lsn(at),
            reason: reason.into(),
        }
    }

    #[test]
    fn replay_that_ended_short_of_the_plan_is_a_failure() {
        let latest = RecoveryTarget::Latest;
        let plan = plan_of(&latest);
        let none = "no recovery target specified";
        assert!(verify(&plan, &latest, &end(1, "0/5000100", none)).is_ok());
        assert!(verify(&plan, &latest, &end(1, "0/6000000", none)).is_ok());
        let short = verify(&plan, &latest, &end(1, "0/4FFFF00", none));
        assert!(short.is_err_and(|e| e.to_string().contains("stopped short")));
        assert!(verify(&plan, &latest, &end(2, "0/5000100", none)).is_err());

        let at = RecoveryTarget::Lsn("0/4000000".into());
        let plan = plan_of(&at);
        assert!(verify(&plan, &at, &end(1, "0/4000060", "after LSN 0/4000000")).is_ok());
        assert!(verify(&plan, &at, &end(1, "0/3FFFF00", none)).is_err());

        let time = RecoveryTarget::Time("2026-12-02 10:00:00+00".into());
        let plan = plan_of(&time);
        let reached = "before 2026-12-02 10:00:01.5+00";
        assert!(verify(&plan, &time, &end(1, "0/3000100", reached)).is_ok());
        assert!(verify(&plan, &time, &end(1, "0/5000100", none)).is_err());
    }

    #[test]
    fn targets_before_the_base_backup_are_refused() {
        let base = BaseBackupFacts {
            timeline: 1,
            start_lsn: "0/2000028".into(),
            start_wal: "000000010000000000000002".into(),
            start_time: "2026-12-02 10:00:00 CET".into(),
            started_at: "2026-12-02T09:00:00Z".parse().ok(),
            ..Default::default()
        };
        let stop = Some(lsn("0/2000100"));
        let saved: jiff::Timestamp = "2026-12-02T09:05:00Z".parse().expect("saved");
        let check = |base: &BaseBackupFacts, stop, target| check_target(base, saved, stop, &target);
        let time = |t: &str| RecoveryTarget::Time(t.into());
        assert!(check(&base, stop, time("2026-12-02 08:59:59+00")).is_err());
        assert!(check(&base, stop, time("2026-12-02 09:00:00+00")).is_ok());
        assert!(check(&base, stop, time("yesterday")).is_err());
        let at = |l: &str| RecoveryTarget::Lsn(l.into());
        assert!(check(&base, stop, at("0/2000080")).is_err());
        assert!(check(&base, stop, at("0/2000100")).is_ok());
        assert!(check(&base, None, at("0/2000080")).is_ok());
        // A label in a zone only the server could read, and no recorded instant: the time
        // the snapshot was saved (after the base backup ended) is the bound.
        let unknown = BaseBackupFacts {
            started_at: None,
            ..base
        };
        assert!(check(&unknown, stop, time("2026-12-02 09:05:00+00")).is_ok());
        let refused = check(&unknown, stop, time("2026-12-02 09:01:00+00"));
        assert!(refused.is_err_and(|e| e.to_string().contains("names a zone")));
    }
}
