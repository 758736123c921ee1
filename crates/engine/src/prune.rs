//! Prune: delete packs no snapshot needs and repack packs that are mostly unused.
//!
//! Under an exclusive lock: find every chunk any snapshot references (if a snapshot cannot be
//! read, stop: we never delete what we cannot prove unused), copy the used blobs of sparse packs
//! into new packs, write one new index for everything kept, delete the old index files, and
//! only then delete packs. A crash at any step leaves a valid repository. Archived PostgreSQL
//! What no kept snapshot's recovery reads goes from the log archives too (PostgreSQL's WAL).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::connectors::interface::{log_archives, LogExpiry};
use crate::error::{Error, Result, ResultExt};
use crate::id::{ChunkId, PackId};
use crate::index::Index;
use crate::items::ItemReader;
use crate::lock::LockGuard;
use crate::pack::PackEntry;
use crate::pack_sink::PackSink;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot;
use crate::store::ObjectKind;

#[derive(Clone)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// Repack a pack when more than this share of its bytes is unused (0.0 - 1.0).
    pub max_unused: f64,
    /// How long to wait for other operations' locks to go away.
    pub lock_wait: std::time::Duration,
    pub progress: Reporter,
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub packs_before: usize,
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_written: usize,
    /// Packs no index mentions (left by interrupted backups).
    pub orphan_packs: usize,
    pub bytes_before: u64,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
    pub blobs_removed: usize,
    /// Partial files of failed writes (e.g. disk full) removed from a local repository.
    pub temp_bytes_removed: u64,
    /// Archived PostgreSQL WAL older than every kept base backup of its source.
    /// What each log archive's retention removed, by archive (`wal`).
    #[serde(flatten)]
    pub logs: BTreeMap<&'static str, Vec<LogExpiry>>,
}

/// Every chunk referenced by the snapshots (item-stream chunks and file chunks).
fn used_chunks(
    repo: &Repository,
    index: &Arc<Index>,
    snapshots: &snapshot::Listing,
) -> Result<HashSet<ChunkId>> {
    let mut used = HashSet::new();
    for (id, snap) in snapshots {
        used.extend(snap.tree.iter().copied());
        for item in ItemReader::new(repo.clone(), index.clone(), snap.tree.clone()) {
            let item = item.with_context(|| {
                format!(
                    "snapshot {} is unreadable; refusing to delete anything",
                    id.short()
                )
            })?;
            used.extend(item.chunks);
        }
    }
    Ok(used)
}

pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let _lock = LockGuard::acquire(repo, true, "prune", opts.lock_wait)?;
    let temp_bytes = if opts.dry_run {
        0
    } else {
        repo.store().remove_temp_files()?
    };
    opts.progress.send(Progress::Phase("reading index".into()));
    let index_files: Vec<String> = repo
        .store()
        .list(ObjectKind::Index)?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let mut index = Index::default();
    // Every entry of every pack, duplicates included, so duplicate copies count as unused.
    let mut entries: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for name in &index_files {
        for (pack, list) in repo.load_index_file(name)? {
            index.add_pack(pack, &list);
            entries.entry(pack).or_default().extend(list);
        }
    }
    let index = Arc::new(index);
    let sizes = repo.pack_sizes()?;
    opts.progress
        .send(Progress::Phase("finding used data".into()));
    // Listed once under the lock: chunks and WAL are kept for exactly these snapshots.
    let snapshots = snapshot::list(repo)?;
    let used = used_chunks(repo, &index, &snapshots)?;
    for c in &used {
        if !index.contains(c) {
            return Err(Error::corrupt(format!(
                "chunk {c} is referenced but not indexed; run `bulwark check` before pruning"
            )));
        }
    }

    let mut report = PruneReport {
        dry_run: opts.dry_run,
        packs_before: sizes.len(),
        temp_bytes_removed: temp_bytes,
        ..Default::default()
    };
    report.bytes_before = sizes.values().sum();
    let mut delete: Vec<PackId> = Vec::new();
    let mut repack: Vec<PackId> = Vec::new();
    let mut keep: Vec<PackId> = Vec::new();
    // A chunk counts as used in exactly one pack: the one the index resolves it to.
    let is_live = |pack: &PackId, e: &PackEntry| {
        used.contains(&e.id) && index.get(&e.id).is_some_and(|l| l.pack == *pack)
    };
    for pack in sizes.keys() {
        let Some(list) = entries.get(pack) else {
            report.orphan_packs += 1;
            delete.push(*pack);
            continue;
        };
        let (live, unused) = list
            .iter()
            .fold((0u64, 0u64), |(l, u), e| match is_live(pack, e) {
                true => (l + e.length as u64, u),
                false => (l, u + e.length as u64),
            });
        // Only blobs count: a pack's header is overhead every pack has, not waste, so a pack
        // with nothing unused is never rewritten (not even with --max-unused 0%).
        if live == 0 {
            delete.push(*pack);
        } else if unused > 0 && unused as f64 / (live + unused) as f64 > opts.max_unused {
            repack.push(*pack);
        } else {
            keep.push(*pack);
        }
    }
    let missing: Vec<&PackId> = entries.keys().filter(|p| !sizes.contains_key(p)).collect();
    if let Some(p) = missing.first() {
        return Err(Error::corrupt(format!(
            "pack {p} is indexed but missing; run `bulwark check`"
        )));
    }
    report.packs_deleted = delete.len();
    report.packs_repacked = repack.len();
    let removed_by_repack: u64 = repack.iter().map(|p| sizes[p]).sum();
    report.bytes_freed = delete.iter().map(|p| sizes[p]).sum::<u64>() + removed_by_repack;
    report.blobs_kept = used.len();
    report.blobs_removed = entries
        .values()
        .map(Vec::len)
        .sum::<usize>()
        .saturating_sub(used.len());
    opts.progress.send(Progress::Phase("expiring WAL".into()));
    for archive in log_archives() {
        let expired = archive.expire(repo, &snapshots, opts.dry_run)?;
        report.logs.insert(archive.name(), expired);
    }
    if opts.dry_run || (delete.is_empty() && repack.is_empty()) {
        return Ok(report);
    }

    opts.progress.send(Progress::Phase("repacking".into()));
    let mut sink = PackSink::new(repo);
    for pack in &repack {
        let bytes = repo.store().read(ObjectKind::Pack, &pack.to_hex())?;
        for e in entries[pack].iter().filter(|e| is_live(pack, e)) {
            let sealed = bytes
                .get(e.offset as usize..(e.offset + e.length) as usize)
                .ok_or_else(|| {
                    Error::corrupt(format!("pack {pack} is shorter than its index says"))
                })?;
            // Verify before carrying a blob over, so prune never spreads damage.
            repo.decode_blob(&e.id, sealed, e.raw_length)
                .with_context(|| format!("repacking pack {pack}"))?;
            sink.add(e.kind, e.id, sealed, e.raw_length)?;
        }
    }
    let written = sink.finish()?;
    report.bytes_freed = report.bytes_freed.saturating_sub(
        written
            .iter()
            .map(|(_, e)| e.iter().map(|x| x.length as u64).sum::<u64>())
            .sum(),
    );
    report.packs_written = written.len();

    opts.progress.send(Progress::Phase("writing index".into()));
    let mut new_index: Vec<(PackId, Vec<PackEntry>)> = keep
        .iter()
        .map(|p| {
            (
                *p,
                entries[p]
                    .iter()
                    .filter(|e| is_live(p, e))
                    .copied()
                    .collect(),
            )
        })
        .collect();
    new_index.extend(written);
    repo.save_index(&new_index)?;
    for name in &index_files {
        repo.store().delete(ObjectKind::Index, name)?;
    }
    opts.progress.send(Progress::Phase("deleting packs".into()));
    for pack in delete.iter().chain(repack.iter()) {
        repo.store().delete(ObjectKind::Pack, &pack.to_hex())?;
    }
    Ok(report)
}
