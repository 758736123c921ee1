//! `check` of the WAL archives. Structure always: object names, history files, and for every
//! base backup whether the archive holds each segment its recovery to the newest WAL reads.
//! With `read_data`, the objects (all, or a random share) are read back and authenticated.
//! Each finding names the source, timeline and file, and the base backups whose recovery it
//! breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use super::timeline::{ArchiveMap, Chain, ChainEnd, Lsn};
use super::{parallel, segment_number, wal_kind, WalArchive, WalKind};
use crate::check::ReadData;
use crate::connectors::interface::{LogCheck, LogSourceCheck};
use crate::connectors::postgres::PgFacts;
use crate::error::Result;
use crate::id::SnapshotId;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::store::ObjectKind;

/// A base backup of the source being checked, and the WAL its recovery reads.
struct Base {
    id: SnapshotId,
    timeline: u32,
    start_lsn: String,
    start_wal: String,
    chain: Option<Chain>,
}

impl Base {
    fn describe(&self) -> String {
        format!("base backup {}", self.id.short())
    }

    /// True if recovering this base reads `name` (a segment or history file).
    fn reads(&self, name: &str, seg_size: u64) -> bool {
        let Some(chain) = &self.chain else {
            return false;
        };
        let Ok(tli) = u32::from_str_radix(name.get(..8).unwrap_or(""), 16) else {
            return false;
        };
        match wal_kind(name) {
            Some(WalKind::Segment) => {
                segment_number(name, seg_size).is_some_and(|n| chain.reads(tli, n))
            }
            Some(WalKind::History) => chain.path.iter().any(|s| s.timeline == tli),
            Some(WalKind::BackupLabel) => name.starts_with(&self.start_wal),
            _ => false,
        }
    }
}

pub fn check_archives(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    read: ReadData,
    progress: &Reporter,
) -> Result<LogCheck> {
    let mut bases: BTreeMap<String, Vec<Base>> = BTreeMap::new();
    for (id, snap) in snapshots {
        let Some(base) = PgFacts::of(snap).ok().and_then(|f| f.physical) else {
            continue;
        };
        bases.entry(base.wal_source).or_default().push(Base {
            id: *id,
            timeline: base.timeline,
            start_lsn: base.start_lsn,
            start_wal: base.start_wal,
            chain: None,
        });
    }
    let mut sources: BTreeSet<String> = repo
        .store()
        .list_dirs(ObjectKind::Log)?
        .into_iter()
        .collect();
    sources.extend(bases.keys().cloned());
    let mut out = LogCheck::default();
    for source in sources {
        progress.send(Progress::Phase(format!("checking WAL archive of {source}")));
        let mut these = bases.remove(&source).unwrap_or_default();
        check_source(repo, &source, &mut these, read, progress, &mut out);
    }
    Ok(out)
}

fn check_source(
    repo: &Repository,
    source: &str,
    bases: &mut [Base],
    read: ReadData,
    progress: &Reporter,
    out: &mut LogCheck,
) {
    let mut summary = LogSourceCheck {
        source: source.to_string(),
        base_backups: bases.len(),
        ..Default::default()
    };
    let prefix = format!("WAL archive of '{source}'");
    let archive = match WalArchive::new(repo, source) {
        Ok(a) => a,
        Err(e) => {
            out.notes.push(format!("wal/{source}: {e}"));
            return;
        }
    };
    let map = match ArchiveMap::load(&archive) {
        Ok(m) => m,
        Err(e) => {
            out.errors.push(format!("{prefix}: cannot be read: {e}"));
            out.sources.push(summary);
            return;
        }
    };
    summary.files = map.files.len();
    for bad in &map.bad_histories {
        out.errors.push(format!(
            "{prefix}: timeline history {bad}; recoveries across it fail"
        ));
    }

    let in_chains = check_chains(&archive, &map, bases, &prefix, out);
    note_unneeded_gaps(&map, &in_chains, &prefix, out);
    (summary.files_read, summary.bytes_read) =
        read_back(&archive, &map, bases, read, progress, &prefix, out);
    out.sources.push(summary);
}

/// For each base backup, the chain its recovery to the newest WAL reads; every missing
/// segment is an error. Returns the names of the missing segments.
fn check_chains(
    archive: &WalArchive,
    map: &ArchiveMap,
    bases: &mut [Base],
    prefix: &str,
    out: &mut LogCheck,
) -> BTreeSet<String> {
    let mut in_chains: BTreeSet<String> = BTreeSet::new();
    for base in bases.iter_mut() {
        let start = match Lsn::parse(&base.start_lsn) {
            Ok(s) => s,
            Err(e) => {
                out.errors
                    .push(format!("{prefix}: {}: {e}", base.describe()));
                continue;
            }
        };
        let target = map.newest_timeline(base.timeline);
        let path = match map.path(base.timeline, start, target) {
            Ok(p) => p,
            Err(e) => {
                let why = format!(
                    "recovery to the newest WAL (timeline {target}) is impossible: {e}; recover to a target on timeline {} with --target-timeline",
                    base.timeline
                );
                out.errors
                    .push(format!("{prefix}: {}: {why}", base.describe()));
                out.affected.entry(base.id).or_default().push(why);
                continue;
            }
        };
        let stop = match map.backup_stop(archive, &base.start_wal) {
            Ok(s) => s,
            Err(e) => {
                out.errors.push(format!(
                    "{prefix}: the backup history file of {}: {e}",
                    base.describe()
                ));
                None
            }
        };
        let chain = map.chain(path, stop, ChainEnd::Newest);
        for m in &chain.missing {
            in_chains.extend(m.names(map.seg_size));
            let why = format!(
                "WAL {m} missing: recovery stops at {} instead of {}",
                chain.reachable_segment_name(),
                chain.last_segment
            );
            out.errors
                .push(format!("{prefix}: {}: {why}", base.describe()));
            out.affected.entry(base.id).or_default().push(why);
        }
        base.chain = Some(chain);
    }
    in_chains
}

/// Gaps no base backup's recovery reads (older than every kept base, or on a timeline none
/// follows) are harmless: notes.
fn note_unneeded_gaps(
    map: &ArchiveMap,
    in_chains: &BTreeSet<String>,
    prefix: &str,
    out: &mut LogCheck,
) {
    for (tli, numbers) in &map.segments {
        let numbers: Vec<u64> = numbers.iter().copied().collect();
        for pair in numbers.windows(2).filter(|p| p[1] > p[0] + 1) {
            let first = super::segment_name(&format!("{tli:08X}"), pair[0] + 1, map.seg_size);
            if !in_chains.contains(&first) {
                out.notes.push(format!(
                    "{prefix}: timeline {tli} lacks {} segment(s) from {first}; no base backup's recovery reads them",
                    pair[1] - pair[0] - 1
                ));
            }
        }
    }
}

/// Reads back and authenticates the archive's objects (all, a random share, or none); each
/// failure is an error naming the base backups whose recovery reads the object. Returns the
/// files and bytes read.
fn read_back(
    archive: &WalArchive,
    map: &ArchiveMap,
    bases: &[Base],
    read: ReadData,
    progress: &Reporter,
    prefix: &str,
    out: &mut LogCheck,
) -> (usize, u64) {
    let mut names: Vec<&String> = map.files.keys().collect();
    match read {
        ReadData::None => names.clear(),
        ReadData::All => {}
        ReadData::Subset(pct) => {
            use rand::seq::SliceRandom;
            names.shuffle(&mut rand::thread_rng());
            names.truncate(((names.len() as f64 * pct / 100.0).ceil() as usize).min(names.len()));
            names.sort();
        }
    }
    let bytes = AtomicU64::new(0);
    let failures = parallel(&names, |name| {
        let result = archive.fetch_file(name);
        if let Ok(Some(c)) = &result {
            bytes.fetch_add(c.len() as u64, Ordering::Relaxed);
            progress.send(Progress::Bytes(c.len() as u64));
        }
        match result {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!("{name} vanished while being read")),
            Err(e) => Some(format!("{name} is damaged: {e}")),
        }
    });
    let read_figures = (names.len(), bytes.into_inner());
    for (name, failure) in names.iter().zip(failures) {
        let Some(failure) = failure else { continue };
        let hit: Vec<&Base> = bases
            .iter()
            .filter(|b| b.reads(name, map.seg_size))
            .collect();
        let whom = if hit.is_empty() {
            "no base backup's recovery reads it".to_string()
        } else {
            format!(
                "recovery of {} stops there",
                hit.iter()
                    .map(|b| b.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        out.errors.push(format!("{prefix}: {failure}; {whom}"));
        for b in hit {
            out.affected
                .entry(b.id)
                .or_default()
                .push(format!("WAL {name} damaged"));
        }
    }
    read_figures
}
