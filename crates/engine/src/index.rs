//! The index: where each chunk lives (pack, offset, length).
//!
//! Index files list the blobs of the packs that one writer uploaded:
//! ```text
//! index = "BWIX" version:u8 pack_count:u32le (pack_id:[32] count:u32le entry*)*
//! ```
//! with `entry` as in a pack header; the whole is compressed and sealed. The in-memory index is
//! the union of every index file, loaded when a repository is opened.

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

#[derive(Clone, Copy)]
struct Slot {
    pack: u32,
    kind: BlobKind,
    offset: u32,
    length: u32,
    raw_length: u32,
}

#[derive(Default)]
pub struct Index {
    packs: Vec<PackId>,
    pack_slots: IdMap<PackId, u32>,
    blobs: IdMap<ChunkId, Slot>,
    /// Index files that could not be read when this index was loaded: the chunks of the
    /// packs they describe are missing from it.
    pub damaged_files: Vec<String>,
    /// Packs left out of a writer's index because prune has marked them for deletion
    /// (`Repository::load_index_for_writing`).
    pub marked: std::collections::HashSet<PackId>,
}

impl Index {
    pub fn add_pack(&mut self, pack: PackId, entries: &[PackEntry]) {
        let next = self.packs.len() as u32;
        let slot = *self.pack_slots.entry(pack).or_insert(next);
        if slot == next {
            self.packs.push(pack);
        }
        for e in entries {
            self.blobs.entry(e.id).or_insert(Slot {
                pack: slot,
                kind: e.kind,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            });
        }
    }

    /// Makes room for `blobs` more blobs at once.
    pub fn reserve(&mut self, blobs: usize) {
        self.blobs.reserve(blobs);
    }

    pub fn get(&self, id: &ChunkId) -> Option<BlobLocation> {
        self.blobs.get(id).map(|s| BlobLocation {
            pack: self.packs[s.pack as usize],
            kind: s.kind,
            offset: s.offset,
            length: s.length,
            raw_length: s.raw_length,
        })
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn has_pack(&self, pack: &PackId) -> bool {
        self.pack_slots.contains_key(pack)
    }

    /// Every indexed blob with its location.
    pub fn iter(&self) -> impl Iterator<Item = (ChunkId, BlobLocation)> + '_ {
        self.blobs.iter().map(|(id, s)| {
            let loc = BlobLocation {
                pack: self.packs[s.pack as usize],
                kind: s.kind,
                offset: s.offset,
                length: s.length,
                raw_length: s.raw_length,
            };
            (*id, loc)
        })
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
    let count = r.u32()? as usize;
    let mut packs = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let id = PackId(r.array()?);
        let n = r.u32()? as usize;
        let entries: Result<Vec<_>> = (0..n).map(|_| PackEntry::read_from(&mut r)).collect();
        packs.push((id, entries?));
    }
    if r.remaining() != 0 {
        return Err(Error::corrupt("trailing bytes after index"));
    }
    Ok(packs)
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
        let mut idx = Index::default();
        for (p, e) in &back {
            idx.add_pack(*p, e);
        }
        let loc = idx.get(&ChunkId([3; 32])).expect("present");
        assert_eq!(loc.pack, PackId([2; 32]));
        assert_eq!(loc.offset, 30);
        assert!(!idx.contains(&ChunkId([9; 32])));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
    }
}
