//! `wal status`: archived ranges per timeline, gaps, and the age of the newest segment.

use serde::Serialize;

use super::{segment_name, wal_kind, ArchiveMap, WalArchive, WalKind};
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct TimelineStatus {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: usize,
    /// Missing ranges (first missing, last missing) between `first` and `last`.
    pub gaps: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveStatus {
    pub source: String,
    pub files: usize,
    pub stored_bytes: u64,
    pub segment_size: Option<u64>,
    pub timelines: Vec<TimelineStatus>,
    pub histories: Vec<String>,
    /// The newest segment and how long ago it was archived: the RPO if the server died now.
    pub newest: Option<String>,
    pub newest_archived: Option<jiff::Timestamp>,
    pub newest_age_secs: Option<f64>,
}

/// Seconds from `archived` to `now`, whole (not a component of the span).
pub fn wal_age_secs(now: jiff::Timestamp, archived: jiff::Timestamp) -> f64 {
    now.duration_since(archived).as_secs_f64()
}

/// Ranges per timeline, gaps, and the age of the newest segment.
pub fn status(archive: &WalArchive) -> Result<ArchiveStatus> {
    let map = ArchiveMap::load(archive)?;
    let size = map.seg_size;
    let timelines: Vec<TimelineStatus> = map
        .segments
        .iter()
        .map(|(&tli, numbers)| {
            let hex = format!("{tli:08X}");
            let name = |n: u64| segment_name(&hex, n, size);
            let numbers: Vec<u64> = numbers.iter().copied().collect();
            TimelineStatus {
                timeline: tli,
                first: numbers.first().map(|&n| name(n)).unwrap_or_default(),
                last: numbers.last().map(|&n| name(n)).unwrap_or_default(),
                segments: numbers.len(),
                gaps: numbers
                    .windows(2)
                    .filter(|p| p[1] > p[0] + 1)
                    .map(|p| (name(p[0] + 1), name(p[1] - 1)))
                    .collect(),
            }
        })
        .collect();
    let newest = timelines.last().map(|t| t.last.clone());
    let newest_archived = match &newest {
        Some(n) => archive.modified(n)?,
        None => None,
    };
    Ok(ArchiveStatus {
        source: archive.source().to_string(),
        files: map.files.len(),
        stored_bytes: map.files.values().sum(),
        segment_size: (!map.segments.is_empty()).then_some(size),
        timelines,
        histories: map
            .files
            .keys()
            .filter(|n| wal_kind(n) == Some(WalKind::History))
            .cloned()
            .collect(),
        newest,
        newest_age_secs: newest_archived.map(|t| wal_age_secs(jiff::Timestamp::now(), t)),
        newest_archived,
    })
}

#[cfg(test)]
mod tests {
    use super::wal_age_secs;

    #[test]
    fn ages_are_whole_spans() {
        let now: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().expect("now");
        for (ago, secs) in [
            ("2026-12-02T11:59:41.500Z", 18.5),
            ("2026-12-02T11:47:00Z", 780.0),
            ("2026-11-29T12:00:00Z", 3.0 * 86400.0),
        ] {
            let then: jiff::Timestamp = ago.parse().expect("then");
            assert!((wal_age_secs(now, then) - secs).abs() < 1e-6, "{ago}");
        }
    }
}
