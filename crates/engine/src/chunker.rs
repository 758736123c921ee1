//! Content-defined chunking (FastCDC-style gear hash with normalised chunking).
//!
//! The gear table is derived from the repository key, so chunk boundaries (and therefore chunk
//! sizes) do not reveal content to someone who only sees the repository. Boundaries depend only
//! on the content and the table, so an insertion shifts at most the chunks around it.

use std::io::Read;

use serde::{Deserialize, Serialize};

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

    /// Length of the chunk that starts at `data[0]`. The caller passes at least `max_size`
    /// bytes unless the input ends sooner.
    pub fn cut(&self, data: &[u8]) -> usize {
        let min = self.params.min_size as usize;
        let n = data.len();
        if n <= min {
            return n;
        }
        let normal = n.min(self.params.avg_size as usize);
        let end = n.min(self.params.max_size as usize);
        let mut h: u64 = 0;
        let mut i = min;
        while i < normal {
            h = (h << 1).wrapping_add(self.gear[data[i] as usize]);
            if h & self.mask_small == 0 {
                return i + 1;
            }
            i += 1;
        }
        while i < end {
            h = (h << 1).wrapping_add(self.gear[data[i] as usize]);
            if h & self.mask_large == 0 {
                return i + 1;
            }
            i += 1;
        }
        end
    }
}

/// Splits readers into chunks with one reusable buffer of twice the maximum chunk size, so
/// memory stays bounded whatever the input size.
pub struct Splitter {
    chunker: Chunker,
    buf: Vec<u8>,
}

impl Splitter {
    pub fn new(chunker: Chunker) -> Self {
        Self {
            chunker,
            buf: Vec::new(),
        }
    }

    /// Calls `emit` with each chunk of `reader` in order; returns the number of bytes read.
    pub fn split<R: Read>(
        &mut self,
        mut reader: R,
        mut emit: impl FnMut(Vec<u8>) -> Result<()>,
    ) -> Result<u64> {
        let max = self.chunker.params.max_size as usize;
        if self.buf.len() < 2 * max {
            self.buf = vec![0u8; 2 * max];
        }
        let (mut start, mut end, mut eof, mut total) = (0usize, 0usize, false, 0u64);
        loop {
            if !eof && end - start < max {
                if self.buf.len() - end < max {
                    self.buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                while !eof && end - start < max {
                    let got = read_retrying(&mut reader, &mut self.buf[end..])?;
                    end += got;
                    eof = got == 0;
                }
            }
            if start == end {
                return Ok(total);
            }
            let cut = self.chunker.cut(&self.buf[start..end]);
            total += cut as u64;
            emit(self.buf[start..start + cut].to_vec())?;
            start += cut;
        }
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
        Splitter::new(c.clone())
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
