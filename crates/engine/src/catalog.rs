//! Finding snapshots: filters, id prefixes, "latest", and the retention policy of `forget`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::snapshot::{self, Listing, Snapshot, Unreadable};

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub source: Option<String>,
    pub tags: Vec<String>,
    /// Set id or prefix.
    pub set: Option<String>,
    pub host: Option<String>,
}

impl Filter {
    pub fn matches(&self, snap: &Snapshot) -> bool {
        self.source.as_ref().is_none_or(|s| &snap.source.name == s)
            && self.host.as_ref().is_none_or(|h| &snap.hostname == h)
            && self.tags.iter().all(|t| snap.tags.contains(t))
            && self.set.as_ref().is_none_or(|p| {
                snap.set_id
                    .is_some_and(|s| s.to_hex().starts_with(p.as_str()))
            })
    }
}

/// Resolves "latest" (optionally of one source) or an id prefix.
pub fn resolve<'a>(
    list: &'a [(SnapshotId, Snapshot)],
    spec: &str,
    source: Option<&str>,
) -> Result<&'a (SnapshotId, Snapshot)> {
    let candidates: Vec<&(SnapshotId, Snapshot)> = list
        .iter()
        .filter(|(_, s)| source.is_none_or(|src| s.source.name == src))
        .collect();
    if spec == "latest" {
        let mut sources: Vec<&str> = candidates
            .iter()
            .map(|(_, s)| s.source.name.as_str())
            .collect();
        sources.sort();
        sources.dedup();
        if sources.len() > 1 {
            return Err(Error::invalid(format!(
                "\"latest\" is ambiguous: the repository has sources {}; pass --source",
                sources.join(", ")
            )));
        }
        return candidates
            .into_iter()
            .max_by_key(|(_, s)| s.time)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "no snapshot matches"));
    }
    let spec = spec.to_ascii_lowercase();
    let found: Vec<_> = candidates
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec))
        .collect();
    match found.len() {
        1 => Ok(found[0]),
        0 => Err(Error::new(
            ErrorKind::NotFound,
            format!("no snapshot {spec}"),
        )),
        n => Err(Error::invalid(format!(
            "snapshot prefix {spec} is ambiguous ({n} matches)"
        ))),
    }
}

/// How far apart the clocks of hosts writing one repository may be, when deciding whether an
/// unreadable manifest could be newer than a readable one.
const CLOCK_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

/// The spec that takes the newest readable snapshot even when a damaged manifest could be
/// newer.
pub const LATEST_READABLE: &str = "latest-readable";

/// The repository's snapshots as listed: the readable ones, oldest first, and the manifests
/// that could not be read. Resolving "latest" or an id against it never passes over a
/// damaged manifest silently.
#[derive(Debug, Default)]
pub struct Snapshots {
    pub list: Listing,
    pub unreadable: Vec<Unreadable>,
}

impl Snapshots {
    pub fn load(repo: &Repository) -> Result<Self> {
        let (list, unreadable) = snapshot::list_readable(repo)?;
        Ok(Self { list, unreadable })
    }

    /// Resolves "latest", "latest-readable" or an id prefix (optionally of one source).
    /// "latest" is an error while a damaged manifest could be newer than the newest readable
    /// snapshot (its source is unknown, so a source filter does not help); an id that names
    /// a damaged manifest is an error that says so.
    pub fn resolve(&self, spec: &str, source: Option<&str>) -> Result<&(SnapshotId, Snapshot)> {
        match spec {
            LATEST_READABLE => resolve(&self.list, "latest", source),
            "latest" => {
                let found = resolve(&self.list, "latest", source);
                let newest = found.as_ref().ok().map(|(_, s)| s.time);
                let newer: Vec<&Unreadable> = self
                    .unreadable
                    .iter()
                    .filter(|u| match (u.written, newest) {
                        (Some(w), Some(t)) => w >= t - CLOCK_SLACK,
                        _ => true,
                    })
                    .collect();
                if newer.is_empty() {
                    return found;
                }
                Err(Error::corrupt(format!(
                    "\"latest\" cannot be resolved: {} snapshot manifest(s) are unreadable and may be newer than {}: {}. Name a snapshot by id, or pass --snapshot {LATEST_READABLE} to take the newest readable one; `bulwark check` lists the damage, `bulwark forget ID` removes a damaged manifest",
                    newer.len(),
                    match &found {
                        Ok((id, _)) => format!("the newest readable snapshot ({})", id.short()),
                        Err(_) => "every readable one".to_string(),
                    },
                    newer.iter().map(|u| u.to_string()).collect::<Vec<_>>().join("; ")
                )))
            }
            prefix => {
                let lower = prefix.to_ascii_lowercase();
                let damaged: Vec<&Unreadable> = self
                    .unreadable
                    .iter()
                    .filter(|u| u.name.starts_with(&lower))
                    .collect();
                match (resolve(&self.list, prefix, source), damaged.as_slice()) {
                    (found, []) => found,
                    (Err(e), [u]) if e.kind() == ErrorKind::NotFound => Err(Error::corrupt(format!(
                        "snapshot {} is damaged: its manifest cannot be read ({}); `bulwark forget {}` removes it",
                        u.name, u.error, u.name
                    ))),
                    (Err(e), _) if e.kind() != ErrorKind::NotFound => Err(e),
                    _ => Err(Error::invalid(format!(
                        "snapshot prefix {lower} is ambiguous (it also matches {} unreadable manifest(s))",
                        damaged.len()
                    ))),
                }
            }
        }
    }

    /// The snapshots named by `specs`, or every readable one the filter matches.
    pub fn select(&self, specs: &[String], filter: &Filter) -> Result<Vec<(SnapshotId, Snapshot)>> {
        if specs.is_empty() {
            return Ok(self
                .list
                .iter()
                .filter(|(_, s)| filter.matches(s))
                .cloned()
                .collect());
        }
        specs
            .iter()
            .map(|spec| self.resolve(spec, filter.source.as_deref()).cloned())
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Duration>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(Option::is_none)
            && self.within.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: SnapshotId,
    pub source: String,
    pub host: String,
    pub time: jiff::Timestamp,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Applies the policy to each (source, host) group separately. Time buckets use `tz`.
pub fn apply_policy(
    list: &[(SnapshotId, Snapshot)],
    policy: &Policy,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(Error::invalid(
            "no retention policy given (e.g. --keep-daily 7); refusing to forget every snapshot",
        ));
    }
    let mut groups: BTreeMap<(String, String), Vec<&(SnapshotId, Snapshot)>> = BTreeMap::new();
    for entry in list {
        groups
            .entry((entry.1.source.name.clone(), entry.1.hostname.clone()))
            .or_default()
            .push(entry);
    }
    type BucketFn = fn(&jiff::Zoned) -> String;
    let rules: [(&str, Option<u32>, BucketFn); 6] = [
        ("last", policy.last, |_| String::new()),
        ("hourly", policy.hourly, |z| {
            z.strftime("%Y-%m-%d %H").to_string()
        }),
        ("daily", policy.daily, |z| {
            z.strftime("%Y-%m-%d").to_string()
        }),
        ("weekly", policy.weekly, |z| {
            let w = z.date().iso_week_date();
            format!("{}-W{}", w.year(), w.week())
        }),
        ("monthly", policy.monthly, |z| {
            z.strftime("%Y-%m").to_string()
        }),
        ("yearly", policy.yearly, |z| z.strftime("%Y").to_string()),
    ];
    let mut out = Vec::new();
    for (_, mut snaps) in groups {
        snaps.sort_by_key(|s| std::cmp::Reverse(s.1.time));
        let mut decisions: Vec<Decision> = snaps
            .iter()
            .map(|(id, s)| Decision {
                id: *id,
                source: s.source.name.clone(),
                host: s.hostname.clone(),
                time: s.time,
                keep: false,
                reasons: Vec::new(),
            })
            .collect();
        for (name, count, bucket) in rules.iter() {
            let Some(mut left) = *count else { continue };
            let mut last_bucket: Option<String> = None;
            for d in decisions.iter_mut() {
                if left == 0 {
                    break;
                }
                let b = if *name == "last" {
                    d.id.to_hex()
                } else {
                    bucket(&d.time.to_zoned(tz.clone()))
                };
                if last_bucket.as_ref() != Some(&b) {
                    d.keep = true;
                    d.reasons.push(if *name == "last" {
                        "last".to_string()
                    } else {
                        format!("{name} {b}")
                    });
                    last_bucket = Some(b);
                    left -= 1;
                }
            }
        }
        if let Some(within) = policy.within {
            let secs = within.as_secs() as i64;
            for d in decisions.iter_mut() {
                if now.duration_since(d.time).as_secs() <= secs {
                    d.keep = true;
                    d.reasons.push("within".into());
                }
            }
        }
        out.extend(decisions);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{SourceInfo, Summary};

    fn snap(time: &str, source: &str) -> (SnapshotId, Snapshot) {
        let s = Snapshot {
            version: 1,
            time: time.parse().expect("timestamp"),
            hostname: "h".into(),
            username: "u".into(),
            source: SourceInfo::new(source, crate::connectors::Kind::Files),
            set_id: None,
            tags: vec![],
            paths: vec![],
            tree: vec![],
            parent: None,
            original: None,
            summary: Summary::default(),
            facts: Default::default(),
            program_version: "0".into(),
        };
        (SnapshotId::random(), s)
    }

    #[test]
    fn daily_weekly_monthly_keep_the_newest_per_bucket() {
        // Two snapshots a day for 60 days.
        let mut list = Vec::new();
        for day in 0..60i64 {
            for hour in [3, 15] {
                let t = jiff::Timestamp::from_second(1_700_000_000 + day * 86400 + hour * 3600)
                    .expect("ts");
                list.push(snap(&t.to_string(), "db"));
            }
        }
        let policy = Policy {
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(3),
            ..Default::default()
        };
        let now = jiff::Timestamp::from_second(1_700_000_000 + 60 * 86400).expect("ts");
        let d = apply_policy(&list, &policy, now, &jiff::tz::TimeZone::UTC).expect("applies");
        let kept: Vec<_> = d.iter().filter(|d| d.keep).collect();
        // 7 daily + up to 4 weekly + up to 3 monthly, overlapping.
        assert!(kept.len() >= 9 && kept.len() <= 14, "kept {}", kept.len());
        let newest = d.iter().max_by_key(|d| d.time).expect("some");
        assert!(newest.keep && newest.reasons.iter().any(|r| r.starts_with("daily")));
        let days: std::collections::HashSet<_> = kept
            .iter()
            .filter(|d| d.reasons.iter().any(|r| r.starts_with("daily")))
            .map(|d| d.time.to_zoned(jiff::tz::TimeZone::UTC).date())
            .collect();
        assert_eq!(days.len(), 7, "one per day");
        assert!(apply_policy(&list, &Policy::default(), now, &jiff::tz::TimeZone::UTC).is_err());
    }

    #[test]
    fn groups_by_source_and_resolves_prefixes() {
        let list = vec![
            snap("2026-01-01T00:00:00Z", "a"),
            snap("2026-01-02T00:00:00Z", "b"),
        ];
        let policy = Policy {
            last: Some(1),
            ..Default::default()
        };
        let d = apply_policy(
            &list,
            &policy,
            jiff::Timestamp::now(),
            &jiff::tz::TimeZone::UTC,
        )
        .expect("ok");
        assert!(d.iter().all(|d| d.keep), "each source keeps its own last");
        assert!(
            resolve(&list, "latest", None).is_err(),
            "ambiguous across sources"
        );
        assert_eq!(
            resolve(&list, "latest", Some("a"))
                .expect("found")
                .1
                .source
                .name,
            "a"
        );
        let prefix = &list[1].0.to_hex()[..8];
        assert_eq!(resolve(&list, prefix, None).expect("found").0, list[1].0);
    }
}
