//! Log positions, timeline history files, and which archived segments a recovery reads.
//!
//! PostgreSQL recovering with `recovery_target_timeline = 'latest'` probes the archive for
//! history files of the timelines after the base backup's (2, 3, ... until one is missing),
//! follows the newest one's history back to the base backup's timeline, and reads each segment
//! from the newest timeline on that path that had begun by then. [`ArchiveMap::chain`] does the
//! same on the archive's listing, so a gap is found before anything is restored, not by a
//! recovery that ends early and reports success.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Serialize, Serializer};

use super::{segment_name, wal_kind, WalArchive, WalKind};
use crate::error::{Error, ErrorKind, Result};

/// A WAL location (`0/3000060`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("'{text}' is not a WAL location (e.g. 0/3000060)"));
        let (hi, lo) = text.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Self((hi as u64) << 32 | lo as u64))
    }

    /// The number of the segment holding this location.
    pub fn segment(self, seg_size: u64) -> u64 {
        self.0 / seg_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One line of a timeline history file: `parent` ended (and the file's timeline began) at
/// `switchpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub parent: u32,
    pub switchpoint: Lsn,
    pub reason: String,
}

/// Parses a history file: `<parent timeline>\t<switchpoint>\t<reason>` per line, oldest first;
/// blank lines and `#` comments are allowed.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>> {
    let mut out: Vec<HistoryEntry> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, char::is_whitespace);
        let bad = || Error::corrupt(format!("timeline history line '{line}' is malformed"));
        let parent = fields.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let switchpoint = Lsn::parse(fields.next().ok_or_else(bad)?).map_err(|_| bad())?;
        if out
            .last()
            .is_some_and(|p| p.parent >= parent || p.switchpoint > switchpoint)
        {
            return Err(Error::corrupt(format!(
                "timeline history line '{line}' goes backwards"
            )));
        }
        out.push(HistoryEntry {
            parent,
            switchpoint,
            reason: fields.next().unwrap_or("").trim().to_string(),
        });
    }
    Ok(out)
}

/// One timeline on a recovery's path and where on it replay runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub timeline: u32,
    pub begin: Lsn,
    /// Where a later timeline on the path forked off; None for the last.
    pub end: Option<Lsn>,
}

/// Missing segments `first..=last` of one timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub count: u64,
}

impl Missing {
    /// Every missing segment's name.
    pub fn names(&self, seg_size: u64) -> Vec<String> {
        let start = super::segment_number(&self.first, seg_size).unwrap_or(0);
        (start..start + self.count)
            .map(|n| segment_name(&self.first[..8], n, seg_size))
            .collect()
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 {
            write!(f, "timeline {} segment {}", self.timeline, self.first)
        } else {
            write!(
                f,
                "timeline {} segments {} .. {} ({})",
                self.timeline, self.first, self.last, self.count
            )
        }
    }
}

/// The segments a recovery from one base backup reads, and which of them the archive lacks.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    pub path: Vec<Span>,
    pub first_segment: String,
    /// The segment replay must reach: the target's, or the newest archived on the path.
    pub last_segment: String,
    pub segments: u64,
    pub missing: Vec<Missing>,
    #[serde(skip)]
    first_missing: Option<u64>,
    #[serde(skip)]
    last_number: u64,
    #[serde(skip)]
    seg_size: u64,
}

impl Chain {
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// The segment number replay is expected to reach: the last, or the one before the first
    /// gap (replay cannot cross one).
    pub fn reachable_segment(&self) -> u64 {
        self.first_missing
            .map_or(self.last_number, |m| m.saturating_sub(1))
    }

    /// The name of [`Chain::reachable_segment`] on its timeline.
    pub fn reachable_segment_name(&self) -> String {
        let n = self.reachable_segment();
        let tli = timeline_at(&self.path, n, self.seg_size);
        segment_name(&format!("{tli:08X}"), n, self.seg_size)
    }

    /// True if this recovery reads segment `n` of timeline `tli`.
    pub fn reads(&self, tli: u32, n: u64) -> bool {
        let first = self
            .path
            .first()
            .map_or(0, |s| s.begin.segment(self.seg_size));
        (first..=self.last_number).contains(&n) && timeline_at(&self.path, n, self.seg_size) == tli
    }

    /// True if replay ending at `end` reached [`Chain::reachable_segment`].
    pub fn reached(&self, end: Lsn) -> bool {
        end.segment(self.seg_size) >= self.reachable_segment()
    }
}

/// Where recovery should stop, as far as the archive can tell in advance.
#[derive(Debug, Clone, Copy)]
pub enum ChainEnd {
    /// Through the newest archived segment of the path (a time, xid or name target, or none).
    Newest,
    /// Through the segment holding this location.
    Lsn(Lsn),
}

/// PostgreSQL's default, assumed only for an archive that has no segment to read it from.
const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// What one source's archive holds: segment numbers per timeline, and the history files.
pub struct ArchiveMap {
    /// Every archived file with its stored size.
    pub files: BTreeMap<String, u64>,
    pub seg_size: u64,
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    pub histories: BTreeMap<u32, Vec<HistoryEntry>>,
    /// History files present but unreadable or malformed, with why.
    pub bad_histories: Vec<String>,
}

/// The timeline a recovery on `path` reads segment `n` from: the newest one on the path that
/// had begun by that segment.
fn timeline_at(path: &[Span], n: u64, seg_size: u64) -> u32 {
    path.iter()
        .skip(1)
        .rev()
        .find(|s| s.begin.segment(seg_size) <= n)
        .or(path.first())
        .map_or(0, |s| s.timeline)
}

impl ArchiveMap {
    /// Lists the archive, reads its history files and one segment's header (for the size).
    pub fn load(archive: &WalArchive) -> Result<Self> {
        let files = archive.list()?;
        let seg_size = archive
            .segment_size(files.keys())?
            .unwrap_or(DEFAULT_SEGMENT_SIZE);
        let mut map = Self {
            seg_size,
            segments: BTreeMap::new(),
            histories: BTreeMap::new(),
            bad_histories: Vec::new(),
            files,
        };
        for name in map.files.keys() {
            let Ok(tli) = u32::from_str_radix(&name[..8], 16) else {
                continue;
            };
            match wal_kind(name) {
                Some(WalKind::Segment) => {
                    if let Some(n) = super::segment_number(name, seg_size) {
                        map.segments.entry(tli).or_default().insert(n);
                    }
                }
                Some(WalKind::History) => {
                    let parsed = archive.fetch_file(name).and_then(|c| {
                        let c = c.ok_or_else(|| {
                            Error::new(ErrorKind::NotFound, "vanished while being read")
                        })?;
                        parse_history(&String::from_utf8_lossy(&c))
                    });
                    match parsed {
                        Ok(h) => {
                            map.histories.insert(tli, h);
                        }
                        Err(e) => map.bad_histories.push(format!("{name}: {e}")),
                    }
                }
                _ => {}
            }
        }
        Ok(map)
    }

    /// Where the base backup starting in `start_wal` ended (became consistent), from the
    /// backup history file PostgreSQL archived with it; None if the archive lacks that file.
    pub fn backup_stop(&self, archive: &WalArchive, start_wal: &str) -> Result<Option<Lsn>> {
        let Some(name) = self
            .files
            .keys()
            .find(|n| n.starts_with(start_wal) && wal_kind(n) == Some(WalKind::BackupLabel))
        else {
            return Ok(None);
        };
        let Some(text) = archive.fetch_file(name)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&text);
        let stop = text
            .lines()
            .find_map(|l| l.strip_prefix("STOP WAL LOCATION:"))
            .and_then(|v| v.split_whitespace().next())
            .ok_or_else(|| Error::corrupt(format!("{name} names no STOP WAL LOCATION")))?;
        Lsn::parse(stop).map(Some)
    }

    /// The timeline PostgreSQL recovers to with `recovery_target_timeline = 'latest'`: it
    /// probes for history files of `from + 1`, `from + 2`, ... and takes the last found.
    pub fn newest_timeline(&self, from: u32) -> u32 {
        let mut tli = from;
        while self.histories.contains_key(&(tli + 1)) {
            tli += 1;
        }
        tli
    }

    /// The timelines replay crosses from a base backup on `base_timeline` starting at
    /// `start` to `target` timeline.
    pub fn path(&self, base_timeline: u32, start: Lsn, target: u32) -> Result<Vec<Span>> {
        if target == base_timeline {
            return Ok(vec![Span {
                timeline: target,
                begin: start,
                end: None,
            }]);
        }
        let history = self.histories.get(&target).ok_or_else(|| {
            Error::corrupt(format!(
                "timeline {target}'s history file ({target:08X}.history) is not in the archive"
            ))
        })?;
        let from = history
            .iter()
            .position(|e| e.parent == base_timeline)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "timeline {target} does not descend from timeline {base_timeline}, the base backup's"
                ))
            })?;
        if history[from].switchpoint <= start {
            return Err(Error::invalid(format!(
                "timeline {target} forked off timeline {base_timeline} at {}, before the base backup started ({start}): PostgreSQL cannot recover this base backup to it",
                history[from].switchpoint
            )));
        }
        let mut path = Vec::new();
        let mut begin = start;
        for e in &history[from..] {
            path.push(Span {
                timeline: e.parent,
                begin,
                end: Some(e.switchpoint),
            });
            begin = e.switchpoint;
        }
        path.push(Span {
            timeline: target,
            begin,
            end: None,
        });
        Ok(path)
    }

    fn has(&self, tli: u32, n: u64) -> bool {
        self.segments.get(&tli).is_some_and(|s| s.contains(&n))
    }

    /// The segments a recovery from `start` (at least through `base_stop`, where the base
    /// backup becomes consistent) to `end` on `path` reads, and which are missing.
    pub fn chain(&self, path: Vec<Span>, base_stop: Option<Lsn>, end: ChainEnd) -> Chain {
        let size = self.seg_size;
        let first = path.first().map_or(0, |s| s.begin.segment(size));
        let mut last = first.max(base_stop.map_or(0, |l| l.segment(size)));
        match end {
            ChainEnd::Lsn(l) => last = last.max(l.segment(size)),
            ChainEnd::Newest => {
                // The newest segment each timeline contributes, and at least the first
                // segment of the last timeline: without it replay cannot switch to it.
                for (i, span) in path.iter().enumerate() {
                    if i > 0 && i + 1 == path.len() {
                        last = last.max(span.begin.segment(size));
                    }
                    let newest = self.segments.get(&span.timeline).and_then(|s| {
                        s.range(first..)
                            .rev()
                            .find(|&&n| timeline_at(&path, n, size) == span.timeline)
                    });
                    if let Some(&n) = newest {
                        last = last.max(n);
                    }
                }
            }
        }
        let mut missing: Vec<Missing> = Vec::new();
        let mut first_missing = None;
        let mut open: Option<(u32, u64, u64)> = None;
        let close = |run: (u32, u64, u64), out: &mut Vec<Missing>| {
            let tli = format!("{:08X}", run.0);
            out.push(Missing {
                timeline: run.0,
                first: segment_name(&tli, run.1, size),
                last: segment_name(&tli, run.2, size),
                count: run.2 - run.1 + 1,
            });
        };
        for n in first..=last {
            let tli = timeline_at(&path, n, size);
            if self.has(tli, n) {
                if let Some(run) = open.take() {
                    close(run, &mut missing);
                }
                continue;
            }
            first_missing.get_or_insert(n);
            open = match open {
                Some((t, a, b)) if t == tli && b + 1 == n => Some((t, a, n)),
                Some(run) => {
                    close(run, &mut missing);
                    Some((tli, n, n))
                }
                None => Some((tli, n, n)),
            };
        }
        if let Some(run) = open {
            close(run, &mut missing);
        }
        let name = |n: u64| segment_name(&format!("{:08X}", timeline_at(&path, n, size)), n, size);
        Chain {
            first_segment: name(first),
            last_segment: name(last),
            segments: last + 1 - first,
            missing,
            first_missing,
            last_number: last,
            seg_size: size,
            path,
        }
    }

    /// For a segment the archive lacks: the newest later segment of its timeline that comes
    /// before any fork off that timeline. Such a segment proves a gap that replay reading
    /// `name` would stop at; past a fork, PostgreSQL only asks as a fallback.
    pub fn archived_after(&self, name: &str) -> Option<String> {
        if wal_kind(name) != Some(WalKind::Segment) {
            return None;
        }
        let tli = u32::from_str_radix(&name[..8], 16).ok()?;
        let n = super::segment_number(name, self.seg_size)?;
        let limit = self
            .fork_of(tli)
            .map_or(u64::MAX, |f| f.segment(self.seg_size));
        if n >= limit {
            return None;
        }
        let later = self.segments.get(&tli)?.range(n + 1..limit).next_back()?;
        Some(segment_name(&name[..8], *later, self.seg_size))
    }

    /// The first point at which a later timeline forked off `tli`, if any did.
    pub fn fork_of(&self, tli: u32) -> Option<Lsn> {
        self.histories
            .values()
            .flatten()
            .filter(|e| e.parent == tli)
            .map(|e| e.switchpoint)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn map(segments: &[(u32, &[u64])], histories: &[(u32, &str)]) -> ArchiveMap {
        ArchiveMap {
            files: BTreeMap::new(),
            seg_size: SEG,
            segments: segments
                .iter()
                .map(|(t, s)| (*t, s.iter().copied().collect()))
                .collect(),
            histories: histories
                .iter()
                .map(|(t, h)| (*t, parse_history(h).expect("history")))
                .collect(),
            bad_histories: Vec::new(),
        }
    }

    fn lsn(s: &str) -> Lsn {
        Lsn::parse(s).expect("lsn")
    }

    #[test]
    fn lsns_parse_and_print() {
        assert_eq!(lsn("0/3000060"), Lsn(0x3000060));
        assert_eq!(lsn("1/A"), Lsn((1 << 32) + 10));
        assert_eq!(lsn("16/B374D848").to_string(), "16/B374D848");
        assert_eq!(lsn("0/3000060").segment(SEG), 3);
        for bad in ["", "3000060", "0/xyz", "1/2/3", "100000000/0"] {
            assert!(Lsn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn histories_parse() {
        let h = parse_history(
            "1\t0/5000198\tno recovery target specified\n\n2\t0/7000060\tbefore transaction 735\n",
        )
        .expect("parses");
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].parent, 2);
        assert_eq!(h[1].switchpoint, lsn("0/7000060"));
        assert_eq!(h[1].reason, "before transaction 735");
        assert!(parse_history("x\t0/1\n").is_err());
        assert!(parse_history("2\t0/7000060\tx\n1\t0/5000000\ty\n").is_err());
    }

    #[test]
    fn a_complete_chain_on_one_timeline() {
        let m = map(&[(1, &[2, 3, 4, 5])], &[]);
        let path = m
            .path(1, lsn("0/2000028"), m.newest_timeline(1))
            .expect("path");
        let c = m.chain(path, Some(lsn("0/2000100")), ChainEnd::Newest);
        assert!(c.complete(), "{c:?}");
        assert_eq!(c.first_segment, "000000010000000000000002");
        assert_eq!(c.last_segment, "000000010000000000000005");
        assert_eq!(c.reachable_segment(), 5);
        assert!(c.reached(lsn("0/5000100")));
        assert!(!c.reached(lsn("0/4FFFFFF")));
    }

    #[test]
    fn a_gap_is_named_and_replay_is_expected_to_stop_before_it() {
        let m = map(&[(1, &[2, 3, 6, 7])], &[]);
        let path = m.path(1, lsn("0/2000028"), 1).expect("path");
        let c = m.chain(path.clone(), None, ChainEnd::Newest);
        assert_eq!(
            c.missing,
            vec![Missing {
                timeline: 1,
                first: "000000010000000000000004".into(),
                last: "000000010000000000000005".into(),
                count: 2
            }]
        );
        assert_eq!(c.reachable_segment(), 3);
        // A target before the gap needs nothing past it.
        assert!(m
            .chain(path.clone(), None, ChainEnd::Lsn(lsn("0/3FFFFFF")))
            .complete());
        assert!(!m
            .chain(path, None, ChainEnd::Lsn(lsn("0/4000000")))
            .complete());
    }

    #[test]
    fn the_newest_timeline_is_followed_and_old_timelines_past_the_fork_are_ignored() {
        // Timeline 1 went on to segment 9 (the old primary kept archiving); timeline 2 forked
        // at 0/5000A0 and has segments 5 and 6.
        let m = map(
            &[(1, &[2, 3, 4, 5, 6, 7, 8, 9]), (2, &[5, 6])],
            &[(2, "1\t0/50000A0\tno recovery target specified\n")],
        );
        assert_eq!(m.newest_timeline(1), 2);
        let path = m.path(1, lsn("0/2000028"), 2).expect("path");
        assert_eq!(path.len(), 2);
        let c = m.chain(path, None, ChainEnd::Newest);
        assert!(c.complete(), "{c:?}");
        assert_eq!(c.last_segment, "000000020000000000000006");
        assert_eq!(m.fork_of(1), Some(lsn("0/50000A0")));
        // Past the fork, timeline 1's later segments prove no gap on this path.
        assert_eq!(m.archived_after("00000001000000000000000A"), None);
        assert_eq!(m.archived_after("000000020000000000000007"), None);
        let gappy = map(&[(1, &[2, 3, 5])], &[]);
        assert_eq!(
            gappy.archived_after("000000010000000000000004").as_deref(),
            Some("000000010000000000000005")
        );
        assert_eq!(gappy.archived_after("000000010000000000000006"), None);

        // Without timeline 2's first segment, replay cannot switch to it.
        let m = map(
            &[(1, &[2, 3, 4, 5, 6, 7])],
            &[(2, "1\t0/50000A0\tno recovery target specified\n")],
        );
        let c = m.chain(
            m.path(1, lsn("0/2000028"), 2).expect("path"),
            None,
            ChainEnd::Newest,
        );
        assert_eq!(c.missing.len(), 1, "{c:?}");
        assert_eq!(c.missing[0].first, "000000020000000000000005");
    }

    #[test]
    fn a_timeline_that_forked_before_the_base_backup_is_refused() {
        let m = map(&[(1, &[2, 3]), (2, &[3])], &[(2, "1\t0/3000000\tx\n")]);
        assert!(m.path(1, lsn("0/3000028"), 2).is_err());
        assert!(m.path(1, lsn("0/2000028"), 2).is_ok());
        assert!(m.path(3, lsn("0/2000028"), 2).is_err());
    }
}
