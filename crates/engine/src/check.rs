//! Check: the repository's structure (every snapshot readable, every referenced chunk indexed,
//! every indexed pack present, every WAL segment a base backup's recovery reads archived) and,
//! with `read_data`, every pack and WAL object re-read and authenticated (packs marked for
//! deletion included, while they exist). Damage is reported by
//! snapshot and file, so the operator knows what is lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::backup::num_cpus;
use crate::connectors::interface::{log_archives, LogSourceCheck};
use crate::crypto::SEAL_OVERHEAD;
use crate::error::Result;
use crate::id::{ChunkId, PackId, SnapshotId};
use crate::index::{Index, IndexBuilder, IndexPacks};
use crate::items::ItemReader;
use crate::pack::{self, PackBuffers};
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot;
use crate::store::ObjectKind;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// A percentage of packs, chosen at random.
    Subset(f64),
}

#[derive(Clone)]
pub struct CheckOptions {
    pub read_data: ReadData,
    pub progress: Reporter,
}

#[derive(Debug, Serialize)]
pub struct Affected {
    pub snapshot: SnapshotId,
    pub source: String,
    pub time: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub packs: usize,
    pub blobs: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
    /// Problems that mean data is missing or damaged.
    pub errors: Vec<String>,
    /// Harmless findings (packs left by an interrupted backup; `prune` removes them).
    pub notes: Vec<String>,
    pub damaged_chunks: Vec<ChunkId>,
    pub affected: Vec<Affected>,
    /// The log archives (`wal`), per source.
    #[serde(flatten)]
    pub logs: BTreeMap<&'static str, Vec<LogSourceCheck>>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Index entries whose packs `check --read-data` reads together: packs enough to keep every
/// reader busy when each backup wrote a small index file, and whole ids few enough (about
/// 25 MB) to bound memory whatever the repository's size.
const CHECK_BATCH_ENTRIES: usize = 500_000;

pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    opts.progress.send(Progress::Phase("reading index".into()));
    let mut builder = IndexBuilder::default();
    let index_files = repo.store().list(ObjectKind::Index)?;
    for listed in &index_files {
        match repo.load_index_file(&listed.name) {
            Ok(packs) => {
                packs.iter().for_each(|(p, e)| builder.add_pack(*p, e));
            }
            Err(e) => report
                .errors
                .push(format!("index file {}: {e}", listed.name)),
        }
    }
    let mut index = builder.finish();
    opts.progress.send(Progress::Phase("listing packs".into()));
    let listed = repo.pack_sizes()?;
    // Packs prune has marked for deletion still serve the snapshots that use them, while they
    // exist; one already deleted is not missing (nothing needed it when it was marked).
    let mut marked = HashSet::new();
    for mark in crate::marks::load_all(repo)? {
        for (pack, entries) in mark.packs {
            if listed.contains_key(&pack) && !index.has_pack(&pack) {
                index.add_pack(pack, &entries);
                marked.insert(pack);
            }
        }
    }
    let index = Arc::new(index);
    report.blobs = index.blob_count();
    let mut needed_len: HashMap<PackId, u64> = HashMap::new();
    for loc in index.locations() {
        let end = loc.offset as u64 + loc.length as u64;
        let e = needed_len.entry(loc.pack).or_default();
        *e = (*e).max(end);
    }
    report.packs = needed_len.len();
    for (pack, end) in &needed_len {
        match listed.get(pack) {
            None => report.errors.push(format!(
                "pack {pack} is in the index but missing from storage"
            )),
            Some(size) if *size < end + 4 + SEAL_OVERHEAD as u64 => report.errors.push(format!(
                "pack {pack} is truncated ({size} bytes, needs more than {end})"
            )),
            Some(_) => {}
        }
    }
    let orphans = listed.keys().filter(|p| !index.has_pack(p)).count();
    if orphans > 0 {
        report.notes.push(format!(
            "{orphans} pack(s) are not in any index (left by an interrupted or running backup); `prune` removes them"
        ));
    }
    if !marked.is_empty() {
        report.notes.push(format!(
            "{} pack(s) are marked for deletion by prune (`bulwark maintenance` shows when)",
            marked.len()
        ));
    }

    let mut damaged: HashSet<ChunkId> = HashSet::new();
    if opts.read_data != ReadData::None {
        // Marked packs are on their way out; if a snapshot uses one, the next prune puts it
        // back into the index and the next check reads it.
        let mut packs: Vec<PackId> = needed_len
            .keys()
            .filter(|p| listed.contains_key(p) && !marked.contains(*p))
            .copied()
            .collect();
        if let ReadData::Subset(pct) = opts.read_data {
            use rand::seq::SliceRandom;
            packs.shuffle(&mut rand::thread_rng());
            let n = ((packs.len() as f64 * pct / 100.0).ceil() as usize).min(packs.len());
            packs.truncate(n);
        }
        opts.progress.send(Progress::Total {
            items: packs.len() as u64,
            bytes: packs.iter().map(|p| listed[p]).sum(),
        });
        opts.progress.send(Progress::Phase("reading packs".into()));
        // A pack's header is compared with the whole ids of its index entries, which the
        // index table does not keep: the index files are read again and their packs checked a
        // batch at a time, so memory holds a batch's entries, not the repository's. A pack two
        // files list is read with the first's entries.
        let mut unread: HashSet<PackId> = packs.iter().copied().collect();
        let mut seen: HashSet<String> = HashSet::new();
        let (mut batch, mut batch_entries): (IndexPacks, usize) = (Vec::new(), 0);
        let mut read_batch = |batch: &mut IndexPacks| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            let expected = expected_blobs(&index, std::mem::take(batch));
            let these: Vec<PackId> = expected.keys().copied().collect();
            let (errors, bad, bytes) = read_packs(repo, &expected, &these, &opts.progress)?;
            report.packs_read += these.len();
            report.bytes_read += bytes;
            report.errors.extend(errors);
            damaged.extend(bad);
            Ok(())
        };
        // A prune running meanwhile may have replaced index files: the new ones are read for
        // the packs the old ones listed.
        for pass in [Some(index_files), None] {
            let files = match pass {
                Some(files) => files,
                None if unread.is_empty() => break,
                None => repo.store().list(ObjectKind::Index)?,
            };
            for listed in files.into_iter().filter(|l| seen.insert(l.name.clone())) {
                // One that cannot be read was reported above, and its packs are in no table.
                let Ok(file) = repo.load_index_file(&listed.name) else {
                    continue;
                };
                for (pack, entries) in file {
                    if unread.remove(&pack) {
                        batch_entries += entries.len();
                        batch.push((pack, entries));
                    }
                }
                if batch_entries >= CHECK_BATCH_ENTRIES {
                    read_batch(&mut batch)?;
                    batch_entries = 0;
                }
            }
            read_batch(&mut batch)?;
            batch_entries = 0;
        }
        report.errors.extend(unread.iter().map(|p| {
            format!("pack {p}: no index file lists it any more (a prune ran meanwhile?); its data was not read")
        }));
    }

    opts.progress
        .send(Progress::Phase("checking snapshots".into()));
    let (snapshots, unreadable) = snapshot::list_readable(repo)?;
    report.snapshots = snapshots.len() + unreadable.len();
    report
        .errors
        .extend(unreadable.iter().map(ToString::to_string));
    let mut log_affected: BTreeMap<SnapshotId, Vec<String>> = BTreeMap::new();
    for archive in log_archives() {
        let mut found = archive.check(repo, &snapshots, opts.read_data, &opts.progress)?;
        report.errors.append(&mut found.errors);
        report.notes.append(&mut found.notes);
        report.logs.insert(archive.name(), found.sources);
        for (id, paths) in found.affected {
            log_affected.entry(id).or_default().extend(paths);
        }
    }
    for (id, snap) in snapshots {
        let mut affected = Affected {
            snapshot: id,
            source: snap.source.name.clone(),
            time: snap.time.to_string(),
            paths: log_affected.remove(&id).unwrap_or_default(),
        };
        let mut missing = 0usize;
        for c in &snap.tree {
            if !index.contains(c) {
                missing += 1;
            }
            if damaged.contains(c) {
                affected.paths.push("<item list>".into());
            }
        }
        if missing > 0 {
            report.errors.push(format!(
                "snapshot {}: {missing} item-list chunk(s) missing",
                id.short()
            ));
            affected.paths.push("<item list>".into());
            report.affected.push(affected);
            continue;
        }
        for item in ItemReader::new(repo.clone(), index.clone(), snap.tree.clone()) {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    report.errors.push(format!(
                        "snapshot {}: item list unreadable: {e}",
                        id.short()
                    ));
                    break;
                }
            };
            let lost = item.chunks.iter().filter(|c| !index.contains(c)).count();
            if lost > 0 {
                report.errors.push(format!(
                    "snapshot {}: {}: {lost} chunk(s) missing from the index",
                    id.short(),
                    item.path
                ));
                affected.paths.push(item.path.clone());
            } else if item.chunks.iter().any(|c| damaged.contains(c)) {
                affected.paths.push(item.path.clone());
            }
        }
        if !affected.paths.is_empty() {
            report.affected.push(affected);
        }
    }
    report.damaged_chunks = damaged.into_iter().collect();
    report.damaged_chunks.sort();
    Ok(report)
}

/// The blobs each pack must hold: the index files' entries where the index resolves them (a
/// chunk stored twice is expected where the index finds it).
fn expected_blobs(index: &Index, indexed: IndexPacks) -> HashMap<PackId, Vec<ExpectedBlob>> {
    let mut expected: HashMap<PackId, Vec<ExpectedBlob>> = HashMap::new();
    for (pack, entries) in indexed {
        let blobs = expected.entry(pack).or_default();
        for e in entries {
            if index
                .get(&e.id)
                .is_some_and(|l| l.pack == pack && l.offset == e.offset)
            {
                blobs.push((e.id, e.offset, e.length, e.raw_length));
            }
        }
    }
    // A pack listed by two index files is expected once.
    for blobs in expected.values_mut() {
        blobs.sort_unstable_by_key(|b| b.1);
        blobs.dedup();
    }
    expected
}

/// A blob's id, offset, length and raw length.
type ExpectedBlob = (ChunkId, u32, u32, u32);

/// Reads whole packs in parallel; verifies the pack hash, the header against the index, and
/// every blob's authentication and id.
fn read_packs(
    repo: &Repository,
    expected: &HashMap<PackId, Vec<ExpectedBlob>>,
    packs: &[PackId],
    progress: &Reporter,
) -> Result<(Vec<String>, Vec<ChunkId>, u64)> {
    let errors = Mutex::new(Vec::new());
    let damaged = Mutex::new(Vec::new());
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let states = (0..num_cpus())
        .map(|_| PackBuffers::new())
        .collect::<Result<Vec<_>>>()?;
    crate::prefetch::run(
        packs.to_vec(),
        crate::prefetch::fetchers(repo.store().is_local()),
        |pack, buf| {
            repo.store()
                .read_into(ObjectKind::Pack, &pack.to_hex(), buf)
        },
        states,
        |buffers, pack, read| {
            let blobs = expected.get(&pack).map(Vec::as_slice).unwrap_or(&[]);
            let (errs, bad, n) = match read {
                Ok(bytes) => verify_pack(repo, pack, bytes, blobs, buffers),
                Err(e) => (
                    vec![format!("pack {pack}: cannot read: {e}")],
                    blobs.iter().map(|b| b.0).collect(),
                    0,
                ),
            };
            bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            progress.send(Progress::Bytes(n));
            errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(errs);
            damaged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(bad);
        },
    );
    Ok((
        errors.into_inner().unwrap_or_else(|p| p.into_inner()),
        damaged.into_inner().unwrap_or_else(|p| p.into_inner()),
        bytes.into_inner(),
    ))
}

/// Verifies one pack read whole into `bytes`.
fn verify_pack(
    repo: &Repository,
    pack: PackId,
    bytes: &mut [u8],
    blobs: &[ExpectedBlob],
    buffers: &mut PackBuffers,
) -> (Vec<String>, Vec<ChunkId>, u64) {
    let PackBuffers { plain, decoder } = buffers;
    let n = bytes.len() as u64;
    let mut errors = Vec::new();
    if PackId::of_content(bytes) != pack {
        errors.push(format!(
            "pack {pack}: content does not match its name (bytes were modified)"
        ));
    }
    match pack::read_header(repo.key(), bytes) {
        Ok(header) => {
            let in_header: HashSet<ChunkId> = header.iter().map(|e| e.id).collect();
            for b in blobs {
                if !in_header.contains(&b.0) {
                    errors.push(format!(
                        "pack {pack}: index lists chunk {} that the pack header does not",
                        b.0
                    ));
                }
            }
        }
        Err(e) => errors.push(format!("pack {pack}: header unreadable: {e}")),
    }
    // Blobs are opened in place, so the pack's bytes are not usable after this loop.
    let mut damaged = Vec::new();
    for &(id, offset, length, raw) in blobs {
        let (s, e) = (offset as usize, offset as usize + length as usize);
        let result = bytes
            .get_mut(s..e)
            .map(|sealed| repo.decode_blob_into(decoder, &id, sealed, raw, plain));
        match result {
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                errors.push(format!("pack {pack}: chunk {id}: {err}"));
                damaged.push(id);
            }
            None => {
                errors.push(format!(
                    "pack {pack}: chunk {id} lies past the end of the pack"
                ));
                damaged.push(id);
            }
        }
    }
    (errors, damaged, n)
}
