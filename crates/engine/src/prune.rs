//! Prune: delete packs no snapshot needs and repack packs that are mostly unused, without
//! stopping backups.
//!
//! Deletion is two-phase (see `marks`). A run takes the maintenance lock (backups go on), and
//! then reads, in this order: the marks and the locks (which marks are due), the snapshots,
//! the index files, the packs. That order is what makes it safe beside writers: a writer's
//! snapshot is written after its index, and its lock removed after its snapshot. Packs nothing
//! needs are marked, not deleted: they leave the index (compacted as it is rewritten), and a
//! later run deletes them when their mark is due and still nothing uses them, or puts them back
//! into the index if a snapshot has come to use them. If a snapshot cannot be read, prune stops:
//! it never deletes what it cannot prove unused.
//!
//! `exclusive` is the one-phase form: under the exclusive lock (no writer can run) it deletes at
//! once, and every earlier mark is due. Either way a crash at any step leaves a valid repository:
//! a new home (mark or index file) is written before the old one is removed, and packs last.
//! What no kept snapshot's recovery reads goes from the log archives too (PostgreSQL's WAL).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::connectors::interface::{log_archives, LogExpiry};
use crate::error::{Error, Result, ResultExt};
use crate::id::{ChunkId, PackId};
use crate::index::{Index, IndexBuilder, IndexPacks};
use crate::items::ItemReader;
use crate::lock::{self, LockGuard, LockKind};
use crate::maintenance;
use crate::marks::{self, Mark, MarkMeta};
use crate::pack::PackEntry;
use crate::pack_sink::PackSink;
use crate::progress::{Progress, Reporter};
use crate::repo::{hostname, Repository};
use crate::snapshot;
use crate::store::ObjectKind;

/// Index files smaller than this are merged into one when there are several.
const COMPACT_BELOW: u64 = 2 << 20;
/// At most this many entries go into one written index file (about 9 MiB), so that a pack
/// pruned later makes only its own file be rewritten.
const ENTRIES_PER_INDEX_FILE: usize = 200_000;

#[derive(Clone)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// Repack a pack when more than this share of its bytes is unused (0.0 - 1.0).
    pub max_unused: f64,
    /// How long to wait for other operations' locks to go away.
    pub lock_wait: Duration,
    /// Delete at once under the exclusive lock (backups wait) instead of marking.
    pub exclusive: bool,
    /// This run's grace period instead of the repository's.
    pub grace: Option<Duration>,
    pub progress: Reporter,
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub exclusive: bool,
    /// The grace period this run used, in seconds.
    pub grace_secs: u64,
    pub packs_before: usize,
    /// Packs deleted by this run: marked by an earlier run and due, or, with `exclusive`, any
    /// pack nothing needs.
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_written: usize,
    /// Packs no index mentions (left by interrupted backups, or still being written).
    pub orphan_packs: usize,
    /// Packs this run marked for deletion by a later run.
    pub packs_marked: usize,
    pub bytes_marked: u64,
    /// Marked packs a snapshot has come to use: put back into the index.
    pub packs_unmarked: usize,
    /// Packs marked earlier that are not due yet (their mark is younger than the grace
    /// period, or a writer that may use them still runs).
    pub packs_pending: usize,
    pub bytes_pending: u64,
    pub index_files_before: usize,
    pub index_files_written: usize,
    pub bytes_before: u64,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
    pub blobs_removed: usize,
    /// Partial files of failed writes (e.g. disk full) removed from a local repository.
    pub temp_bytes_removed: u64,
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

/// The index files as read: each one's name, size and packs.
struct IndexFile {
    name: String,
    size: u64,
    packs: Vec<PackId>,
}

/// A pack only marks list, as all its marks together judge it.
struct Marked<'a> {
    due: bool,
    entries: &'a Vec<PackEntry>,
}

/// What the run decided for the packs in storage. Indexed packs with live blobs and little
/// waste stay as they are, in no list.
#[derive(Default)]
struct Plan {
    /// Indexed packs whose live blobs move to new packs; then they go like `drop`.
    repack: Vec<PackId>,
    /// Packs nothing needs: indexed ones with no live blob, and orphans.
    drop: Vec<PackId>,
    /// Marked packs whose mark is due and that nothing uses: deleted by this run.
    delete: Vec<PackId>,
    /// Marked packs a snapshot uses: back into the index.
    unmark: Vec<PackId>,
}

pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let kind = match opts.exclusive {
        true => LockKind::Exclusive,
        false => LockKind::Maintenance,
    };
    let lock = LockGuard::acquire(repo, kind, "prune", opts.lock_wait)?;
    let settings = maintenance::authorise(repo, opts.dry_run)?;
    let grace = opts.grace.unwrap_or(settings.grace());
    let now = maintenance::store_now(repo, &lock)?;
    // Partial files in `.tmp/` may be other writers' uploads in flight, unless none can run.
    let temp_bytes = match opts.exclusive && !opts.dry_run {
        true => repo.store().remove_temp_files()?,
        false => 0,
    };
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        exclusive: opts.exclusive,
        grace_secs: grace.as_secs(),
        temp_bytes_removed: temp_bytes,
        ..Default::default()
    };

    opts.progress.send(Progress::Phase("reading marks".into()));
    let marks = marks::load_all(repo)?;
    let due = due_marks(repo, &marks, &lock, now, grace, opts.exclusive)?;
    opts.progress
        .send(Progress::Phase("reading snapshots".into()));
    // Listed once, before the index files: every chunk they use is indexed by then. Chunks
    // and WAL are kept for exactly these snapshots.
    let snapshots = snapshot::list(repo)?;
    opts.progress.send(Progress::Phase("reading index".into()));
    let mut files = Vec::new();
    let mut live: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    let mut index = IndexBuilder::default();
    for listed in repo.store().list(ObjectKind::Index)? {
        let packs = repo.load_index_file(&listed.name)?;
        for (pack, list) in &packs {
            index.add_pack(*pack, list);
            // Every entry of every pack, duplicates included, so duplicate copies count as
            // unused.
            live.entry(*pack).or_default().extend(list.iter().copied());
        }
        files.push(IndexFile {
            name: listed.name,
            size: listed.size,
            packs: packs.into_iter().map(|(p, _)| p).collect(),
        });
    }
    report.index_files_before = files.len();
    // A marked pack's chunks still resolve (a live copy wins), for snapshots that use them.
    // A pack may be in several marks (marked unindexed while its writer ran, then marked
    // again once indexed): it is due only when every one of them is, and its entries are
    // those of the marks that have them.
    let mut marked: HashMap<PackId, Marked> = HashMap::new();
    for (mark, due) in marks.iter().zip(&due) {
        for (pack, list) in &mark.packs {
            index.add_pack(*pack, list);
            let m = marked.entry(*pack).or_insert(Marked {
                due: true,
                entries: list,
            });
            m.due &= *due;
            if m.entries.is_empty() {
                m.entries = list;
            }
        }
    }
    let index = Arc::new(index.finish());
    let sizes = repo.pack_sizes()?;
    opts.progress
        .send(Progress::Phase("finding used data".into()));
    let used = used_chunks(repo, &index, &snapshots)?;
    if let Some(c) = used.iter().find(|c| !index.contains(c)) {
        return Err(Error::corrupt(format!(
            "chunk {c} is referenced but not indexed; run `bulwark check` before pruning"
        )));
    }
    if let Some(p) = live.keys().find(|p| !sizes.contains_key(p)) {
        return Err(Error::corrupt(format!(
            "pack {p} is indexed but missing; run `bulwark check`"
        )));
    }
    report.packs_before = sizes.len();
    report.bytes_before = sizes.values().sum();

    // A chunk counts as used in exactly one pack: the one the index resolves it to.
    let is_live = |pack: &PackId, e: &PackEntry| {
        used.contains(&e.id) && index.get(&e.id).is_some_and(|l| l.pack == *pack)
    };
    // Used and unused blob bytes of a pack with these entries. Only blobs count: a pack's
    // header is overhead every pack has, not waste, so a pack with nothing unused is never
    // rewritten (not even with --max-unused 0%).
    let usage = |pack: &PackId, entries: &[PackEntry]| {
        entries
            .iter()
            .fold((0u64, 0u64), |(l, u), e| match is_live(pack, e) {
                true => (l + e.length as u64, u),
                false => (l, u + e.length as u64),
            })
    };
    let wasteful = |(used, unused): (u64, u64)| {
        unused > 0 && unused as f64 / (used + unused) as f64 > opts.max_unused
    };
    let mut plan = Plan::default();
    // Marked packs a snapshot came to use but mostly waste: repacked like indexed ones.
    let mut relisted = Vec::new();
    for pack in sizes.keys() {
        if let Some(list) = live.get(pack) {
            let usage = usage(pack, list);
            if usage.0 == 0 {
                plan.drop.push(*pack);
            } else if wasteful(usage) {
                plan.repack.push(*pack);
            }
        } else if let Some(m) = marked.get(pack) {
            let usage = usage(pack, m.entries);
            if !m.due {
                report.packs_pending += 1;
                report.bytes_pending += sizes[pack];
            } else if usage.0 == 0 {
                plan.delete.push(*pack);
            } else if wasteful(usage) {
                // Its live blobs move to new packs now and it is marked again, rather than
                // going back into the index for the next run to repack and the one after to
                // delete.
                plan.repack.push(*pack);
                relisted.push((*pack, m.entries.clone()));
            } else {
                plan.unmark.push(*pack);
            }
        } else {
            report.orphan_packs += 1;
            plan.drop.push(*pack);
        }
    }
    report.packs_repacked = plan.repack.len();
    report.packs_unmarked = plan.unmark.len();
    report.blobs_kept = used.len();
    report.blobs_removed = live
        .values()
        .map(Vec::len)
        .sum::<usize>()
        .saturating_sub(used.len());
    live.extend(relisted);
    let gone: u64 = plan.drop.iter().chain(&plan.repack).map(|p| sizes[p]).sum();
    let deleted: u64 = plan.delete.iter().map(|p| sizes[p]).sum();
    if opts.exclusive {
        report.packs_deleted = plan.delete.len() + plan.drop.len();
        report.bytes_freed = deleted + gone;
    } else {
        report.packs_deleted = plan.delete.len();
        report.packs_marked = plan.drop.len() + plan.repack.len();
        report.bytes_marked = gone;
        report.bytes_freed = deleted;
    }

    opts.progress.send(Progress::Phase("expiring WAL".into()));
    for archive in log_archives() {
        let expired = archive.expire(repo, &snapshots, opts.dry_run)?;
        report.logs.insert(archive.name(), expired);
    }
    let rewrite = files_to_rewrite(&files, &plan);
    let unarmed: Vec<&Mark> = marks.iter().filter(|m| m.meta.locks.is_none()).collect();
    let nothing_to_do = plan.drop.is_empty()
        && plan.repack.is_empty()
        && plan.delete.is_empty()
        && plan.unmark.is_empty()
        && rewrite.is_empty()
        && unarmed.is_empty()
        && !due.iter().any(|d| *d);
    if opts.dry_run || nothing_to_do {
        return Ok(report);
    }

    opts.progress.send(Progress::Phase("repacking".into()));
    let written = repack(repo, &plan.repack, &live, is_live)?;
    report.packs_written = written.len();
    let repacked_bytes: u64 = written
        .iter()
        .map(|(_, e)| e.iter().map(|x| x.length as u64).sum::<u64>())
        .sum();
    if opts.exclusive {
        report.bytes_freed = report.bytes_freed.saturating_sub(repacked_bytes);
    } else {
        report.bytes_marked = report.bytes_marked.saturating_sub(repacked_bytes);
    }

    if !opts.exclusive {
        opts.progress.send(Progress::Phase("marking".into()));
        let mut packs: IndexPacks = plan
            .drop
            .iter()
            .chain(&plan.repack)
            .map(|p| (*p, live.get(p).cloned().unwrap_or_default()))
            .collect();
        // Marks a stopped run left without their locks are listed again, here.
        packs.extend(unarmed.iter().flat_map(|m| m.packs.iter().cloned()));
        if !packs.is_empty() {
            write_mark(repo, &lock, packs)?;
        }
        for m in &unarmed {
            repo.store().delete(ObjectKind::Mark, &m.name)?;
        }
    }

    opts.progress.send(Progress::Phase("writing index".into()));
    let dropped: HashSet<PackId> = plan.drop.iter().chain(&plan.repack).copied().collect();
    let mut seen = HashSet::new();
    let mut new_index: IndexPacks = rewrite
        .iter()
        .flat_map(|f| &f.packs)
        .filter(|p| !dropped.contains(p) && seen.insert(**p))
        .map(|p| (*p, live[p].clone()))
        .collect();
    new_index.extend(plan.unmark.iter().map(|p| (*p, marked[p].entries.clone())));
    new_index.extend(written);
    for part in split_index(new_index) {
        repo.save_index(&part)?;
        report.index_files_written += 1;
    }
    for f in &rewrite {
        repo.store().delete(ObjectKind::Index, &f.name)?;
    }
    // The due marks are resolved: their packs are back in the index or deleted below.
    for (m, _) in marks.iter().zip(&due).filter(|(_, d)| **d) {
        repo.store().delete(ObjectKind::Mark, &m.name)?;
    }
    opts.progress.send(Progress::Phase("deleting packs".into()));
    let now_deleted: Vec<&PackId> = match opts.exclusive {
        true => plan
            .delete
            .iter()
            .chain(&plan.drop)
            .chain(&plan.repack)
            .collect(),
        false => plan.delete.iter().collect(),
    };
    for pack in now_deleted {
        repo.store().delete(ObjectKind::Pack, &pack.to_hex())?;
    }
    Ok(report)
}

/// Which marks may be resolved now: all of them under the exclusive lock; otherwise those
/// older than the grace period by the store's clock whose listed locks are all gone.
fn due_marks(
    repo: &Repository,
    marks: &[Mark],
    own: &LockGuard,
    now: jiff::Timestamp,
    grace: Duration,
    exclusive: bool,
) -> Result<Vec<bool>> {
    if exclusive {
        return Ok(vec![true; marks.len()]);
    }
    let alive = alive_locks(repo, own)?;
    marks
        .iter()
        .map(|m| {
            let Some(locks) = &m.meta.locks else {
                return Ok(false);
            };
            if locks.iter().any(|l| alive.contains(l)) {
                return Ok(false);
            }
            let marked = repo
                .store()
                .modified(ObjectKind::Mark, &m.name)?
                .unwrap_or(m.meta.time);
            Ok(now.duration_since(marked).as_secs() >= grace.as_secs() as i64)
        })
        .collect()
}

/// The names of the lock files other than `own` that are not stale.
fn alive_locks(repo: &Repository, own: &LockGuard) -> Result<HashSet<String>> {
    let own = own.name();
    Ok(lock::list(repo)?
        .into_iter()
        .filter(|l| l.name != own && !l.is_stale())
        .map(|l| l.name)
        .collect())
}

/// Writes a mark for `packs` in two steps: first without locks (from then on no new writer
/// reuses the packs), then, once the locks present are listed, with them.
fn write_mark(repo: &Repository, own: &LockGuard, packs: IndexPacks) -> Result<()> {
    let mut meta = MarkMeta {
        time: jiff::Timestamp::now(),
        hostname: hostname(),
        locks: None,
    };
    let first = marks::save(repo, &meta, &packs)?;
    let mut locks: Vec<String> = alive_locks(repo, own)?.into_iter().collect();
    locks.sort();
    meta.locks = Some(locks);
    marks::save(repo, &meta, &packs)?;
    repo.store().delete(ObjectKind::Mark, &first)
}

/// Index files to rewrite: those that list a pack leaving the index, and the small ones when
/// there are several to merge.
fn files_to_rewrite<'a>(files: &'a [IndexFile], plan: &Plan) -> Vec<&'a IndexFile> {
    let leaving: HashSet<&PackId> = plan.drop.iter().chain(&plan.repack).collect();
    let small = files.iter().filter(|f| f.size < COMPACT_BELOW).count();
    files
        .iter()
        .filter(|f| {
            f.packs.iter().any(|p| leaving.contains(p)) || (small > 1 && f.size < COMPACT_BELOW)
        })
        .collect()
}

/// Splits packs into index files of at most `ENTRIES_PER_INDEX_FILE` entries.
fn split_index(packs: IndexPacks) -> Vec<IndexPacks> {
    let mut out = Vec::new();
    let (mut part, mut entries) = (Vec::new(), 0);
    for (pack, list) in packs {
        if entries > 0 && entries + list.len() > ENTRIES_PER_INDEX_FILE {
            out.push(std::mem::take(&mut part));
            entries = 0;
        }
        entries += list.len();
        part.push((pack, list));
    }
    if !part.is_empty() {
        out.push(part);
    }
    out
}

/// Copies the live blobs of `packs` into new packs, verifying each; returns the new packs.
fn repack(
    repo: &Repository,
    packs: &[PackId],
    entries: &HashMap<PackId, Vec<PackEntry>>,
    is_live: impl Fn(&PackId, &PackEntry) -> bool,
) -> Result<IndexPacks> {
    let mut sink = PackSink::new(repo);
    for pack in packs {
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
    sink.finish()
}
