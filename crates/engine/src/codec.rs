//! Compression then encryption of everything stored: blobs inside packs and whole objects
//! (snapshots, index files, locks, config). The plaintext under the seal starts with one byte
//! that says how the rest is encoded: 0 = stored as is, 1 = zstd frame.

use crate::crypto::MasterKey;
use crate::error::{Error, Result};

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Objects other than blobs are never larger than this once decompressed; a larger claim is
/// treated as corruption instead of being allocated.
const MAX_OBJECT_SIZE: usize = 1 << 30;

/// Compresses and seals; reuses its zstd context across calls (one per worker thread).
pub struct Encoder {
    compressor: zstd::bulk::Compressor<'static>,
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(level: i32) -> Result<Self> {
        let compressor = zstd::bulk::Compressor::new(level)
            .map_err(|e| Error::invalid(format!("zstd level {level}: {e}")))?;
        Ok(Self {
            compressor,
            scratch: Vec::new(),
        })
    }

    /// Returns the sealed form of `data`.
    pub fn encode(&mut self, key: &MasterKey, data: &[u8]) -> Vec<u8> {
        // zstd writes from the start of the buffer it is given: leave the marker byte out of it.
        let bound = zstd::zstd_safe::compress_bound(data.len());
        self.scratch.resize(bound + 1, 0);
        self.scratch[0] = ZSTD;
        let compressed = match self
            .compressor
            .compress_to_buffer(data, &mut self.scratch[1..])
        {
            Ok(n) if n < data.len() => {
                self.scratch.truncate(n + 1);
                true
            }
            _ => false,
        };
        if !compressed {
            self.scratch.clear();
            self.scratch.push(RAW);
            self.scratch.extend_from_slice(data);
        }
        key.seal(&self.scratch)
    }
}

/// Opens and decompresses. `expected_len` is the plaintext length when the caller knows it
/// (blobs); otherwise an upper bound protects against decompression bombs.
pub fn decode(key: &MasterKey, sealed: &[u8], expected_len: Option<usize>) -> Result<Vec<u8>> {
    let plain = key.open(sealed)?;
    let (&marker, body) = plain
        .split_first()
        .ok_or_else(|| Error::corrupt("empty object"))?;
    let out = match marker {
        RAW => body.to_vec(),
        ZSTD => {
            let limit = expected_len.unwrap_or(MAX_OBJECT_SIZE);
            zstd::bulk::decompress(body, limit)
                .map_err(|e| Error::corrupt(format!("zstd frame does not decode: {e}")))?
        }
        other => return Err(Error::corrupt(format!("unknown encoding byte {other}"))),
    };
    if let Some(len) = expected_len {
        if out.len() != len {
            return Err(Error::corrupt(format!(
                "decoded {} bytes, index says {len}",
                out.len()
            )));
        }
    }
    Ok(out)
}

/// Convenience for one-off objects (snapshots, index files, locks).
pub fn encode_object(key: &MasterKey, data: &[u8]) -> Vec<u8> {
    match Encoder::new(3) {
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
        let mut enc = Encoder::new(3).expect("level 3");
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
}
