//! Compression then encryption of everything stored: blobs inside packs and whole objects
//! (snapshots, index files, locks, config). The plaintext under the seal starts with one byte
//! that says how the rest is encoded: 0 = stored as is, 1 = zstd frame, 2 = zstd frame of the
//! data split into four byte lanes (repository format 2; see [`split_lanes`]).

use crate::crypto::MasterKey;
use crate::error::{Error, Result};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const LANES: u8 = 2;

/// How a repository's data is encoded.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    pub level: i32,
    /// Arrays of 4-byte numbers may be split into byte lanes before compression (format 2).
    pub lanes: bool,
}

impl Codec {
    /// For objects other than blobs: JSON and index tables, compressed well.
    const OBJECTS: Codec = Codec {
        level: 3,
        lanes: false,
    };
}

/// Objects other than blobs are never larger than this once decompressed; a larger claim is
/// treated as corruption instead of being allocated.
pub(crate) const MAX_OBJECT_SIZE: usize = 1 << 30;

/// Compresses and seals; reuses its zstd context across calls (one per worker thread).
pub struct Encoder {
    compressor: zstd::bulk::Compressor<'static>,
    lanes: bool,
    split: Vec<u8>,
}

impl Encoder {
    pub fn new(codec: Codec) -> Result<Self> {
        let level = codec.level;
        let compressor = zstd::bulk::Compressor::new(level)
            .map_err(|e| Error::invalid(format!("zstd level {level}: {e}")))?;
        Ok(Self {
            compressor,
            lanes: codec.lanes,
            split: Vec::new(),
        })
    }

    /// Returns the sealed form of `data`.
    pub fn encode(&mut self, key: &MasterKey, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(key, data, &mut out);
        out
    }

    /// Writes the sealed form of `data` into `out` (a reused buffer; cleared first). It is
    /// compressed straight into `out` and encrypted there.
    pub fn encode_into(&mut self, key: &MasterKey, data: &[u8], out: &mut Vec<u8>) {
        let (marker, input) = if self.lanes && looks_like_words(data) {
            split_lanes(data, &mut self.split);
            (LANES, &self.split[..])
        } else {
            (ZSTD, data)
        };
        let compressor = &mut self.compressor;
        key.seal_into(out, |buf| {
            let start = buf.len();
            buf.resize(start + 1 + zstd::zstd_safe::compress_bound(input.len()), 0);
            buf[start] = marker;
            match compressor.compress_to_buffer(input, &mut buf[start + 1..]) {
                Ok(n) if n < data.len() => buf.truncate(start + 1 + n),
                _ => {
                    buf.truncate(start);
                    buf.push(RAW);
                    buf.extend_from_slice(data);
                }
            }
        });
    }
}

/// Whether `data` looks like an array of 4-byte numbers (float32 embeddings, int32 columns):
/// in a sample, one byte position in four takes few distinct values (a float's exponent)
/// while another takes nearly all (its low mantissa bits). Text has no such split; random
/// data has many values everywhere.
fn looks_like_words(data: &[u8]) -> bool {
    const SAMPLE: usize = 16 * 1024;
    if data.len() < 2 * SAMPLE {
        return false;
    }
    let start = (data.len() / 2) & !3;
    let mut seen = [[false; 256]; 4];
    for (i, &b) in data[start..start + SAMPLE].iter().enumerate() {
        seen[i & 3][usize::from(b)] = true;
    }
    let distinct = seen.map(|lane| lane.iter().filter(|&&s| s).count());
    let (fewest, most) = (distinct.iter().min(), distinct.iter().max());
    matches!((fewest, most), (Some(&f), Some(&m)) if f <= 48 && m >= 192)
}

/// Rearranges `data` as every 4-byte word's first byte, then every second byte, then the
/// third, then the fourth, followed by the `len % 4` bytes left over: bytes that vary alike sit
/// together, which zstd compresses better and faster.
fn split_lanes(data: &[u8], out: &mut Vec<u8>) {
    let n = data.len() / 4;
    out.clear();
    out.resize(data.len(), 0);
    let (lanes, tail) = out.split_at_mut(4 * n);
    let (l0, rest) = lanes.split_at_mut(n);
    let (l1, rest) = rest.split_at_mut(n);
    let (l2, l3) = rest.split_at_mut(n);
    for ((w, (a, b)), (c, d)) in data
        .chunks_exact(4)
        .zip(l0.iter_mut().zip(l1.iter_mut()))
        .zip(l2.iter_mut().zip(l3.iter_mut()))
    {
        (*a, *b, *c, *d) = (w[0], w[1], w[2], w[3]);
    }
    tail.copy_from_slice(&data[4 * n..]);
}

/// The inverse of [`split_lanes`], into `out` (cleared first).
fn join_lanes(split: &[u8], out: &mut Vec<u8>) {
    let n = split.len() / 4;
    out.clear();
    out.resize(split.len(), 0);
    let (l0, rest) = split.split_at(n);
    let (l1, rest) = rest.split_at(n);
    let (l2, rest) = rest.split_at(n);
    let (l3, tail) = rest.split_at(n);
    let (words, out_tail) = out.split_at_mut(4 * n);
    for ((w, (a, b)), (c, d)) in words
        .chunks_exact_mut(4)
        .zip(l0.iter().zip(l1))
        .zip(l2.iter().zip(l3))
    {
        w.copy_from_slice(&[*a, *b, *c, *d]);
    }
    out_tail.copy_from_slice(tail);
}

/// Opens and decompresses; reuses its zstd context and lane buffer across calls.
pub struct Decoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    split: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Result<Self> {
        let decompressor = zstd::bulk::Decompressor::new()
            .map_err(|e| Error::invalid(format!("zstd decompressor: {e}")))?;
        Ok(Self {
            decompressor,
            split: Vec::new(),
        })
    }

    /// Opens `sealed` where it lies (it is overwritten) and writes its plaintext, at most
    /// `limit` bytes, into `out` (cleared first). A frame that would decode to more is
    /// corruption, never an allocation.
    pub fn decode_into(
        &mut self,
        key: &MasterKey,
        sealed: &mut [u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let plain = key.open_in_place(sealed)?;
        let (&marker, body) = plain
            .split_first()
            .ok_or_else(|| Error::corrupt("empty object"))?;
        out.clear();
        match marker {
            RAW => out.extend_from_slice(body),
            ZSTD => self.decompress(body, limit, out)?,
            LANES => {
                let mut split = std::mem::take(&mut self.split);
                let done = self.decompress(body, limit, &mut split);
                if done.is_ok() {
                    join_lanes(&split, out);
                }
                self.split = split;
                done?
            }
            other => return Err(Error::corrupt(format!("unknown encoding byte {other}"))),
        }
        Ok(())
    }

    fn decompress(&mut self, frame: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<()> {
        // Frames record their size (the encoder always writes it); room for that, not for the
        // limit, is reserved. A frame that lies about it fails to fit and is reported.
        let size = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) => n,
            _ => limit as u64,
        };
        if size > limit as u64 {
            return Err(Error::corrupt(format!(
                "zstd frame claims {size} bytes, more than the {limit} expected"
            )));
        }
        out.clear();
        out.reserve(size as usize);
        self.decompressor
            .decompress_to_buffer(frame, out)
            .map_err(|e| Error::corrupt(format!("zstd frame does not decode: {e}")))?;
        Ok(())
    }
}

/// Opens and decompresses. `expected_len` is the plaintext length when the caller knows it
/// (blobs); otherwise an upper bound protects against decompression bombs.
pub fn decode(key: &MasterKey, sealed: &[u8], expected_len: Option<usize>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    Decoder::new()?.decode_into(
        key,
        &mut sealed.to_vec(),
        expected_len.unwrap_or(MAX_OBJECT_SIZE),
        &mut out,
    )?;
    check_len(&out, expected_len)?;
    Ok(out)
}

/// A blob's plaintext must be as long as the index says.
pub fn check_len(plain: &[u8], expected_len: Option<usize>) -> Result<()> {
    match expected_len {
        Some(len) if plain.len() != len => Err(Error::corrupt(format!(
            "decoded {} bytes, index says {len}",
            plain.len()
        ))),
        _ => Ok(()),
    }
}

/// Convenience for one-off objects (snapshots, index files, locks).
pub fn encode_object(key: &MasterKey, data: &[u8]) -> Vec<u8> {
    match Encoder::new(Codec::OBJECTS) {
        Ok(mut enc) => enc.encode(key, data),
        Err(_) => {
            let mut raw = Vec::with_capacity(data.len() + 1);
            raw.push(RAW);
            raw.extend_from_slice(data);
            key.seal(&raw)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_compressible_and_random() {
        let key = MasterKey::generate();
        let mut enc = encoder(3, true);
        let text = b"hello hello hello hello hello hello".repeat(100);
        let sealed = enc.encode(&key, &text);
        assert!(sealed.len() < text.len() / 4, "compresses text");
        assert_eq!(
            decode(&key, &sealed, Some(text.len())).expect("decodes"),
            text
        );
        let random: Vec<u8> = (0..5000).map(|_| rand::random()).collect();
        let sealed = enc.encode(&key, &random);
        assert_eq!(decode(&key, &sealed, None).expect("decodes"), random);
        assert!(
            decode(&key, &sealed, Some(10)).is_err(),
            "length mismatch is corruption"
        );
    }

    fn encoder(level: i32, lanes: bool) -> Encoder {
        Encoder::new(Codec { level, lanes }).expect("encoder")
    }

    /// Embedding-like float32 values in [-0.1, 0.1], plus an odd tail.
    fn floats() -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut floats: Vec<u8> = (0..100_003)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 * 0.2 - 0.1).to_le_bytes()
            })
            .collect();
        floats.extend_from_slice(&[7, 8, 9]);
        floats
    }

    #[test]
    fn decoder_reuses_its_buffers_and_refuses_frames_over_the_limit() {
        let key = MasterKey::generate();
        let mut enc = encoder(1, true);
        let mut dec = Decoder::new().expect("decoder");
        let mut out = Vec::new();
        let text = b"SELECT 1; -- text that compresses\n".repeat(3000);
        let random: Vec<u8> = (0..70_000).map(|_| rand::random()).collect();
        for data in [floats(), text.clone(), random, floats()] {
            let mut sealed = enc.encode(&key, &data);
            dec.decode_into(&key, &mut sealed, data.len(), &mut out)
                .expect("decodes");
            assert_eq!(out, data);
        }
        let mut sealed = enc.encode(&key, &text);
        let err = dec
            .decode_into(&key, &mut sealed, text.len() - 1, &mut out)
            .expect_err("a frame larger than the limit is refused");
        assert!(err.to_string().contains("more than"), "{err}");
        let mut sealed = enc.encode(&key, &text);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(dec
            .decode_into(&key, &mut sealed, text.len(), &mut out)
            .is_err());
    }

    #[test]
    fn arrays_of_floats_are_split_into_lanes_and_back() {
        let key = MasterKey::generate();
        let floats = floats();
        assert!(looks_like_words(&floats));
        let (mut split, mut joined) = (Vec::new(), Vec::new());
        split_lanes(&floats, &mut split);
        join_lanes(&split, &mut joined);
        assert_eq!(joined, floats);
        let mut plain = encoder(3, false);
        let mut lanes = encoder(3, true);
        let (a, b) = (plain.encode(&key, &floats), lanes.encode(&key, &floats));
        assert!(b.len() < a.len(), "lanes {} vs plain {}", b.len(), a.len());
        assert_eq!(
            decode(&key, &b, Some(floats.len())).expect("decodes"),
            floats
        );
        // Text and random bytes are not mistaken for words.
        let text = b"INSERT INTO messages VALUES (1, 'hello there', 0.25);\n".repeat(2000);
        assert!(!looks_like_words(&text));
        let random: Vec<u8> = (0..100_000).map(|_| rand::random()).collect();
        assert!(!looks_like_words(&random));
    }
}
