//! The local index cache: the sorted table of the live index files, kept on this machine's
//! disk and mapped into memory, so that opening a large repository reads one file it need not
//! decrypt, parse or sort, and the table's pages are the kernel's to drop.
//!
//! A cache file covers a set of index files by name. Index files are named by the hash of
//! their content, so the table is exactly the union of those files for as long as they are all
//! listed; when one is gone (prune compacted it, repair replaced it) the cache is rebuilt.
//! Files it does not cover are read beside it; once they hold more than an eighth of what it
//! covers, the cache is rebuilt too. The file ends in a MAC with a key derived from the
//! master key, checked over the whole file before it is used: a torn, damaged or foreign file
//! is never used, only rebuilt.
//!
//! A table is built into the cache file group by group from an index builder that spilled
//! its records to a file beside it (`IndexBuilder::spill_to`), so a first open holds little
//! more than the pack ids in memory; a table that cannot be kept (packs were left out) is
//! built the same way into a file that is gone once unmapped. The header and starts are
//! known only at the end: they are written last, in place, and the MAC takes them after the
//! rest.
//!
//! ```text
//! cache = "BWIC" version:u32 marker:u32 record_size:u32 packs:u64 records:u64
//!         covered:u64 covered_bytes:u64 zero:[16]
//!         starts:[u32; 256 * 257] pack_id:[32]*packs record:[32]*records
//!         index_name:[32]*covered mac:[32]
//! mac = keyed BLAKE3 of (everything from pack_id to index_name, then header and starts)
//! ```
//! Numbers are in the machine's byte order (the marker tells another machine's file apart):
//! the file is local, and records are used where they lie.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::id::PackId;
use crate::index::{range_starts, IndexBuilder, Record, Starts, Storage, Table, GROUPS};
use crate::store::Listed;

const MAGIC: &[u8; 4] = b"BWIC";
const VERSION: u32 = 2;
const MARKER: u32 = 0x0102_0304;
const HEADER: usize = 64;
const STARTS: usize = GROUPS * std::mem::size_of::<Starts>();
const MAC: usize = 32;

/// Where the cache lives and from what size a table is worth keeping there.
#[derive(Clone, Debug)]
pub struct IndexCache {
    /// Bulwark's cache directory; tables go to `index/<repository id>.table` under it.
    pub dir: PathBuf,
    /// Tables with fewer chunks are not written (they load from the index files about as
    /// fast).
    pub min_blobs: usize,
}

impl IndexCache {
    /// Tables of fewer chunks than this open fast enough from the index files.
    pub const MIN_BLOBS: usize = 100_000;

    fn path(&self, repo_id: &str) -> PathBuf {
        self.dir.join("index").join(format!("{repo_id}.table"))
    }

    /// The cached table if it is whole, was written with `key`, every index file it covers
    /// is in `listed`, and the files it does not cover are few; with the names it covers.
    pub(crate) fn open(&self, key: &[u8; 32], repo_id: &str, listed: &[Listed]) -> Option<Cached> {
        let path = self.path(repo_id);
        let (mapped, starts) = match map_verified(&path, key) {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!("index cache {}: {e}; rebuilding it", path.display());
                return None;
            }
        };
        let covered: HashSet<String> = mapped.covered().map(hex::encode).collect();
        let listed_names: HashSet<&str> = listed.iter().map(|l| l.name.as_str()).collect();
        if !covered.iter().all(|c| listed_names.contains(c.as_str())) {
            log::debug!("index cache: index files it covers are gone; rebuilding it");
            return None;
        }
        let uncovered: u64 = listed
            .iter()
            .filter(|l| !covered.contains(&l.name))
            .map(|l| l.size)
            .sum();
        if uncovered > mapped.covered_bytes / 8 {
            log::debug!("index cache: {uncovered} bytes of index files beside it; rebuilding it");
            return None;
        }
        Some(Cached {
            table: Table::new(Storage::Mapped(mapped), starts),
            covered,
        })
    }

    /// Removes the repository's cache file (a table that became too small to keep: the file
    /// would be read and refused at every open).
    pub(crate) fn remove(&self, repo_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(repo_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A file to spill a builder to while it collects a table for this cache (unnamed, in
    /// the cache's directory: on the disk the table will go to).
    pub(crate) fn spill_file(&self, repo_id: &str) -> std::io::Result<File> {
        tempfile::tempfile_in(self.create_dir(repo_id)?)
    }

    fn create_dir(&self, repo_id: &str) -> std::io::Result<PathBuf> {
        let path = self.path(repo_id);
        let dir = path.parent().expect("a file in a directory");
        // Only this user reads what the cache says about the repository.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)?;
        Ok(dir.to_path_buf())
    }

    /// Sorts what `builder` collected from the index files `listed` into a cache file and
    /// maps it. With `keep` the file replaces the repository's cache (at once, so that
    /// readers see the old file or the new one); without, it is gone once unmapped. Records
    /// go to the file group by group, so a builder that spilled never holds its whole table.
    pub(crate) fn build(
        &self,
        key: &[u8; 32],
        repo_id: &str,
        builder: IndexBuilder,
        listed: &[Listed],
        keep: bool,
    ) -> std::io::Result<Table> {
        let names = listed
            .iter()
            .map(|l| {
                let mut name = [0u8; 32];
                hex::decode_to_slice(&l.name, &mut name).map(|()| name)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| std::io::Error::other("an index file's name is not a hash"))?;
        let mut file = tempfile::NamedTempFile::new_in(self.create_dir(repo_id)?)?;
        let mut out = MacWriter {
            out: std::io::BufWriter::with_capacity(1 << 20, file.as_file_mut()),
            mac: blake3::Hasher::new_keyed(key),
        };
        // The header and starts are known once the records are written: room for them now,
        // written in place and hashed last.
        out.out.write_all(&[0; HEADER + STARTS])?;
        let packs = builder.packs().len();
        out.write_all(bytemuck::cast_slice(builder.packs()))?;
        let mut starts = Vec::with_capacity(GROUPS);
        builder.into_sorted_groups(|records| {
            starts.push(range_starts(records));
            out.write_all(bytemuck::cast_slice(records))
        })?;
        out.write_all(bytemuck::cast_slice(&names))?;
        let records: usize = starts.iter().map(|s| s[256] as usize).sum();
        let mut head = Vec::with_capacity(HEADER + STARTS);
        head.extend_from_slice(MAGIC);
        for n in [VERSION, MARKER, std::mem::size_of::<Record>() as u32] {
            head.extend_from_slice(&n.to_ne_bytes());
        }
        let covered_bytes: u64 = listed.iter().map(|l| l.size).sum();
        for n in [packs, records, names.len()] {
            head.extend_from_slice(&(n as u64).to_ne_bytes());
        }
        head.extend_from_slice(&covered_bytes.to_ne_bytes());
        head.resize(HEADER, 0);
        head.extend_from_slice(bytemuck::cast_slice(&starts));
        out.mac.update(&head);
        let mac = *out.mac.finalize().as_bytes();
        out.out.write_all(&mac)?;
        out.out.flush()?;
        drop(out);
        std::os::unix::fs::FileExt::write_all_at(file.as_file(), &head, 0)?;
        let (mapped, starts) = map(file.as_file(), true)?
            .ok_or_else(|| std::io::Error::other("the table written does not read back"))?;
        if keep {
            file.persist(self.path(repo_id)).map_err(|e| e.error)?;
        }
        Ok(Table::new(Storage::Mapped(mapped), starts))
    }
}

/// A cached table and the names of the index files it covers.
pub(crate) struct Cached {
    pub table: Table,
    pub covered: HashSet<String>,
}

/// A cache file mapped into memory, its MAC checked.
pub(crate) struct Mapped {
    map: memmap2::Mmap,
    packs: Range<usize>,
    records: Range<usize>,
    covered: Range<usize>,
    covered_bytes: u64,
    /// The index of each group's first record, and the end.
    firsts: Vec<usize>,
    /// Whether this open built the file (from the index files) rather than found it.
    pub(crate) built: bool,
}

impl Mapped {
    pub(crate) fn packs(&self) -> &[PackId] {
        bytemuck::cast_slice(&self.map[self.packs.clone()])
    }

    pub(crate) fn group(&self, g: usize) -> &[Record] {
        let size = std::mem::size_of::<Record>();
        let at = |i: usize| self.records.start + self.firsts[i] * size;
        bytemuck::cast_slice(&self.map[at(g)..at(g + 1)])
    }

    fn covered(&self) -> impl Iterator<Item = &[u8]> {
        self.map[self.covered.clone()].chunks_exact(32)
    }
}

/// Reads the file at `path` through once to check its MAC (read, not mapped: the pages stay
/// the page cache's and are not counted against this process), then maps it; with its range
/// starts. None if it is not a whole cache file written with `key`.
fn map_verified(path: &Path, key: &[u8; 32]) -> std::io::Result<Option<(Mapped, Vec<Starts>)>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    let (head_end, Some(body_end)) = (HEADER + STARTS, len.checked_sub(MAC)) else {
        return Ok(None);
    };
    if body_end < head_end {
        return Ok(None);
    }
    // The MAC covers the body, then the header and starts (written last).
    let mut mac = blake3::Hasher::new_keyed(key);
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut head, mut stored) = (0, Vec::with_capacity(head_end), Vec::new());
    while done < len {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        let part = |from: usize, to: usize| {
            let (from, to) = (from.clamp(done, done + n), to.clamp(done, done + n));
            &buf[from - done..to.max(from) - done]
        };
        head.extend_from_slice(part(0, head_end));
        mac.update(part(head_end, body_end));
        stored.extend_from_slice(part(body_end, len));
        done += n;
    }
    mac.update(&head);
    // blake3::Hash compares in constant time.
    if <[u8; MAC]>::try_from(stored.as_slice()).map_or(true, |m| mac.finalize() != m) {
        return Ok(None);
    }
    map(&file, false)
}

/// Maps a cache file and checks its layout; with its range starts. None if it is not whole.
fn map(file: &File, built: bool) -> std::io::Result<Option<(Mapped, Vec<Starts>)>> {
    // SAFETY: the cache file is only ever replaced by renaming a new file over it, never
    // written in place once mapped, so the mapped bytes do not change under us (a user
    // truncating it by hand would crash this process, as with any tool's mapped cache).
    let map = unsafe { memmap2::Mmap::map(file)? };
    let Some(header) = map.first_chunk::<HEADER>() else {
        return Ok(None);
    };
    let Some(layout) = Layout::parse(header, map.len()) else {
        return Ok(None);
    };
    if bytemuck::try_cast_slice::<u8, Record>(&map[layout.records.clone()]).is_err() {
        return Ok(None);
    }
    let starts: Vec<Starts> = bytemuck::pod_collect_to_vec(&map[HEADER..HEADER + STARTS]);
    let mut firsts = Vec::with_capacity(GROUPS + 1);
    firsts.push(0);
    for s in &starts {
        if !s.windows(2).all(|w| w[0] <= w[1]) || s[0] != 0 {
            return Ok(None);
        }
        firsts.push(firsts.last().copied().unwrap_or(0) + s[256] as usize);
    }
    if firsts.last().copied() != Some(layout.record_count) {
        return Ok(None);
    }
    let mapped = Mapped {
        map,
        packs: layout.packs,
        records: layout.records,
        covered: layout.covered,
        covered_bytes: layout.covered_bytes,
        firsts,
        built,
    };
    Ok(Some((mapped, starts)))
}

/// Where a cache file's parts are, from its header.
struct Layout {
    packs: Range<usize>,
    records: Range<usize>,
    record_count: usize,
    covered: Range<usize>,
    covered_bytes: u64,
}

impl Layout {
    fn parse(header: &[u8; HEADER], len: usize) -> Option<Self> {
        let u32_at = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().expect("8"));
        let valid = &header[..4] == MAGIC
            && u32_at(4) == VERSION
            && u32_at(8) == MARKER
            && u32_at(12) as usize == std::mem::size_of::<Record>();
        if !valid {
            return None;
        }
        let count = |at: usize| usize::try_from(u64_at(at)).ok();
        let (packs, records, covered) = (count(16)?, count(24)?, count(32)?);
        let packs_at = HEADER + STARTS;
        let records_at = packs_at.checked_add(packs.checked_mul(32)?)?;
        let covered_at = records_at.checked_add(records.checked_mul(32)?)?;
        let end = covered_at.checked_add(covered.checked_mul(32)?)?;
        (end.checked_add(MAC)? == len).then_some(Self {
            packs: packs_at..records_at,
            records: records_at..covered_at,
            record_count: records,
            covered: covered_at..end,
            covered_bytes: u64_at(40),
        })
    }
}

/// Writes through a keyed hash.
struct MacWriter<W: Write> {
    out: W,
    mac: blake3::Hasher,
}

impl<W: Write> Write for MacWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.mac.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;
    use crate::index::IndexBuilder;
    use crate::pack::{BlobKind, PackEntry};

    fn listed(name: u8, size: u64) -> Listed {
        Listed {
            name: hex::encode([name; 32]),
            size,
            modified: None,
        }
    }

    /// A builder of `packs` packs of 50 random chunks each, and the chunks.
    fn table(packs: usize) -> (IndexBuilder, Vec<(PackId, PackEntry)>) {
        let mut builder = IndexBuilder::default();
        let mut all = Vec::new();
        for _ in 0..packs {
            let pack = PackId::random();
            let entries: Vec<PackEntry> = (0..50u32)
                .map(|i| PackEntry {
                    kind: [BlobKind::Data, BlobKind::Tree][i as usize % 2],
                    id: ChunkId::random(),
                    offset: i * 4096,
                    length: 4000 + i,
                    raw_length: 9000 + i,
                })
                .collect();
            builder.add_pack(pack, &entries);
            all.extend(entries.into_iter().map(|e| (pack, e)));
        }
        (builder, all)
    }

    fn cache(dir: &Path) -> IndexCache {
        IndexCache {
            dir: dir.to_path_buf(),
            min_blobs: 0,
        }
    }

    #[test]
    fn a_mapped_table_finds_what_the_built_one_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (built, chunks) = table(400);
        let files = [listed(1, 800), listed(2, 800)];
        let key = [7u8; 32];
        cache(dir.path())
            .build(&key, "repo", built, &files, true)
            .expect("write");
        let cached = cache(dir.path()).open(&key, "repo", &files).expect("opens");
        assert_eq!(
            cached.covered,
            files.iter().map(|l| l.name.clone()).collect::<HashSet<_>>()
        );
        let index = IndexBuilder::default().finish_over(cached.table);
        assert_eq!(index.cached_blobs(), chunks.len());
        assert_eq!(index.blob_count(), chunks.len());
        for (pack, e) in &chunks {
            let loc = index.get(&e.id).expect("found");
            assert_eq!(
                (loc.pack, loc.kind, loc.offset, loc.length, loc.raw_length),
                (*pack, e.kind, e.offset, e.length, e.raw_length)
            );
            assert!(index.has_pack(pack));
        }
        assert!(!index.contains(&ChunkId::random()));
        assert!(!index.has_pack(&PackId::random()));
    }

    #[test]
    fn a_table_built_through_a_spill_file_finds_what_one_built_in_memory_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = cache(dir.path());
        let key = [7u8; 32];
        let (mut in_memory, mut spilled) = (IndexBuilder::default(), IndexBuilder::default());
        spilled.spill_to(cache.spill_file("repo").expect("spill file"));
        // Enough chunks that groups spill, gathered as loading does: one builder per file.
        let mut homes: Vec<(PackId, ChunkId)> = Vec::new();
        for p in 0..crate::index::SPILL_AT * crate::index::GROUPS / 32 {
            let pack = PackId::random();
            // Every ninth pack repeats a chunk of an earlier one, which keeps it.
            let repeats = (p % 9 == 8).then(|| homes[p * 3].1);
            let entries: Vec<PackEntry> = (0..40u32)
                .map(|i| PackEntry {
                    kind: BlobKind::Data,
                    id: repeats.filter(|_| i == 0).unwrap_or_else(ChunkId::random),
                    offset: i * 4096,
                    length: 4000,
                    raw_length: 9000,
                })
                .collect();
            let fresh = &entries[usize::from(repeats.is_some())..];
            homes.extend(fresh.iter().map(|e| (pack, e.id)));
            in_memory.add_pack(pack, &entries);
            let mut file = IndexBuilder::default();
            file.add_pack(pack, &entries);
            spilled.append(&mut file);
        }
        assert!(spilled.spilled());
        let files = [listed(1, 800)];
        let mapped = cache
            .build(&key, "repo", spilled, &files, false)
            .expect("build");
        assert!(cache.open(&key, "repo", &files).is_none(), "not kept");
        let (heap, mapped) = (
            in_memory.finish(),
            IndexBuilder::default().finish_over(mapped),
        );
        assert_eq!(mapped.cached_blobs(), 0, "built, not found");
        assert_eq!(mapped.blob_count(), homes.len());
        for (pack, id) in &homes {
            assert_eq!(mapped.get(id), heap.get(id));
            assert_eq!(mapped.get(id).expect("found").pack, *pack);
        }
    }

    #[test]
    fn a_spill_that_could_not_be_written_fails_the_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"").expect("write");
        let mut builder = IndexBuilder::default();
        builder.spill_to(File::open(&path).expect("open"));
        // 750,000 records: groups fill past `SPILL_AT`, and every write fails.
        for _ in 0..150 {
            builder.append(&mut table(100).0);
        }
        assert!(builder.spilled(), "records were lost, not spilled");
        let built = cache(dir.path()).build(&[7; 32], "repo", builder, &[], true);
        assert!(built.is_err());
        assert!(cache(dir.path()).open(&[7; 32], "repo", &[]).is_none());
    }

    #[test]
    fn a_damaged_or_foreign_cache_is_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (built, _) = table(40);
        let files = [listed(1, 800)];
        let key = [7u8; 32];
        let cache = cache(dir.path());
        cache
            .build(&key, "repo", built, &files, true)
            .expect("write");
        let path = cache.path("repo");
        let good = std::fs::read(&path).expect("read");
        assert!(cache.open(&key, "repo", &files).is_some());
        assert!(
            cache.open(&[8u8; 32], "repo", &files).is_none(),
            "other key"
        );
        // One flipped bit anywhere: header, starts, packs, records, names, MAC.
        let packs_at = HEADER + STARTS;
        let records_at = packs_at + 40 * 32;
        for at in [
            5,
            40,
            HEADER + 100,
            packs_at + 3,
            records_at + 20,
            good.len() - 40,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).expect("write");
            assert!(
                cache.open(&key, "repo", &files).is_none(),
                "flipped at {at}"
            );
        }
        for len in [0, HEADER, good.len() - 1] {
            std::fs::write(&path, &good[..len]).expect("write");
            assert!(cache.open(&key, "repo", &files).is_none(), "cut at {len}");
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 32]);
        std::fs::write(&path, &longer).expect("write");
        assert!(cache.open(&key, "repo", &files).is_none(), "longer");
        std::fs::write(&path, &good).expect("write");
        assert!(cache.open(&key, "repo", &files).is_some());
    }

    #[test]
    fn the_cache_is_used_only_while_it_covers_the_index_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (built, _) = table(10);
        let key = [7u8; 32];
        let cache = cache(dir.path());
        let covered = [listed(1, 4000), listed(2, 4000)];
        cache
            .build(&key, "repo", built, &covered, true)
            .expect("write");
        // A covered file gone (compacted by prune): not used.
        assert!(cache.open(&key, "repo", &covered[..1]).is_none());
        // Files beside it up to an eighth of what it covers: used, and they are not covered.
        let beside = [listed(1, 4000), listed(2, 4000), listed(3, 1000)];
        let cached = cache.open(&key, "repo", &beside).expect("used");
        assert!(!cached.covered.contains(&beside[2].name));
        // More beside it: rebuilt instead.
        let more = [
            listed(1, 4000),
            listed(2, 4000),
            listed(3, 1000),
            listed(4, 1),
        ];
        assert!(cache.open(&key, "repo", &more).is_none());
        // Another repository's cache is another file.
        assert!(cache.open(&key, "other", &covered).is_none());
    }
}
