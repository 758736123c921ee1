//! Ways back from damage. `repair_index` rebuilds the index from the packs' own headers (an
//! index file is only a cache of them). `repair_snapshots` writes, for each snapshot whose data
//! is lost or damaged, a new snapshot without the lost items, so the rest stays restorable;
//! the original stays until the user forgets it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::check::{self, CheckOptions, ReadData};
use crate::codec::Encoder;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{ChunkId, PackId, SnapshotId};
use crate::index::Index;
use crate::items::{Item, ItemKind, ItemReader, ItemWriter};
use crate::lock::{LockGuard, LockKind};
use crate::pack::{self, BlobKind, PackEntry};
use crate::pack_sink::PackSink;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot::{self, Problem, Snapshot};
use crate::store::ObjectKind;

/// Packs described by one rebuilt index file.
const PACKS_PER_INDEX_FILE: usize = 4096;
/// Parallel header reads.
const READERS: usize = 8;
/// The tag a repaired snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

#[derive(Clone, Default)]
pub struct RepairOptions {
    pub dry_run: bool,
    pub lock_wait: Duration,
    pub progress: Reporter,
}

#[derive(Debug, Default, Serialize)]
pub struct IndexRepair {
    pub dry_run: bool,
    pub packs: usize,
    pub blobs: usize,
    /// Packs whose header cannot be read; their blobs come from the old index if it had them.
    pub unreadable_headers: Vec<String>,
    /// Of those, the packs no intact old index file described either: their data is lost.
    pub lost_packs: Vec<String>,
    /// Packs the old index listed that storage does not have.
    pub missing_packs: usize,
    pub index_files_before: usize,
    pub index_files_damaged: usize,
    pub index_files_written: usize,
}

/// Reads a pack's header with two ranged reads (length field, then header).
fn read_header(repo: &Repository, pack: &PackId, size: u64) -> Result<Vec<PackEntry>> {
    let name = pack.to_hex();
    let tail = repo
        .store()
        .read_range(ObjectKind::Pack, &name, size.saturating_sub(4)..size)?;
    let hlen = pack::header_length(&tail)? as u64;
    let start = size
        .checked_sub(4 + hlen)
        .ok_or_else(|| Error::corrupt("pack header length exceeds pack size"))?;
    let sealed = repo
        .store()
        .read_range(ObjectKind::Pack, &name, start..size - 4)?;
    pack::parse_header(repo.key(), &sealed, size)
}

/// Rebuilds the index from every pack's header, under the exclusive lock: new index files
/// first, then the old ones go, so an interruption leaves both (harmless duplicates).
pub fn repair_index(repo: &Repository, opts: &RepairOptions) -> Result<IndexRepair> {
    let _lock = LockGuard::acquire(repo, LockKind::Exclusive, "repair index", opts.lock_wait)?;
    let mut report = IndexRepair {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    opts.progress.send(Progress::Phase("reading index".into()));
    let old_files: Vec<String> = repo
        .store()
        .list(ObjectKind::Index)?
        .into_iter()
        .map(|l| l.name)
        .collect();
    report.index_files_before = old_files.len();
    let mut old: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for name in &old_files {
        match repo.load_index_file(name) {
            Ok(packs) => old.extend(packs),
            Err(_) => report.index_files_damaged += 1,
        }
    }
    let sizes: Vec<(PackId, u64)> = repo.pack_sizes()?.into_iter().collect();
    report.packs = sizes.len();
    let present: HashSet<&PackId> = sizes.iter().map(|(p, _)| p).collect();
    report.missing_packs = old.keys().filter(|p| !present.contains(p)).count();

    opts.progress
        .send(Progress::Phase("reading pack headers".into()));
    opts.progress.send(Progress::Total {
        items: sizes.len() as u64,
        bytes: 0,
    });
    let next = AtomicUsize::new(0);
    let found: Mutex<Vec<(PackId, Result<Vec<PackEntry>>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..READERS.min(sizes.len()) {
            s.spawn(|| loop {
                let Some((pack, size)) = sizes.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let header = read_header(repo, pack, *size);
                opts.progress.send(Progress::Item(pack.to_hex()));
                found
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((*pack, header));
            });
        }
    });
    let mut packs: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    for (pack, header) in found.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match header {
            Ok(entries) => packs.push((pack, entries)),
            // A pack that could not be read (storage trouble) is not a damaged one: stop
            // before writing anything rather than leave it out of the index.
            Err(e) if e.kind() != ErrorKind::Corrupt => {
                return Err(e.context(format!("reading the header of pack {pack}")))
            }
            Err(e) => {
                report.unreadable_headers.push(format!("pack {pack}: {e}"));
                match old.remove(&pack) {
                    Some(entries) => packs.push((pack, entries)),
                    None => report.lost_packs.push(pack.to_hex()),
                }
            }
        }
    }
    packs.sort_by_key(|(p, _)| *p);
    report.blobs = packs.iter().map(|(_, e)| e.len()).sum();
    if opts.dry_run {
        return Ok(report);
    }
    opts.progress.send(Progress::Phase("writing index".into()));
    let mut written = HashSet::new();
    for batch in packs.chunks(PACKS_PER_INDEX_FILE) {
        written.insert(repo.save_index(batch)?.to_hex());
    }
    report.index_files_written = written.len();
    // Sealing is randomised, so a new file never has an old one's name; never delete one
    // that was just written all the same.
    for name in old_files.iter().filter(|n| !written.contains(*n)) {
        repo.store().delete(ObjectKind::Index, name)?;
    }
    Ok(report)
}

#[derive(Clone, Default)]
pub struct SnapshotRepairOptions {
    pub dry_run: bool,
    /// Read and authenticate every pack first, so damaged (not only missing) data counts.
    pub read_data: bool,
    /// Forget each original once its repaired snapshot is saved.
    pub forget: bool,
    pub lock_wait: Duration,
    pub progress: Reporter,
}

#[derive(Debug, Serialize)]
pub struct RepairedSnapshot {
    pub original: SnapshotId,
    pub source: String,
    pub time: jiff::Timestamp,
    /// Items whose data is lost, and the point past which the item list is unreadable.
    pub lost: Vec<Problem>,
    pub repaired_as: Option<SnapshotId>,
    pub original_forgotten: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepair {
    pub dry_run: bool,
    pub snapshots: usize,
    pub repaired: Vec<RepairedSnapshot>,
    /// Index files that could not be read: run `repair index` first, or their data reads as
    /// lost.
    pub index_files_damaged: usize,
}

/// What of one snapshot survives: the items whose chunks are all present and intact, in order,
/// up to the point where the item list itself becomes unreadable.
struct Survey {
    lost: Vec<Problem>,
    /// Items readable from the list before its damage (all of them if none).
    readable_items: usize,
}

fn survey(
    repo: &Repository,
    index: &Arc<Index>,
    bad: &HashSet<ChunkId>,
    snap: &Snapshot,
) -> Survey {
    let usable = |c: &ChunkId| index.contains(c) && !bad.contains(c);
    let mut out = Survey {
        lost: Vec::new(),
        readable_items: 0,
    };
    let mut last = String::new();
    for item in ItemReader::new(repo.clone(), index.clone(), snap.tree.clone()) {
        match item {
            Ok(item) => {
                out.readable_items += 1;
                let gone = item.chunks.iter().filter(|c| !usable(c)).count();
                if gone > 0 {
                    out.lost.push(Problem {
                        path: item.path.clone(),
                        message: format!("{gone} chunk(s) of its data lost to damage"),
                    });
                }
                last = item.path;
            }
            Err(e) => {
                out.lost.push(Problem {
                    path: "<item list>".into(),
                    message: format!(
                        "unreadable after '{last}' ({e}); the items it lists past that point are lost"
                    ),
                });
                break;
            }
        }
    }
    out
}

/// Writes `snap` again without the lost items: a new item list (its chunks stored as tree
/// blobs where the repository lacks them) and a manifest with the same source, host and time,
/// tagged `repaired`, whose summary names what was lost. Returns its id.
fn rewrite(
    repo: &Repository,
    index: &Arc<Index>,
    bad: &HashSet<ChunkId>,
    id: &SnapshotId,
    snap: &Snapshot,
    survey: &Survey,
) -> Result<SnapshotId> {
    let lost: BTreeSet<&str> = survey.lost.iter().map(|p| p.path.as_str()).collect();
    let mut writer = ItemWriter::new(repo.tree_chunker());
    let mut sink = PackSink::new(repo);
    let mut encoder = Encoder::new(repo.codec())?;
    let mut tree = Vec::new();
    let mut stored = HashSet::new();
    let mut emit = |chunk: Vec<u8>| -> Result<()> {
        let cid = repo.key().chunk_id(&chunk);
        let present = index.contains(&cid) && !bad.contains(&cid);
        if !present && stored.insert(cid) {
            let mut sealed = Vec::new();
            encoder.encode_into(repo.key(), &chunk, &mut sealed);
            sink.add(BlobKind::Tree, cid, &sealed, chunk.len() as u32)?;
        }
        tree.push(cid);
        Ok(())
    };
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    let items = ItemReader::new(repo.clone(), index.clone(), snap.tree.clone());
    for item in items.take(survey.readable_items) {
        let item: Item = item?;
        if lost.contains(item.path.as_str()) {
            continue;
        }
        match item.kind {
            ItemKind::File => {
                files += 1;
                bytes += item.size;
            }
            ItemKind::Dir => dirs += 1,
            ItemKind::Symlink => {}
        }
        writer.push(&item, &mut emit)?;
    }
    writer.finish(&mut emit)?;
    let written = sink.finish()?;
    if !written.is_empty() {
        repo.save_index(&written)?;
    }
    let mut repaired = snap.clone();
    repaired.tree = tree;
    if !repaired.tags.iter().any(|t| t == REPAIRED_TAG) {
        repaired.tags.push(REPAIRED_TAG.into());
    }
    let summary = &mut repaired.summary;
    summary.files = files;
    summary.dirs = dirs;
    summary.bytes = bytes;
    summary.partial = true;
    summary.errors.extend(survey.lost.iter().cloned());
    summary.warnings.push(Problem {
        path: String::new(),
        message: format!(
            "repaired from snapshot {}: {} item(s) lost to damage were left out",
            id.short(),
            survey.lost.len()
        ),
    });
    snapshot::save(repo, &repaired)
}

/// Finds every snapshot with lost or damaged data and, unless `dry_run`, writes a repaired
/// copy of it (and forgets the original with `forget`).
pub fn repair_snapshots(repo: &Repository, opts: &SnapshotRepairOptions) -> Result<SnapshotRepair> {
    // Adding snapshots needs only a shared lock (like a backup); forgetting needs it all.
    // Removing damaged snapshots is a forget: backups may go on meanwhile.
    let _lock = LockGuard::acquire(repo, LockKind::Shared, "repair snapshots", opts.lock_wait)?;
    let mut report = SnapshotRepair {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let bad: HashSet<ChunkId> = if opts.read_data {
        opts.progress
            .send(Progress::Phase("reading every pack".into()));
        let checked = check::check(
            repo,
            &CheckOptions {
                read_data: ReadData::All,
                progress: opts.progress.clone(),
            },
        )?;
        checked.damaged_chunks.into_iter().collect()
    } else {
        HashSet::new()
    };
    opts.progress.send(Progress::Phase("loading index".into()));
    let index = Arc::new(repo.load_index()?);
    report.index_files_damaged = index.damaged_files.len();
    // Data a damaged index file hides is not lost: rewriting snapshots without it would
    // throw intact files away.
    if !index.damaged_files.is_empty() && !opts.dry_run {
        return Err(Error::corrupt(format!(
            "{} index file(s) are damaged, so data they list would look lost; run `bulwark repair index` first",
            index.damaged_files.len()
        )));
    }
    let (snapshots, _) = snapshot::list_readable(repo)?;
    report.snapshots = snapshots.len();
    for (id, snap) in &snapshots {
        opts.progress.send(Progress::Phase(format!(
            "surveying snapshot {}",
            id.short()
        )));
        let survey = survey(repo, &index, &bad, snap);
        if survey.lost.is_empty() {
            continue;
        }
        let mut entry = RepairedSnapshot {
            original: *id,
            source: snap.source.name.clone(),
            time: snap.time,
            lost: survey.lost.clone(),
            repaired_as: None,
            original_forgotten: false,
        };
        if !opts.dry_run {
            entry.repaired_as = Some(rewrite(repo, &index, &bad, id, snap, &survey)?);
            if opts.forget {
                repo.store().delete(ObjectKind::Snapshot, &id.to_hex())?;
                entry.original_forgotten = true;
            }
        }
        report.repaired.push(entry);
    }
    Ok(report)
}
