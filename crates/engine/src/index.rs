//! The index: where each chunk lives (pack, offset, length).
//!
//! Index files list the blobs of the packs that one writer uploaded:
//! ```text
//! index = "BWIX" version:u8 pack_count:u32le (pack_id:[32] count:u32le entry*)*
//! ```
//! with `entry` as in a pack header; the whole is compressed and sealed. The in-memory index is
//! the union of every index file, loaded when a repository is opened.
//!
//! In memory it is one table of 32-byte records sorted by the first 16 bytes of the chunk id,
//! cut into 65,536 ranges by the first two bytes and searched by bisection within a range. A
//! chunk id is a keyed BLAKE3 hash, so its first 16 bytes are a 128-bit MAC of the content:
//! no one without the key can choose two chunks that share them, and by chance two of a
//! repository's 10^7 chunks would with a probability near 10^-25 (kopia's content ids are
//! 128 bits for the same reason). Restores and checks still compare every chunk read with
//! its whole 32-byte id. A hash map of whole ids cost 80-110 bytes per chunk; the table costs
//! 32, and builds by bucketing and sorting instead of hashing into a table larger than the
//! caches.
//!
//! An index is a few such tables holding disjoint chunks, searched in order: the live index
//! files' table (built now, or mapped from the local cache: `index_cache`), then one of what
//! was read beside it; chunks of packs adopted later go into a small map.

use crate::error::{Error, Result};
use crate::id::{ChunkId, IdMap, PackId};
use crate::pack::{BlobKind, PackEntry, Reader};

const MAGIC: &[u8; 4] = b"BWIX";
const VERSION: u8 = 1;

/// The packs one index file describes.
pub type IndexPacks = Vec<(PackId, Vec<PackEntry>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub kind: BlobKind,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// Set in `Record::pack` for tree blobs.
const TREE: u32 = 1 << 31;

/// One chunk: its key (the id's first 16 bytes, big-endian, so that the first two bytes are
/// the bucket) and its place, with the pack as a number into its table's packs. The layout is
/// fixed (`repr(C)`, no padding) because the local index cache maps records straight from disk.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub(crate) struct Record {
    key: u128,
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

impl Record {
    fn new(slot: usize, e: &PackEntry) -> Self {
        Self {
            key: key(&e.id),
            pack: Self::slot_number(slot) | if e.kind == BlobKind::Tree { TREE } else { 0 },
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        }
    }

    fn slot_number(slot: usize) -> u32 {
        u32::try_from(slot)
            .ok()
            .filter(|s| s & TREE == 0)
            .expect("fewer than 2^31 packs")
    }

    fn slot(&self) -> usize {
        (self.pack & !TREE) as usize
    }

    fn location(&self, packs: &[PackId]) -> BlobLocation {
        BlobLocation {
            pack: packs[self.slot()],
            kind: match self.pack & TREE {
                0 => BlobKind::Data,
                _ => BlobKind::Tree,
            },
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }
}

fn key(id: &ChunkId) -> u128 {
    let head = id.0.first_chunk::<16>().expect("ids are 32 bytes");
    u128::from_be_bytes(*head)
}

/// Records are kept in 256 groups by the key's first byte, each sorted, and found within a
/// group through 256 ranges by the second byte.
pub(crate) const GROUPS: usize = 256;

/// Where each range of a group starts, and the group's end.
pub(crate) type Starts = [u32; 257];

fn group(key: u128) -> usize {
    (key >> 120) as usize
}

fn range(key: u128) -> usize {
    (key >> 112) as usize & 0xff
}

/// Collects the entries of many index files; `finish` sorts them into an [`Index`]. When a
/// chunk is in several packs, the pack added first wins (callers add live index files before
/// the marks of packs on their way out).
#[derive(Default)]
pub struct IndexBuilder {
    packs: Vec<PackId>,
    /// `GROUPS` vectors once anything was added. Filling 256 at once stays within the caches;
    /// bucketing one flat table afterwards cost a cache miss per record.
    groups: Vec<Vec<Record>>,
    /// Where full groups go when the table is built into the local cache.
    spill: Option<Spill>,
}

/// A file the records of a builder go to once a group holds `SPILL_AT` of them, so that
/// building a large table into the local cache holds about `GROUPS * SPILL_AT` records in
/// memory instead of all of them (ten million chunks are 320 MB of records; the spilled ones
/// are the page cache's to keep or write out).
struct Spill {
    file: std::fs::File,
    len: u64,
    /// Each group's runs in the file (offset, records), in the order they were added.
    runs: Vec<Vec<(u64, usize)>>,
    failed: Option<std::io::Error>,
}

/// 64 KiB per group, 16 MiB in all.
pub(crate) const SPILL_AT: usize = 2048;

impl Spill {
    fn put(&mut self, g: usize, records: &mut Vec<Record>) {
        if self.failed.is_none() {
            match std::io::Write::write_all(&mut self.file, bytemuck::cast_slice(records)) {
                Ok(()) => {
                    self.runs[g].push((self.len, records.len()));
                    self.len += std::mem::size_of_val(records.as_slice()) as u64;
                }
                Err(e) => self.failed = Some(e),
            }
        }
        records.clear();
    }

    /// Group `g`'s spilled records, in the order they were added, before `tail`.
    fn take(&self, g: usize, tail: &[Record]) -> std::io::Result<Vec<Record>> {
        let runs = &self.runs[g];
        let mut records =
            vec![<Record as bytemuck::Zeroable>::zeroed(); runs.iter().map(|r| r.1).sum::<usize>()];
        let mut at = 0;
        for &(offset, n) in runs {
            let bytes = bytemuck::cast_slice_mut(&mut records[at..at + n]);
            std::os::unix::fs::FileExt::read_exact_at(&self.file, bytes, offset)?;
            at += n;
        }
        records.extend_from_slice(tail);
        Ok(records)
    }
}

impl IndexBuilder {
    fn groups(&mut self) -> &mut [Vec<Record>] {
        if self.groups.is_empty() {
            self.groups = vec![Vec::new(); GROUPS];
        }
        &mut self.groups
    }

    pub fn add_pack(&mut self, pack: PackId, entries: &[PackEntry]) {
        let slot = self.packs.len();
        self.packs.push(pack);
        let groups = self.groups();
        for e in entries {
            let r = Record::new(slot, e);
            groups[group(r.key)].push(r);
        }
    }

    /// Adds the packs of one index file's plaintext but those `skip` names, and returns how
    /// many entries the file has. A damaged file adds nothing.
    pub fn add_file(&mut self, plain: &[u8], skip: impl Fn(&PackId) -> bool) -> Result<usize> {
        let packs = self.packs.len();
        let lens: Vec<usize> = self.groups().iter().map(Vec::len).collect();
        let mut entries = 0;
        let walked = walk(plain, |pack, list| {
            entries += list.len();
            if !skip(&pack) {
                self.add_pack(pack, list);
            }
        });
        if walked.is_err() {
            self.packs.truncate(packs);
            self.groups
                .iter_mut()
                .zip(lens)
                .for_each(|(g, n)| g.truncate(n));
        }
        walked.map(|()| entries)
    }

    /// Moves everything `other` collected into this builder, after what this one has (so
    /// that index files can be parsed on several threads and gathered under a lock).
    pub fn append(&mut self, other: &mut IndexBuilder) {
        let base = self.packs.len();
        self.packs.append(&mut other.packs);
        self.groups();
        for (g, from) in other.groups.iter_mut().enumerate() {
            let to = &mut self.groups[g];
            to.extend(from.drain(..).map(|r| Record {
                pack: (r.pack & TREE) | Record::slot_number(r.slot() + base),
                ..r
            }));
            if let Some(spill) = self.spill.as_mut().filter(|_| to.len() >= SPILL_AT) {
                spill.put(g, to);
            }
        }
    }

    /// From now on, groups that fill up go to `file` (see [`Spill`]); the table must then be
    /// finished with `into_sorted_groups`.
    pub(crate) fn spill_to(&mut self, file: std::fs::File) {
        self.spill = Some(Spill {
            file,
            len: 0,
            runs: vec![Vec::new(); GROUPS],
            failed: None,
        });
    }

    /// Whether records went to the spill file, or were lost trying (a failed spill must
    /// reach `into_sorted_groups`, which reports it, never `into_table`).
    pub(crate) fn spilled(&self) -> bool {
        self.spill
            .as_ref()
            .is_some_and(|s| s.len > 0 || s.failed.is_some())
    }

    /// How many records were added (a chunk in several packs counts each time).
    pub(crate) fn len(&self) -> usize {
        let spilled = self.spill.as_ref().map_or(0, |s| s.len as usize);
        spilled / std::mem::size_of::<Record>() + self.groups.iter().map(Vec::len).sum::<usize>()
    }

    pub(crate) fn packs(&self) -> &[PackId] {
        &self.packs
    }

    /// Hands each group to `each` in order, sorted as in a table (a group's range starts are
    /// `range_starts` of it); fails if the spill file could not be written or read. Groups
    /// are read back and sorted on up to four threads while `each` takes them in turn.
    pub(crate) fn into_sorted_groups(
        mut self,
        mut each: impl FnMut(&[Record]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if let Some(e) = self.spill.as_mut().and_then(|s| s.failed.take()) {
            return Err(e);
        }
        let mut groups = std::mem::take(&mut self.groups);
        groups.resize(GROUPS, Vec::new());
        let work = std::sync::Mutex::new(groups.into_iter().enumerate());
        let spill = self.spill.as_ref();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        std::thread::scope(|scope| {
            let (sorted, receive) = std::sync::mpsc::sync_channel(threads);
            for _ in 0..threads {
                let (sorted, work) = (sorted.clone(), &work);
                scope.spawn(move || {
                    let mut scratch = Vec::new();
                    loop {
                        let next = work.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some((g, tail)) = next else { break };
                        let records = match spill {
                            Some(spill) => spill.take(g, &tail),
                            None => Ok(tail),
                        };
                        let records = records.map(|mut records| {
                            sort_group(&mut records, &mut scratch);
                            records
                        });
                        // The receiver is gone once a group failed.
                        if sorted.send((g, records)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sorted);
            // Groups arrive about in order; the few ahead of their turn wait here.
            let mut waiting = std::collections::BTreeMap::new();
            for g in 0..GROUPS {
                let records = loop {
                    if let Some(records) = waiting.remove(&g) {
                        break records;
                    }
                    let (at, records) = receive
                        .recv()
                        .map_err(|_| std::io::Error::other("a thread sorting the index stopped"))?;
                    waiting.insert(at, records);
                };
                each(&records?)?;
            }
            Ok(())
        })
    }

    /// Makes room for about `blobs` more blobs at once (no more than fills a group before it
    /// spills). Room not filled costs address space only: a large allocation's untouched
    /// pages are not resident.
    pub fn reserve(&mut self, blobs: usize) {
        let per_group = match self.spill {
            Some(_) => SPILL_AT,
            None => blobs / GROUPS,
        };
        // Groups fill unevenly by a few times the square root of their mean.
        let room = per_group + 4 * per_group.isqrt();
        self.groups().iter_mut().for_each(|g| g.reserve(room));
    }

    pub fn finish(self) -> Index {
        self.finish_over(Table::default())
    }

    /// An index of `base` and, behind it, what this builder collected that `base` lacks.
    pub(crate) fn finish_over(self, base: Table) -> Index {
        let rest = self.into_table(|key| base.find(key).is_some());
        // A table of packs whose chunks are all elsewhere still answers `has_pack`.
        let tables = [base, rest]
            .into_iter()
            .filter(|t| t.len() > 0 || !t.packs().is_empty())
            .collect();
        Index {
            tables,
            ..Default::default()
        }
    }

    /// Sorts the groups on up to four threads, leaving out the keys `known` has. Not for a
    /// builder that spilled (its table goes to a file).
    pub(crate) fn into_table(self, known: impl Fn(u128) -> bool + Sync) -> Table {
        debug_assert!(!self.spilled(), "a spilled table is built into a file");
        let Self {
            packs, mut groups, ..
        } = self;
        let records: usize = groups.iter().map(Vec::len).sum();
        let threads = match records < 1 << 16 {
            true => 1,
            false => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        };
        let per_thread = groups.len().div_ceil(threads).max(1);
        let mut starts = vec![[0u32; 257]; groups.len()];
        let known = &known;
        std::thread::scope(|scope| {
            for (part, part_starts) in groups
                .chunks_mut(per_thread)
                .zip(starts.chunks_mut(per_thread))
            {
                scope.spawn(move || {
                    let mut scratch = Vec::new();
                    for (records, starts) in part.iter_mut().zip(part_starts) {
                        sort_group(records, &mut scratch);
                        records.retain(|r| !known(r.key));
                        records.shrink_to_fit();
                        *starts = range_starts(records);
                    }
                });
            }
        });
        Table::new(Storage::Heap { packs, groups }, starts)
    }
}

/// Sorts one group by key and drops repeated keys. The group holds its records in the order
/// they were added, and every step keeps that order among equal keys, so the first-added pack
/// wins. Spreading by range first (a counting sort, in the caches) leaves sorts of about a
/// hundred records each.
fn sort_group(records: &mut Vec<Record>, scratch: &mut Vec<Record>) {
    let ends = range_starts(records);
    let mut next = ends;
    scratch.clear();
    scratch.extend_from_slice(records);
    for r in scratch.iter() {
        records[next[range(r.key)] as usize] = *r;
        next[range(r.key)] += 1;
    }
    for w in ends.windows(2) {
        records[w[0] as usize..w[1] as usize].sort_by_key(|r| r.key);
    }
    records.dedup_by_key(|r| r.key);
}

/// Where each range of a group would start if its records were sorted (and the end).
pub(crate) fn range_starts(records: &[Record]) -> Starts {
    let mut starts = [0u32; 257];
    for r in records {
        starts[range(r.key) + 1] += 1;
    }
    for i in 0..256 {
        starts[i + 1] += starts[i];
    }
    starts
}

/// One sorted table: `GROUPS` groups of records sorted by key (none in an empty table), where
/// each range of a group starts, and the packs its records name.
#[derive(Default)]
pub(crate) struct Table {
    storage: Storage,
    starts: Vec<Starts>,
    /// Pack slots in the order of their ids, for `has_pack` (made when first asked: opening
    /// does not pay for it).
    by_id: std::sync::OnceLock<Vec<u32>>,
}

/// Where a table's packs and records are: built in memory, or mapped from the local cache.
pub(crate) enum Storage {
    Heap {
        packs: Vec<PackId>,
        groups: Vec<Vec<Record>>,
    },
    Mapped(crate::index_cache::Mapped),
}

impl Default for Storage {
    fn default() -> Self {
        Self::Heap {
            packs: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl Table {
    pub(crate) fn new(storage: Storage, starts: Vec<Starts>) -> Self {
        Self {
            storage,
            starts,
            by_id: Default::default(),
        }
    }

    pub(crate) fn packs(&self) -> &[PackId] {
        match &self.storage {
            Storage::Heap { packs, .. } => packs,
            Storage::Mapped(m) => m.packs(),
        }
    }

    pub(crate) fn group(&self, g: usize) -> &[Record] {
        match &self.storage {
            Storage::Heap { groups, .. } => groups.get(g).map_or(&[], Vec::as_slice),
            Storage::Mapped(m) => m.group(g),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.starts.iter().map(|s| s[256] as usize).sum()
    }

    fn find(&self, key: u128) -> Option<&Record> {
        let (g, r) = (group(key), range(key));
        let starts = self.starts.get(g)?;
        let run = &self.group(g)[starts[r] as usize..starts[r + 1] as usize];
        run.binary_search_by_key(&key, |r| r.key)
            .ok()
            .map(|i| &run[i])
    }

    pub(crate) fn has_pack(&self, pack: &PackId) -> bool {
        let packs = self.packs();
        let by_id = self.by_id.get_or_init(|| {
            let mut order: Vec<u32> = (0..packs.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| packs[a as usize].cmp(&packs[b as usize]));
            order
        });
        by_id
            .binary_search_by(|&s| packs[s as usize].cmp(pack))
            .is_ok()
    }

    fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        (0..self.starts.len()).flat_map(|g| self.group(g))
    }
}

/// The union of the index files: see the module comment. Its tables hold disjoint chunks: the
/// live index files' (built now or mapped from the local cache), then what was read beside
/// them (index files the cache does not cover, marks).
#[derive(Default)]
pub struct Index {
    tables: Vec<Table>,
    /// Packs added after the tables were built (packs a backup adopts), and their chunks by
    /// whole id.
    added_packs: Vec<PackId>,
    added: IdMap<ChunkId, Record>,
    /// Index files that could not be read when this index was loaded: the chunks of the
    /// packs they describe are missing from it.
    pub damaged_files: Vec<String>,
    /// Packs left out of a writer's index because prune has marked them for deletion
    /// (`Repository::load_index_for_writing`).
    pub marked: std::collections::HashSet<PackId>,
}

impl Index {
    /// Adds a pack after the index was built (its chunks go beside the tables; a chunk the
    /// index already has keeps its place).
    pub fn add_pack(&mut self, pack: PackId, entries: &[PackEntry]) {
        let slot = self.added_packs.len();
        self.added_packs.push(pack);
        for e in entries {
            if !self.contains(&e.id) {
                self.added.insert(e.id, Record::new(slot, e));
            }
        }
    }

    pub fn get(&self, id: &ChunkId) -> Option<BlobLocation> {
        let key = key(id);
        self.tables
            .iter()
            .find_map(|t| t.find(key).map(|r| r.location(t.packs())))
            .or_else(|| self.added.get(id).map(|r| r.location(&self.added_packs)))
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        let key = key(id);
        self.tables.iter().any(|t| t.find(key).is_some()) || self.added.contains_key(id)
    }

    pub fn blob_count(&self) -> usize {
        self.tables.iter().map(Table::len).sum::<usize>() + self.added.len()
    }

    pub fn has_pack(&self, pack: &PackId) -> bool {
        self.tables.iter().any(|t| t.has_pack(pack)) || self.added_packs.contains(pack)
    }

    /// Where every indexed blob lies.
    pub fn locations(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        let tables = self
            .tables
            .iter()
            .flat_map(|t| t.records().map(|r| r.location(t.packs())));
        tables.chain(self.added.values().map(|r| r.location(&self.added_packs)))
    }

    /// How many of the index's chunks came from a local cache file already in place (not
    /// read from the index files at this open).
    pub fn cached_blobs(&self) -> usize {
        self.tables
            .iter()
            .filter(|t| matches!(&t.storage, Storage::Mapped(m) if !m.built))
            .map(Table::len)
            .sum()
    }
}

pub fn encode(packs: &[(PackId, Vec<PackEntry>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for (id, entries) in packs {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            e.write_to(&mut out);
        }
    }
    out
}

pub fn decode(data: &[u8]) -> Result<IndexPacks> {
    let mut packs = Vec::new();
    walk(data, |pack, entries| packs.push((pack, entries.to_vec())))?;
    Ok(packs)
}

/// Reads an index file's plaintext, handing each pack with its entries to `each` in turn.
/// Damage may show after some packs were handed over.
fn walk(data: &[u8], mut each: impl FnMut(PackId, &[PackEntry])) -> Result<()> {
    let mut r = Reader::new(data);
    if &r.array::<4>()? != MAGIC {
        return Err(Error::corrupt("index magic mismatch"));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(Error::corrupt(format!(
            "index version {version} is not supported"
        )));
    }
    let count = r.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let id = PackId(r.array()?);
        let n = r.u32()?;
        entries.clear();
        for _ in 0..n {
            entries.push(PackEntry::read_from(&mut r)?);
        }
        each(id, &entries);
    }
    if r.remaining() != 0 {
        return Err(Error::corrupt("trailing bytes after index"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id: ChunkId([i; 32]),
            offset: i as u32 * 10,
            length: 10,
            raw_length: 20,
        }
    }

    #[test]
    fn encode_decode_and_lookup() {
        let packs = vec![
            (PackId([1; 32]), vec![entry(1), entry(2)]),
            (PackId([2; 32]), vec![entry(3)]),
        ];
        let bytes = encode(&packs);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back, packs);
        let mut builder = IndexBuilder::default();
        for (p, e) in &back {
            builder.add_pack(*p, e);
        }
        let idx = builder.finish();
        let loc = idx.get(&ChunkId([3; 32])).expect("present");
        assert_eq!(loc.pack, PackId([2; 32]));
        assert_eq!(loc.offset, 30);
        assert!(!idx.contains(&ChunkId([9; 32])));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
    }

    /// The table against a hash map of whole ids, on enough random chunks to sort on several
    /// threads, with chunks repeated across packs and ids that share their first bytes.
    #[test]
    fn the_table_finds_what_a_map_of_whole_ids_finds() {
        use std::collections::HashMap;
        let mut builder = IndexBuilder::default();
        let mut expected: HashMap<ChunkId, BlobLocation> = HashMap::new();
        let mut packs = Vec::new();
        let mut all = Vec::new();
        for p in 0..3000u32 {
            let pack = PackId::random();
            packs.push(pack);
            let entries: Vec<PackEntry> = (0..100u32)
                .map(|i| {
                    // Every fifth chunk is one an earlier pack has too.
                    let id = match (i % 5, all.len()) {
                        (0, n) if n > 0 => all[(p as usize * 7919 + i as usize) % n],
                        _ => ChunkId::random(),
                    };
                    PackEntry {
                        kind: if i % 3 == 0 {
                            BlobKind::Tree
                        } else {
                            BlobKind::Data
                        },
                        id,
                        offset: i * 1000,
                        length: 900 + p,
                        raw_length: 2000 + i,
                    }
                })
                .collect();
            for e in &entries {
                all.push(e.id);
                expected.entry(e.id).or_insert(BlobLocation {
                    pack,
                    kind: e.kind,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                });
            }
            builder.add_pack(pack, &entries);
        }
        // Same bucket and same first 15 bytes as a present id, but not present.
        let mut near = all[0];
        near.0[15] ^= 1;
        let mut idx = builder.finish();
        assert_eq!(idx.blob_count(), expected.len());
        for (id, loc) in &expected {
            assert_eq!(idx.get(id), Some(*loc), "chunk {id}");
        }
        assert!(!idx.contains(&near));
        assert!(!idx.contains(&ChunkId::random()));
        assert!(packs.iter().all(|p| idx.has_pack(p)));
        assert_eq!(idx.locations().count(), expected.len());

        // A pack added afterwards: its new chunks are found, known ones keep their place.
        let later = PackId::random();
        let fresh = entry(7);
        let known = PackEntry {
            id: all[0],
            ..entry(8)
        };
        assert!(!idx.has_pack(&later));
        idx.add_pack(later, &[fresh, known]);
        assert!(idx.has_pack(&later));
        assert_eq!(idx.get(&fresh.id).map(|l| l.pack), Some(later));
        assert_eq!(idx.get(&all[0]), expected.get(&all[0]).copied());
        assert_eq!(idx.blob_count(), expected.len() + 1);
    }

    #[test]
    fn a_damaged_file_adds_nothing() {
        let good = encode(&[(PackId([1; 32]), vec![entry(1)])]);
        let two = encode(&[
            (PackId([2; 32]), vec![entry(2)]),
            (PackId([3; 32]), vec![entry(3)]),
        ]);
        let mut builder = IndexBuilder::default();
        assert_eq!(builder.add_file(&good, |_| false).expect("good"), 1);
        // The first pack parses; the second is cut short.
        assert!(builder.add_file(&two[..two.len() - 5], |_| false).is_err());
        assert_eq!(
            builder
                .add_file(&two, |p| *p == PackId([3; 32]))
                .expect("two"),
            2
        );
        let idx = builder.finish();
        assert_eq!(idx.blob_count(), 2);
        assert!(idx.contains(&ChunkId([1; 32])) && idx.contains(&ChunkId([2; 32])));
        assert!(!idx.contains(&ChunkId([3; 32])), "skipped pack");
        assert!(!idx.has_pack(&PackId([3; 32])));
        assert_eq!(
            idx.get(&ChunkId([2; 32])).map(|l| l.pack),
            Some(PackId([2; 32]))
        );
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let mut idx = Index::default();
        assert!(!idx.contains(&ChunkId::random()));
        assert!(!idx.has_pack(&PackId::random()));
        idx.add_pack(PackId([1; 32]), &[entry(1)]);
        assert!(idx.contains(&ChunkId([1; 32])));
        let built = IndexBuilder::default().finish();
        assert!(!built.contains(&ChunkId([1; 32])));
        assert_eq!(built.blob_count(), 0);
    }

    /// Packs read beside a table whose chunks the table already has (a mark of a pack whose
    /// chunks live elsewhere too, a pack with no entries) are still known as packs.
    #[test]
    fn packs_behind_a_table_are_known_though_their_chunks_are_not_theirs() {
        let mut base = IndexBuilder::default();
        base.add_pack(PackId([1; 32]), &[entry(1)]);
        let mut rest = IndexBuilder::default();
        rest.add_pack(PackId([2; 32]), &[entry(1)]);
        rest.add_pack(PackId([3; 32]), &[]);
        let idx = rest.finish_over(base.into_table(|_| false));
        assert_eq!(idx.blob_count(), 1);
        assert_eq!(
            idx.get(&ChunkId([1; 32])).map(|l| l.pack),
            Some(PackId([1; 32]))
        );
        assert!(idx.has_pack(&PackId([2; 32])) && idx.has_pack(&PackId([3; 32])));
    }
}
