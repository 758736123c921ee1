//! Content-defined chunking (FastCDC-style gear hash with normalised chunking).
//!
//! The gear table is derived from the repository key, so chunk boundaries (and therefore chunk
//! sizes) do not reveal content to someone who only sees the repository. Boundaries depend only
//! on the content and the table, so an insertion shifts at most the chunks around it.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::buffers::BufferPool;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl ChunkerParams {
    /// For file contents and dumps: 512 KiB .. 1 MiB average .. 8 MiB.
    pub const DATA: ChunkerParams = ChunkerParams {
        min_size: 512 * 1024,
        avg_size: 1024 * 1024,
        max_size: 8 * 1024 * 1024,
    };
    /// For the item stream (metadata): small chunks so one changed file costs little.
    pub const TREE: ChunkerParams = ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 1024 * 1024,
    };

    pub fn validate(&self) -> Result<()> {
        let ok = self.min_size >= 64
            && self.avg_size.is_power_of_two()
            && self.min_size < self.avg_size
            && self.avg_size < self.max_size
            && self.max_size <= 64 * 1024 * 1024;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "invalid chunker parameters {self:?}"
            )))
        }
    }
}

#[derive(Clone)]
pub struct Chunker {
    gear: Box<[u64; 256]>,
    /// Harder mask (more bits) used before the average size is reached.
    mask_small: u64,
    /// Easier mask used after it, which pulls sizes towards the average.
    mask_large: u64,
    params: ChunkerParams,
}

impl Chunker {
    pub fn new(params: ChunkerParams, seed: &[u8; 32]) -> Self {
        let mut gear = Box::new([0u64; 256]);
        let mut xof = blake3::Hasher::new_keyed(seed).finalize_xof();
        for g in gear.iter_mut() {
            let mut b = [0u8; 8];
            xof.fill(&mut b);
            *g = u64::from_le_bytes(b);
        }
        let bits = params.avg_size.trailing_zeros();
        // The gear hash shifts left, so the top bits mix the most recent 64 bytes.
        let top = |n: u32| !0u64 << (64 - n);
        Self {
            gear,
            mask_small: top(bits + 2),
            mask_large: top(bits - 2),
            params,
        }
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the chunk that starts at `data[0]`, for a caller that holds the whole input
    /// (or at least `max_size` bytes of it).
    pub fn cut(&self, data: &[u8]) -> usize {
        self.scan(&mut Cut::default(), data).unwrap_or(data.len())
    }

    /// Scans `data`, the next bytes of the chunk `cut` describes. If the chunk ends within
    /// `data`, returns how many of its bytes belong to it and resets `cut` for the next chunk;
    /// otherwise all of `data` belongs to it and `None` is returned.
    pub fn scan(&self, cut: &mut Cut, data: &[u8]) -> Option<usize> {
        let (min, avg, max) = (
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
        );
        // The first `min` bytes of a chunk are not hashed; bytes up to the average size must
        // meet the harder mask, later ones the easier; a chunk ends at `max` regardless.
        let mut i = min.saturating_sub(cut.len).min(data.len());
        let mut h = cut.hash;
        for (limit, mask) in [(avg, self.mask_small), (max, self.mask_large)] {
            let end = data.len().min(limit.saturating_sub(cut.len));
            while i < end {
                h = (h << 1).wrapping_add(self.gear[usize::from(data[i])]);
                i += 1;
                if h & mask == 0 {
                    *cut = Cut::default();
                    return Some(i);
                }
            }
        }
        if cut.len + i == max {
            *cut = Cut::default();
            return Some(i);
        }
        cut.len += i;
        cut.hash = h;
        None
    }
}

/// How far a chunk has been scanned: its length so far and the gear hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cut {
    len: usize,
    hash: u64,
}

/// Bytes read from a source at a time.
const READ_SIZE: usize = 1 << 20;

/// Splits readers into chunks. Data is read through one reusable buffer and copied once,
/// into the chunk's own buffer (taken from a pool the consumer hands buffers back to), so
/// memory stays bounded whatever the input size.
pub struct Splitter {
    chunker: Chunker,
    buffers: BufferPool,
    buf: Vec<u8>,
}

impl Splitter {
    pub fn new(chunker: Chunker, buffers: BufferPool) -> Self {
        Self {
            chunker,
            buffers,
            buf: Vec::new(),
        }
    }

    /// Calls `emit` with each chunk of `reader` in order; returns the number of bytes read.
    pub fn split<R: Read>(
        &mut self,
        mut reader: R,
        mut emit: impl FnMut(Vec<u8>) -> Result<()>,
    ) -> Result<u64> {
        self.buf.resize(READ_SIZE, 0);
        let (mut chunk, mut cut, mut total) = (self.buffers.take(), Cut::default(), 0u64);
        loop {
            let got = read_retrying(&mut reader, &mut self.buf)?;
            if got == 0 {
                break;
            }
            total += got as u64;
            let mut piece = &self.buf[..got];
            while let Some(n) = self.chunker.scan(&mut cut, piece) {
                chunk.extend_from_slice(&piece[..n]);
                emit(std::mem::replace(&mut chunk, self.buffers.take()))?;
                piece = &piece[n..];
            }
            chunk.extend_from_slice(piece);
        }
        if chunk.is_empty() {
            self.buffers.give(chunk);
        } else {
            emit(chunk)?;
        }
        Ok(total)
    }
}

fn read_retrying<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn small() -> Chunker {
        let p = ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        };
        Chunker::new(p, &[7u8; 32])
    }

    fn chunks(c: &Chunker, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        Splitter::new(c.clone(), BufferPool::new(0, 0))
            .split(data, |ch| {
                out.push(ch);
                Ok(())
            })
            .expect("split");
        out
    }

    #[test]
    fn deterministic_bounded_and_lossless() {
        let c = small();
        let data = pseudo_random(1 << 20, 1);
        let a = chunks(&c, &data);
        assert_eq!(a, chunks(&c, &data));
        assert_eq!(a.concat(), data);
        for ch in &a[..a.len() - 1] {
            assert!(ch.len() >= 1024 && ch.len() <= 16384, "size {}", ch.len());
        }
        let avg = data.len() / a.len();
        assert!((2048..=8192).contains(&avg), "average {avg}");
    }

    /// Gives out its data a few bytes at a time, in varying amounts.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = (self.1 * 7 + 3) % 5000;
            let n = self.0.len().min(buf.len()).min(self.1 + 1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn reading_piecemeal_cuts_where_the_whole_input_does() {
        let c = small();
        // Random data, then a run of one byte that never meets the mask (so chunks end at the
        // maximum size), then random data again.
        let never_cut = (0..=255u8)
            .find(|&b| c.cut(&[b; 40_000]) == 16384)
            .expect("some byte value never cuts");
        let mut data = pseudo_random(300_000, 4);
        data.extend_from_slice(&[never_cut; 100_000]);
        data.extend_from_slice(&pseudo_random(50_000, 5));
        let mut whole = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = c.cut(rest);
            whole.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        assert!(whole.iter().filter(|ch| ch.len() == 16384).count() >= 5);
        let mut piecemeal = Vec::new();
        let read = Splitter::new(c.clone(), BufferPool::new(0, 0))
            .split(Trickle(&data, 0), |ch| {
                piecemeal.push(ch);
                Ok(())
            })
            .expect("split");
        assert_eq!(read, data.len() as u64);
        assert_eq!(piecemeal, whole);
    }

    #[test]
    fn insertion_only_changes_nearby_chunks() {
        let c = small();
        let data = pseudo_random(1 << 20, 2);
        let mut edited = data.clone();
        edited.splice(500_000..500_000, b"inserted bytes".iter().copied());
        let a: std::collections::HashSet<_> = chunks(&c, &data).into_iter().collect();
        let b = chunks(&c, &edited);
        let shared = b.iter().filter(|ch| a.contains(*ch)).count();
        assert!(
            shared + 3 >= b.len(),
            "only {shared} of {} chunks shared",
            b.len()
        );
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(1 << 18, 3);
        let p = small().params();
        let a = chunks(&Chunker::new(p, &[1u8; 32]), &data);
        let b = chunks(&Chunker::new(p, &[2u8; 32]), &data);
        assert_ne!(a, b);
    }

    #[test]
    fn empty_and_tiny_inputs() {
        let c = small();
        assert!(chunks(&c, b"").is_empty());
        assert_eq!(chunks(&c, b"abc"), vec![b"abc".to_vec()]);
    }
}
