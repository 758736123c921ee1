//! Packs: many sealed blobs in one storage object, followed by a sealed header that lists them.
//!
//! ```text
//! pack   = blob* header_sealed header_len:u32le
//! header = "BWPK" version:u8 count:u32le entry*          (then sealed with codec::encode)
//! entry  = kind:u8 chunk_id:[32] offset:u32le length:u32le raw_length:u32le
//! ```
//! The pack's id is BLAKE3 of all its bytes, so a pack can be verified without the key.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};

const MAGIC: &[u8; 4] = b"BWPK";
const VERSION: u8 = 1;
const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// File contents, dumps, streams.
    Data,
    /// The item stream of a snapshot (paths and metadata).
    Tree,
}

impl BlobKind {
    fn to_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }

    fn from_byte(b: u8) -> Result<Self> {
        match b {
            0 => Ok(BlobKind::Data),
            1 => Ok(BlobKind::Tree),
            _ => Err(Error::corrupt(format!("unknown blob kind {b}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: ChunkId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

impl PackEntry {
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
    }

    /// Reads one entry (fixed-size: one bounds check, then plain loads; ten million of them
    /// are read to open a large repository).
    pub(crate) fn read_from(r: &mut Reader<'_>) -> Result<Self> {
        let b = r.take(ENTRY_LEN)?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let id = b[1..33].first_chunk::<32>().expect("an entry holds an id");
        Ok(Self {
            kind: BlobKind::from_byte(b[0])?,
            id: ChunkId(*id),
            offset: u32_at(33),
            length: u32_at(37),
            raw_length: u32_at(41),
        })
    }
}

/// Accumulates sealed blobs of one kind until the pack is big enough to upload.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// A builder that fills `buf` (a reused buffer; cleared first).
    pub fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self {
            buf,
            entries: Vec::new(),
        }
    }

    pub fn add(&mut self, kind: BlobKind, id: ChunkId, sealed: &[u8], raw_length: u32) {
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_length,
        });
        self.buf.extend_from_slice(sealed);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the header and returns the finished pack.
    pub fn finish(mut self, key: &MasterKey) -> FinishedPack {
        let sealed = codec::encode_object(key, &encode_header(&self.entries));
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        FinishedPack {
            id: PackId::of_content(&self.buf),
            bytes: self.buf,
            entries: self.entries,
        }
    }
}

/// What a thread reading packs reuses from pack to pack: the bytes read, the blob being
/// decoded (opened in place within them) and the zstd context. Fresh allocations for each
/// would cost a page fault per 4 KiB.
pub struct PackBuffers {
    pub plain: Vec<u8>,
    pub decoder: codec::Decoder,
}

impl PackBuffers {
    pub fn new() -> Result<Self> {
        Ok(Self {
            plain: Vec::new(),
            decoder: codec::Decoder::new()?,
        })
    }
}

pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

/// A pack header's plaintext (sealed before it is appended to the pack).
pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut header = Vec::with_capacity(9 + entries.len() * ENTRY_LEN);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    header.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        e.write_to(&mut header);
    }
    header
}

/// Length of the sealed header, read from the pack's last four bytes.
pub fn header_length(tail: &[u8]) -> Result<u32> {
    let b: [u8; 4] = tail
        .get(tail.len().saturating_sub(4)..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::corrupt("pack shorter than its length field"))?;
    Ok(u32::from_le_bytes(b))
}

/// Parses the sealed header (without the trailing length field). `pack_len` bounds the offsets.
pub fn parse_header(key: &MasterKey, sealed: &[u8], pack_len: u64) -> Result<Vec<PackEntry>> {
    let plain = codec::decode(key, sealed, None)?;
    decode_header(&plain, pack_len.saturating_sub(sealed.len() as u64 + 4))
}

/// Decodes an opened header; every entry must lie within the first `body_len` bytes.
pub fn decode_header(plain: &[u8], body_len: u64) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(plain);
    if &r.array::<4>()? != MAGIC {
        return Err(Error::corrupt("pack header magic mismatch"));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(Error::corrupt(format!(
            "pack header version {version} is not supported"
        )));
    }
    let count = r.u32()? as usize;
    if count.saturating_mul(ENTRY_LEN) != r.remaining() {
        return Err(Error::corrupt(
            "pack header length does not match its entry count",
        ));
    }
    (0..count)
        .map(|_| {
            let e = PackEntry::read_from(&mut r)?;
            if e.offset as u64 + e.length as u64 > body_len {
                return Err(Error::corrupt("pack header points past the pack's end"));
            }
            Ok(e)
        })
        .collect()
}

/// Parses a whole pack's header from its bytes.
pub fn read_header(key: &MasterKey, pack: &[u8]) -> Result<Vec<PackEntry>> {
    let hlen = header_length(pack)? as usize;
    let start = pack
        .len()
        .checked_sub(4 + hlen)
        .ok_or_else(|| Error::corrupt("pack header length exceeds pack size"))?;
    parse_header(key, &pack[start..pack.len() - 4], pack.len() as u64)
}

/// A bounds-checked little-endian reader for the binary formats.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| Error::corrupt("unexpected end of binary record"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.data[self.pos..];
        self.pos = self.data.len();
        s
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_corruption() {
        let key = MasterKey::generate();
        let mut b = PackBuilder::default();
        let blobs: Vec<Vec<u8>> = (0..5u8)
            .map(|i| key.seal(&vec![i; 100 + i as usize]))
            .collect();
        for (i, blob) in blobs.iter().enumerate() {
            b.add(BlobKind::Data, ChunkId([i as u8; 32]), blob, 100 + i as u32);
        }
        let pack = b.finish(&key);
        assert_eq!(pack.id, PackId::of_content(&pack.bytes));
        let entries = read_header(&key, &pack.bytes).expect("header parses");
        assert_eq!(entries, pack.entries);
        for (e, blob) in entries.iter().zip(&blobs) {
            let s = e.offset as usize;
            assert_eq!(&pack.bytes[s..s + e.length as usize], &blob[..]);
        }
        let mut bad = pack.bytes.clone();
        let n = bad.len();
        bad[n - 10] ^= 0xff;
        assert!(read_header(&key, &bad).is_err());
        assert!(read_header(&key, &pack.bytes[..3]).is_err());
        let mut huge_len = pack.bytes.clone();
        huge_len[n - 1] = 0xff;
        assert!(read_header(&key, &huge_len).is_err());
    }
}
