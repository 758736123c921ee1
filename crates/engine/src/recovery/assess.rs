//! Assessment: can the stack be recovered now, within its targets? Every source is probed
//! (`survey`) and its newest recovery point judged against its RPO; the repository must be
//! readable. Each finding carries its status and what to do about it.

use serde::Serialize;

use super::drill::{DrillRecord, DrillResult};
use super::stack::{scenario_for, Member, Targets};
use super::survey::{survey, SourceState};
use crate::catalog::Snapshots;
use crate::check_record::{self, CheckRecord};
use crate::connectors::interface::{Kind, Tier};
use crate::repo::Repository;

/// Ordered: the worse status is the greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Healthy,
    Degraded,
    Critical,
}

#[derive(Debug, Serialize)]
pub struct Finding {
    pub status: Status,
    pub problem: String,
    pub recommendation: String,
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub name: String,
    pub kind: Kind,
    pub status: Status,
    pub details: ServiceDetails,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct ServiceDetails {
    pub tier: Tier,
    pub targets: Targets,
    #[serde(flatten)]
    pub state: SourceState,
    /// The newest drill of this source.
    pub last_drill: Option<LastDrill>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    pub id: String,
    pub started: jiff::Timestamp,
    pub result: DrillResult,
    pub rto_secs: Option<f64>,
    pub problems: Vec<String>,
}

/// A source not drilled for this long is a finding: its backups are unproven.
pub const DRILL_MAX_AGE_DAYS: i64 = 30;

#[derive(Debug, Serialize)]
pub struct RepositoryState {
    pub url: String,
    pub reachable: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// What the data takes at each stage, when the index could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<Space>,
    /// What the newest `check` found.
    pub last_check: Option<CheckRecord>,
    pub findings: Vec<Finding>,
}

/// The repository's data before and after deduplication and compression.
#[derive(Debug, Serialize)]
pub struct Space {
    /// What the snapshots hold, summed over all of them (their summaries' sizes).
    pub logical_bytes: u64,
    /// Plaintext of every distinct chunk in the index.
    pub unique_bytes: u64,
    /// Those chunks compressed and encrypted.
    pub stored_bytes: u64,
    /// logical / unique (0 when the repository holds nothing).
    pub dedup_ratio: f64,
    /// unique / stored.
    pub compression_ratio: f64,
}

impl Space {
    /// From the snapshot summaries and the index files, one file at a time (the index is
    /// never held whole, so this stays small for a large repository; a chunk indexed twice
    /// by concurrent writers counts twice). No snapshot tree is read.
    pub fn of(repo: &Repository, snapshots: &Snapshots) -> crate::error::Result<Self> {
        let logical_bytes = snapshots.list.iter().map(|(_, s)| s.summary.bytes).sum();
        let (mut unique_bytes, mut stored_bytes) = (0u64, 0u64);
        for listed in repo.store().list(crate::store::ObjectKind::Index)? {
            for (_, entries) in repo.load_index_file(&listed.name)? {
                for e in entries {
                    unique_bytes += e.raw_length as u64;
                    stored_bytes += e.length as u64;
                }
            }
        }
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Ok(Self {
            logical_bytes,
            unique_bytes,
            stored_bytes,
            dedup_ratio: ratio(logical_bytes, unique_bytes),
            compression_ratio: ratio(unique_bytes, stored_bytes),
        })
    }
}

/// A repository not checked for this long is a finding.
pub const CHECK_MAX_AGE_DAYS: i64 = 30;

#[derive(Debug, Serialize)]
pub struct Assessment {
    pub assessed_at: jiff::Timestamp,
    pub overall_status: Status,
    pub services: Vec<Service>,
    pub repository: RepositoryState,
    /// Every finding's recommendation, the most serious first.
    pub recommendations: Vec<String>,
}

/// The repository as the caller could open it: its listing and drill records, or why it
/// could not be read.
pub type Opened<'r> =
    std::result::Result<(&'r Repository, &'r Snapshots, &'r [(String, DrillRecord)]), String>;

/// Assesses `members` (in their recovery order) and the repository at `url`.
pub fn assess(url: &str, opened: Opened<'_>, members: &[&Member<'_>]) -> Assessment {
    let datastores: Vec<_> = members.iter().map(|m| m.datastore).collect();
    let states = survey(opened.as_ref().ok().map(|(r, s, _)| (*r, *s)), &datastores);
    let drills: &[(String, DrillRecord)] = opened.as_ref().map(|(.., d)| *d).unwrap_or(&[]);
    let services: Vec<Service> = members
        .iter()
        .zip(states)
        .map(|(m, state)| service(m, state, last_drill(drills, m.name())))
        .collect();
    let repository = repository(url, opened);
    let mut all: Vec<&Finding> = services
        .iter()
        .flat_map(|s| &s.findings)
        .chain(&repository.findings)
        .collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.status));
    let mut recommendations: Vec<String> = Vec::new();
    for f in all {
        if !recommendations.contains(&f.recommendation) {
            recommendations.push(f.recommendation.clone());
        }
    }
    let overall_status = services
        .iter()
        .map(|s| s.status)
        .chain([repository.status])
        .max()
        .unwrap_or(Status::Healthy);
    Assessment {
        assessed_at: jiff::Timestamp::now(),
        overall_status,
        services,
        repository,
        recommendations,
    }
}

/// The newest drill step of `source`, with its record's id and start.
fn last_drill(drills: &[(String, DrillRecord)], source: &str) -> Option<LastDrill> {
    drills
        .iter()
        .flat_map(|(id, r)| r.steps.iter().map(move |s| (id, r, s)))
        .filter(|(.., s)| s.source == source)
        .max_by_key(|(_, r, _)| r.started)
        .map(|(id, r, s)| LastDrill {
            id: id.clone(),
            started: r.started,
            result: s.result,
            rto_secs: s.rto_secs,
            problems: s.problems.clone(),
        })
}

fn service(m: &Member<'_>, state: SourceState, drill: Option<LastDrill>) -> Service {
    let name = m.name();
    let scenario = scenario_for(m.tier());
    let backup = format!("run `bulwark backup {name}`");
    let mut findings = Vec::new();
    let mut find = |status, problem: String, recommendation: String| {
        findings.push(Finding {
            status,
            problem,
            recommendation,
        })
    };
    let h = &state.health;
    if !h.reachable {
        find(
            Status::Critical,
            format!(
                "{name} is unreachable: {}",
                h.error.as_deref().unwrap_or("no answer")
            ),
            format!("bring {name} back; if its data is lost, run `bulwark recover --scenario {scenario}`"),
        );
    }
    for w in &h.warnings {
        find(
            Status::Degraded,
            format!("{name}: {w}"),
            format!("fix {name}: {w}"),
        );
    }
    if let Some(e) = &state.recovery_point_error {
        find(
            Status::Degraded,
            format!("{name}: its log archive cannot be read: {e}"),
            "run `bulwark check --read-data` to find the damage".into(),
        );
    }
    let rpo = m.targets.rpo_secs as f64;
    match state.recovery_point_age_secs {
        None => find(
            Status::Critical,
            format!("{name} has no complete snapshot: it cannot be recovered"),
            backup,
        ),
        Some(age) if age > rpo => find(
            if age > 2.0 * rpo {
                Status::Critical
            } else {
                Status::Degraded
            },
            format!(
                "{name}'s newest recovery point is {} old; its RPO target is {}",
                span(age),
                span(rpo)
            ),
            format!("{backup}, and back it up at least every {}", span(rpo)),
        ),
        Some(_) => {}
    }
    let drill_again = format!("run `bulwark drill --scenario {scenario}`");
    let now = jiff::Timestamp::now();
    match &drill {
        None => find(
            Status::Degraded,
            format!("{name} was never drilled: its backups are not proven to restore"),
            drill_again,
        ),
        Some(d) if d.result == DrillResult::Failed => find(
            Status::Critical,
            format!(
                "the last drill of {name} ({}) failed: {}",
                &d.id[..8],
                d.problems
                    .first()
                    .map(String::as_str)
                    .unwrap_or("see the record")
            ),
            format!(
                "see `bulwark drills {}`, fix the cause, then {drill_again}",
                &d.id[..8]
            ),
        ),
        Some(d) if d.result == DrillResult::TargetMissed => find(
            Status::Degraded,
            format!(
                "the last drill of {name} ({}) missed a target (RTO {} against {})",
                &d.id[..8],
                d.rto_secs.map(span).unwrap_or_else(|| "-".into()),
                span(m.targets.rto_secs as f64)
            ),
            format!("see `bulwark drills {}`", &d.id[..8]),
        ),
        Some(d) if now.duration_since(d.started).as_hours() >= 24 * DRILL_MAX_AGE_DAYS => find(
            Status::Degraded,
            format!("no drill of {name} in {DRILL_MAX_AGE_DAYS} days"),
            drill_again,
        ),
        Some(_) => {}
    }
    Service {
        name: name.to_string(),
        kind: m.kind(),
        status: findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Healthy),
        details: ServiceDetails {
            tier: m.tier(),
            targets: m.targets.clone(),
            state,
            last_drill: drill,
        },
        findings,
    }
}

fn repository(url: &str, opened: Opened<'_>) -> RepositoryState {
    let unreachable = |e: String| RepositoryState {
        url: url.to_string(),
        reachable: false,
        status: Status::Critical,
        snapshots: None,
        size_bytes: None,
        space: None,
        last_check: None,
        findings: vec![Finding {
            status: Status::Critical,
            problem: format!("the repository cannot be read: {e}"),
            recommendation: "check the repository's storage, credentials and password".into(),
        }],
    };
    let (repo, snapshots, _) = match opened {
        Ok(o) => o,
        Err(e) => return unreachable(e),
    };
    let (sizes, last_check) = match repo
        .pack_sizes()
        .and_then(|s| Ok((s, check_record::last(repo)?)))
    {
        Ok(found) => found,
        Err(e) => return unreachable(e.to_string()),
    };
    let check_again = "run `bulwark check --read-data-subset 10%` (and schedule it)".to_string();
    let findings: Vec<Finding> = match &last_check {
        None => vec![Finding {
            status: Status::Degraded,
            problem: "the repository was never checked".into(),
            recommendation: check_again,
        }],
        Some(c) if !c.ok => vec![Finding {
            status: Status::Critical,
            problem: format!(
                "the last check ({}) found {} error(s): {}",
                c.time,
                c.error_count,
                c.errors.first().map(String::as_str).unwrap_or("")
            ),
            recommendation:
                "run `bulwark check --read-data` to see the damage, then `bulwark repair`".into(),
        }],
        Some(c)
            if jiff::Timestamp::now().duration_since(c.time).as_hours()
                >= 24 * CHECK_MAX_AGE_DAYS =>
        {
            vec![Finding {
                status: Status::Degraded,
                problem: format!("the repository was not checked in {CHECK_MAX_AGE_DAYS} days"),
                recommendation: check_again,
            }]
        }
        Some(_) => Vec::new(),
    };
    RepositoryState {
        url: url.to_string(),
        reachable: true,
        status: findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Healthy),
        snapshots: Some(snapshots.list.len()),
        size_bytes: Some(sizes.values().sum()),
        // Sizes are a nicety: an unreadable index shows as damage in `check`, not here.
        space: Space::of(repo, snapshots).ok(),
        last_check,
        findings,
    }
}

/// A duration for people: `0.4s`, `45s`, `12m`, `3.5h`, `2.0d`.
pub fn span(secs: f64) -> String {
    match secs {
        s if s < 10.0 => format!("{s:.1}s"),
        s if s < 120.0 => format!("{s:.0}s"),
        s if s < 7200.0 => format!("{:.0}m", s / 60.0),
        s if s < 172_800.0 => format!("{:.1}h", s / 3600.0),
        s => format!("{:.1}d", s / 86400.0),
    }
}
