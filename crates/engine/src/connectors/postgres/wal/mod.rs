//! The WAL archive: PostgreSQL's `archive_command` and `restore_command` land here.
//!
//! Each WAL file (segment, timeline history, backup label) is one object,
//! `wal/<source>/<timeline>/<file name>`, compressed and sealed like everything else. WAL does
//! not deduplicate, and one object per file makes a push a single durable write and a fetch a
//! single read. Inside the seal, a header names the file and carries its length and BLAKE3
//! hash, so a renamed or swapped object is caught on fetch.
//!
//! Opening the repository costs a key derivation (a deliberate fraction of a second), more than
//! pushing one 16 MiB segment. So a push also archives the other segments PostgreSQL has marked
//! ready, and records each in a spool directory; when PostgreSQL then asks for one of those, a
//! hash comparison with the spool is enough. A fetch likewise prefetches the next segments.

mod archive;
mod check;
mod retention;
mod spool;
mod status;
pub mod timeline;

pub use archive::{Pushed, WalArchive};
pub use check::check_archives;
pub use retention::{copy_needed, expire, oldest_needed};
pub use spool::{fetch, fetch_read_ahead, push, pushed_before, PushReport, Spool};
pub use status::{status, wal_age_secs, ArchiveStatus, TimelineStatus};
pub use timeline::{ArchiveMap, Chain, ChainEnd, Lsn};

/// The WAL archive as the log archive of PostgreSQL sources, for the core verbs.
pub struct WalLog;

impl LogArchive for WalLog {
    fn name(&self) -> &'static str {
        "wal"
    }

    fn expire(
        &self,
        repo: &Repository,
        kept: &[(SnapshotId, Snapshot)],
        dry_run: bool,
    ) -> Result<Vec<LogExpiry>> {
        expire(repo, kept, dry_run)
    }

    fn copy(
        &self,
        src: &Repository,
        dst: &Repository,
        snapshots: &[(SnapshotId, Snapshot)],
    ) -> Result<LogCopy> {
        copy_needed(src, dst, snapshots)
    }

    fn check(
        &self,
        repo: &Repository,
        snapshots: &[(SnapshotId, Snapshot)],
        read: ReadData,
        progress: &Reporter,
    ) -> Result<LogCheck> {
        check_archives(repo, snapshots, read, progress)
    }
}

use crate::check::ReadData;
use crate::connectors::interface::{LogArchive, LogCheck, LogCopy, LogExpiry};
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::progress::Reporter;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

/// What kind of WAL file a name is; anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    Segment,
    Partial,
    History,
    BackupLabel,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
}

/// Classifies a WAL file name: `000000010000000000000003`, `...03.partial`, `00000002.history`,
/// `...03.00000028.backup`.
pub fn wal_kind(name: &str) -> Option<WalKind> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [seg] if seg.len() == 24 && is_hex(seg) => Some(WalKind::Segment),
        [seg, "partial"] if seg.len() == 24 && is_hex(seg) => Some(WalKind::Partial),
        [tli, "history"] if tli.len() == 8 && is_hex(tli) => Some(WalKind::History),
        [seg, off, "backup"] if seg.len() == 24 && is_hex(seg) && off.len() == 8 && is_hex(off) => {
            Some(WalKind::BackupLabel)
        }
        _ => None,
    }
}

/// Source names become a path component of the archive.
pub fn check_namespace(source: &str) -> Result<()> {
    let ok = !source.is_empty()
        && !source.starts_with('.')
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "source name '{source}' cannot name a WAL archive: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn object_name(source: &str, file: &str) -> Result<String> {
    if wal_kind(file).is_none() {
        return Err(Error::invalid(format!("'{file}' is not a WAL file name")));
    }
    Ok(format!("{source}/{}/{file}", &file[..8]))
}

/// A segment's position in the WAL (log and segment number combined), for `seg_size` segments.
fn segment_number(name: &str, seg_size: u64) -> Option<u64> {
    if wal_kind(name) != Some(WalKind::Segment) || seg_size == 0 {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some(log * (0x1_0000_0000u64 / seg_size) + seg)
}

fn segment_name(timeline: &str, number: u64, seg_size: u64) -> String {
    let per_log = 0x1_0000_0000u64 / seg_size;
    format!("{timeline}{:08X}{:08X}", number / per_log, number % per_log)
}

/// The segment after `name`, for segments of `seg_size` bytes.
pub fn next_segment(name: &str, seg_size: u64) -> Option<String> {
    let n = segment_number(name, seg_size)?;
    Some(segment_name(&name[..8], n + 1, seg_size))
}

/// The segment size a WAL segment declares in its first page's long header.
fn segment_size(content: &[u8]) -> Option<u64> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    let info = u16::from_le_bytes(content.get(2..4)?.try_into().ok()?);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    Some(u32::from_le_bytes(content.get(32..36)?.try_into().ok()?) as u64)
}

/// Where a WAL file sits in the log (log and segment number, without the timeline), as a
/// string that sorts in log order. Timeline history files have no position: they are tiny and
/// every recovery across a timeline switch needs them, so they are always kept.
fn position(name: &str) -> Option<&str> {
    match wal_kind(name)? {
        WalKind::History => None,
        _ => Some(&name[8..24]),
    }
}

/// Parallel storage writes/reads for batches.
const PARALLEL: usize = 4;

/// Runs `f` over `items` on a few threads, keeping order.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, R)>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                let r = f(item);
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_else(|p| p.into_inner());
    r.sort_by_key(|(i, _)| *i);
    r.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names() {
        assert_eq!(wal_kind("000000010000000000000003"), Some(WalKind::Segment));
        assert_eq!(
            wal_kind("000000010000000000000003.partial"),
            Some(WalKind::Partial)
        );
        assert_eq!(wal_kind("00000002.history"), Some(WalKind::History));
        assert_eq!(
            wal_kind("000000010000000000000003.00000028.backup"),
            Some(WalKind::BackupLabel)
        );
        for bad in [
            "",
            "../etc/passwd",
            "00000001000000000000000g",
            "0000000100000000000003",
            "00000002.histories",
            "000000010000000000000003/x",
        ] {
            assert_eq!(wal_kind(bad), None, "{bad}");
        }
        assert_eq!(
            next_segment("0000000100000000000000FF", 16 << 20).as_deref(),
            Some("000000010000000100000000")
        );
        assert_eq!(
            next_segment("000000020000000A00000003", 16 << 20).as_deref(),
            Some("000000020000000A00000004")
        );
        assert_eq!(
            next_segment("000000010000000000000003", 1 << 30).as_deref(),
            Some("000000010000000100000000")
        );
    }
}
