//! WAL retention and copying: what the kept base backups need, from each one's start onwards.

use std::collections::BTreeMap;

use super::{position, WalArchive};
use crate::connectors::interface::{LogCopy, LogExpiry};
use crate::connectors::postgres::PgFacts;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

/// For each WAL source, the start segment of its oldest base backup in `snapshots`. Recovering
/// any of these base backups, to any point after it, reads only WAL at or after its start.
pub fn oldest_needed(snapshots: &[(SnapshotId, Snapshot)]) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (id, snap) in snapshots {
        if !snap.facts.contains_key(PgFacts::KEY) {
            continue;
        }
        // A manifest we cannot read could be the one needing the oldest WAL: stop.
        let facts = PgFacts::of(snap).with_context(|| format!("snapshot {}", id.short()))?;
        let Some(base) = facts.physical else { continue };
        let Some(start) = position(&base.start_wal) else {
            return Err(Error::corrupt(format!(
                "snapshot {} records '{}' as its first WAL segment",
                id.short(),
                base.start_wal
            )));
        };
        let oldest = out
            .entry(base.wal_source)
            .or_insert_with(|| start.to_string());
        if start < oldest.as_str() {
            *oldest = start.to_string();
        }
    }
    Ok(out)
}

/// WAL retention: for every source with a base backup among `kept`, deletes the archived WAL
/// older than the oldest such base backup. A source with no kept base backup keeps all of its
/// WAL: without a base nothing proves which WAL is unneeded. Oldest first, so an interruption
/// leaves a contiguous archive.
pub fn expire(
    repo: &Repository,
    kept: &[(SnapshotId, Snapshot)],
    dry_run: bool,
) -> Result<Vec<LogExpiry>> {
    let mut out = Vec::new();
    for (source, kept_from) in oldest_needed(kept)? {
        let archive = WalArchive::new(repo, &source)?;
        let old: Vec<(String, u64)> = archive
            .list()?
            .into_iter()
            .filter(|(name, _)| position(name).is_some_and(|p| p < kept_from.as_str()))
            .collect();
        if !dry_run {
            for (name, _) in &old {
                archive.delete(name)?;
            }
        }
        out.push(LogExpiry {
            source,
            kept_from,
            files_deleted: old.len(),
            bytes_freed: old.iter().map(|(_, size)| size).sum(),
        });
    }
    Ok(out)
}

/// Copies the WAL the base backups in `snapshots` need (from each one's start onwards, plus
/// every timeline history) into `dst`, sealed with its key. Files `dst` already has are
/// skipped, so a copy interrupted or repeated completes the archive.
pub fn copy_needed(
    src: &Repository,
    dst: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
) -> Result<LogCopy> {
    let mut copied = LogCopy::default();
    for (source, from) in oldest_needed(snapshots)? {
        let (from_archive, to_archive) = (
            WalArchive::new(src, &source)?,
            WalArchive::new(dst, &source)?,
        );
        let present = to_archive.list()?;
        for name in from_archive.list()?.into_keys() {
            if present.contains_key(&name) || position(&name).is_some_and(|p| p < from.as_str()) {
                continue;
            }
            let content = from_archive.fetch_file(&name)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("WAL file {name} vanished from the source archive"),
                )
            })?;
            to_archive.push_file(&name, &content)?;
            copied.files_copied += 1;
            copied.bytes_copied += content.len() as u64;
        }
    }
    Ok(copied)
}
