//! The compact encodings Redis packs small values into, decoded from the string blobs an RDB
//! stores them in: LZF-compressed strings, intsets, ziplists (Redis before 7), listpacks
//! (Redis 7) and zipmaps (Redis before 2.6). Every decoder checks bounds: a damaged blob is an
//! error, never a panic.

use crate::error::{Error, Result};

fn damaged(what: &str) -> Error {
    Error::corrupt(format!("damaged {what} in the RDB"))
}

/// One element of a ziplist or listpack: compact encodings keep small integers as integers.
#[derive(Debug, Clone, PartialEq)]
pub enum Element<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl Element<'_> {
    /// The element as Redis shows it to clients: integers in decimal.
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Element::Int(i) => i.to_string().into_bytes(),
            Element::Bytes(b) => b.to_vec(),
        }
    }

    pub fn as_int(&self) -> Result<i64> {
        match self {
            Element::Int(i) => Ok(*i),
            Element::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| damaged("stream entry (expected an integer)")),
        }
    }
}

/// The most LZF output one input byte can stand for: a 3-byte back reference copies up to 264.
const LZF_MAX_RATIO: usize = 88;

/// LZF decompression into a buffer of the length the RDB declares. A declared length that the
/// input could not produce is damage, not an allocation.
pub fn lzf_decompress(input: &[u8], expected_len: usize) -> Result<Vec<u8>> {
    if expected_len > input.len().saturating_mul(LZF_MAX_RATIO).saturating_add(32) {
        return Err(damaged(
            "LZF string (declared longer than its data can expand to)",
        ));
    }
    let mut out = Vec::with_capacity(expected_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            // A literal run of ctrl + 1 bytes.
            let run = ctrl + 1;
            let lit = input.get(i..i + run).ok_or_else(|| damaged("LZF string"))?;
            out.extend_from_slice(lit);
            i += run;
        } else {
            // A back reference: length in the top 3 bits (7 means one more length byte).
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or_else(|| damaged("LZF string"))? as usize;
                i += 1;
            }
            let low = *input.get(i).ok_or_else(|| damaged("LZF string"))? as usize;
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let start = out
                .len()
                .checked_sub(back)
                .ok_or_else(|| damaged("LZF string"))?;
            // Overlapping copies are how LZF encodes runs: copy byte by byte.
            for k in 0..len + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > expected_len {
            return Err(damaged("LZF string"));
        }
    }
    if out.len() != expected_len {
        return Err(damaged("LZF string"));
    }
    Ok(out)
}

/// An intset: sorted integers of one width.
pub fn intset(blob: &[u8]) -> Result<Vec<i64>> {
    let header = blob.get(..8).ok_or_else(|| damaged("intset"))?;
    let width = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) || blob.len() != 8 + width * count {
        return Err(damaged("intset"));
    }
    Ok(blob[8..]
        .chunks_exact(width)
        .map(|c| match width {
            2 => i16::from_le_bytes([c[0], c[1]]) as i64,
            4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Little-endian signed integer of `bytes.len()` bytes (1 to 8).
fn int_le(bytes: &[u8]) -> i64 {
    let mut v: i64 = 0;
    for (k, b) in bytes.iter().enumerate() {
        v |= (*b as i64) << (8 * k);
    }
    let bits = 8 * bytes.len() as u32;
    if bits < 64 {
        // Sign-extend.
        let shift = 64 - bits;
        v = (v << shift) >> shift;
    }
    v
}

/// A listpack's elements in order.
pub fn listpack(blob: &[u8]) -> Result<Vec<Element<'_>>> {
    let bad = || damaged("listpack");
    let header = blob.get(..6).ok_or_else(bad)?;
    let total = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if total != blob.len() || blob.last() != Some(&0xff) {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut i = 6;
    loop {
        let b = *blob.get(i).ok_or_else(bad)?;
        if b == 0xff {
            break;
        }
        let start = i;
        let (element, body_end) = if b & 0x80 == 0 {
            (Element::Int((b & 0x7f) as i64), i + 1)
        } else if b & 0xc0 == 0x80 {
            let len = (b & 0x3f) as usize;
            let s = blob.get(i + 1..i + 1 + len).ok_or_else(bad)?;
            (Element::Bytes(s), i + 1 + len)
        } else if b & 0xe0 == 0xc0 {
            let lo = *blob.get(i + 1).ok_or_else(bad)? as i64;
            let v = (((b & 0x1f) as i64) << 8) | lo;
            // 13-bit two's complement.
            let v = if v >= 1 << 12 { v - (1 << 13) } else { v };
            (Element::Int(v), i + 2)
        } else if b & 0xf0 == 0xe0 {
            let lo = *blob.get(i + 1).ok_or_else(bad)? as usize;
            let len = (((b & 0x0f) as usize) << 8) | lo;
            let s = blob.get(i + 2..i + 2 + len).ok_or_else(bad)?;
            (Element::Bytes(s), i + 2 + len)
        } else {
            let int_width = match b {
                0xf1 => 2,
                0xf2 => 3,
                0xf3 => 4,
                0xf4 => 8,
                0xf0 => 0,
                _ => return Err(bad()),
            };
            if int_width == 0 {
                let l = blob.get(i + 1..i + 5).ok_or_else(bad)?;
                let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                let s = blob.get(i + 5..i + 5 + len).ok_or_else(bad)?;
                (Element::Bytes(s), i + 5 + len)
            } else {
                let v = blob.get(i + 1..i + 1 + int_width).ok_or_else(bad)?;
                (Element::Int(int_le(v)), i + 1 + int_width)
            }
        };
        // The back-length: the entry's size again, 7 bits per byte, for reverse walks.
        let entry_len = body_end - start;
        let backlen_size = match entry_len {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        i = body_end + backlen_size;
        if i > blob.len() {
            return Err(bad());
        }
        out.push(element);
    }
    let declared = u16::from_le_bytes([header[4], header[5]]);
    // 65535 means "count too large to store": walk the entries instead.
    if declared != u16::MAX && declared as usize != out.len() {
        return Err(bad());
    }
    Ok(out)
}

/// A ziplist's elements in order (lists, hashes and sorted sets before Redis 7).
pub fn ziplist(blob: &[u8]) -> Result<Vec<Element<'_>>> {
    let bad = || damaged("ziplist");
    let header = blob.get(..10).ok_or_else(bad)?;
    let total = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if total != blob.len() || blob.last() != Some(&0xff) {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut i = 10;
    loop {
        let first = *blob.get(i).ok_or_else(bad)?;
        if first == 0xff {
            break;
        }
        // The previous entry's length: one byte, or 0xfe and four.
        i += if first == 0xfe { 5 } else { 1 };
        let b = *blob.get(i).ok_or_else(bad)?;
        let element = match b >> 6 {
            0 => {
                let len = (b & 0x3f) as usize;
                let s = blob.get(i + 1..i + 1 + len).ok_or_else(bad)?;
                i += 1 + len;
                Element::Bytes(s)
            }
            1 => {
                let lo = *blob.get(i + 1).ok_or_else(bad)? as usize;
                let len = (((b & 0x3f) as usize) << 8) | lo;
                let s = blob.get(i + 2..i + 2 + len).ok_or_else(bad)?;
                i += 2 + len;
                Element::Bytes(s)
            }
            2 => {
                let l = blob.get(i + 1..i + 5).ok_or_else(bad)?;
                let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                let s = blob.get(i + 5..i + 5 + len).ok_or_else(bad)?;
                i += 5 + len;
                Element::Bytes(s)
            }
            _ => {
                let width = match b {
                    0xc0 => 2,
                    0xd0 => 4,
                    0xe0 => 8,
                    0xf0 => 3,
                    0xfe => 1,
                    0xf1..=0xfd => 0,
                    _ => return Err(bad()),
                };
                if width == 0 {
                    // Immediate 4-bit value, stored plus one.
                    i += 1;
                    Element::Int((b & 0x0f) as i64 - 1)
                } else {
                    let v = blob.get(i + 1..i + 1 + width).ok_or_else(bad)?;
                    i += 1 + width;
                    Element::Int(int_le(v))
                }
            }
        };
        out.push(element);
    }
    Ok(out)
}

/// A zipmap's field/value pairs (hashes written by Redis before 2.6).
pub fn zipmap(blob: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = || damaged("zipmap");
    let mut i = 1; // the count byte, unreliable above 253
    let len_at = |i: &mut usize| -> Result<Option<usize>> {
        let b = *blob.get(*i).ok_or_else(bad)?;
        *i += 1;
        Ok(match b {
            0xff => None,
            0xfe => {
                let l = blob.get(*i..*i + 4).ok_or_else(bad)?;
                *i += 4;
                Some(u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
            }
            n => Some(n as usize),
        })
    };
    let mut out = Vec::new();
    while let Some(klen) = len_at(&mut i)? {
        let key = blob.get(i..i + klen).ok_or_else(bad)?.to_vec();
        i += klen;
        let vlen = len_at(&mut i)?.ok_or_else(bad)?;
        let free = *blob.get(i).ok_or_else(bad)? as usize;
        i += 1;
        let value = blob.get(i..i + vlen).ok_or_else(bad)?.to_vec();
        i += vlen + free;
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_lzf_length_its_data_cannot_reach_is_damage_not_an_allocation() {
        assert!(super::lzf_decompress(&[0, b'a'], 0x62d9_d9d9_d9d9_d9ff).is_err());
        assert_eq!(
            super::lzf_decompress(&[2, b'a', b'b', b'c'], 3).expect("lzf"),
            b"abc"
        );
    }

    use super::*;

    /// A listpack built by hand from encoded entries (each given without its back-length).
    fn build_listpack(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(e);
            let n = e.len();
            assert!(n < 128, "test entries are small");
            body.push(n as u8);
        }
        let total = 6 + body.len() + 1;
        let mut lp = (total as u32).to_le_bytes().to_vec();
        lp.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        lp.extend_from_slice(&body);
        lp.push(0xff);
        lp
    }

    #[test]
    fn listpack_decodes_every_encoding() {
        let lp = build_listpack(&[
            vec![5],                               // 7-bit uint
            vec![0x80 | 3, b'a', b'b', b'c'],      // 6-bit string
            vec![0xc0 | 0x1f, 0xff],               // 13-bit: -1
            vec![0xe0, 2, b'x', b'y'],             // 12-bit string
            vec![0xf1, 0x00, 0x80],                // int16: -32768
            vec![0xf2, 0x01, 0x00, 0x80],          // int24: -8388607
            vec![0xf3, 0x78, 0x56, 0x34, 0x12],    // int32
            vec![0xf4, 1, 0, 0, 0, 0, 0, 0, 0x80], // int64: i64::MIN + 1
            vec![0xf0, 1, 0, 0, 0, b'z'],          // 32-bit string
        ]);
        let got = listpack(&lp).expect("decodes");
        assert_eq!(
            got,
            vec![
                Element::Int(5),
                Element::Bytes(b"abc"),
                Element::Int(-1),
                Element::Bytes(b"xy"),
                Element::Int(-32768),
                Element::Int(-8388607),
                Element::Int(0x12345678),
                Element::Int(i64::MIN + 1),
                Element::Bytes(b"z"),
            ]
        );
        // Truncation and a wrong count are errors, not panics.
        assert!(listpack(&lp[..lp.len() - 3]).is_err());
        let mut miscounted = lp.clone();
        miscounted[4] = 3;
        assert!(listpack(&miscounted).is_err());
    }

    #[test]
    fn ziplist_decodes_strings_and_ints() {
        let entries: Vec<Vec<u8>> = vec![
            vec![0, 2, b'h', b'i'],    // prevlen 0, 6-bit string
            vec![4, 0xf8],             // immediate 4-bit: stored 8 means 7
            vec![2, 0xc0, 0xff, 0xff], // int16 -1
            vec![4, 0xfe, 0x80],       // int8 -128
            vec![3, 0xf0, 0, 0, 0x80], // int24 min
        ];
        let mut body: Vec<u8> = entries.concat();
        body.push(0xff);
        let total = 10 + body.len();
        let mut zl = (total as u32).to_le_bytes().to_vec();
        zl.extend_from_slice(&0u32.to_le_bytes());
        zl.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        zl.extend_from_slice(&body);
        let got = ziplist(&zl).expect("decodes");
        assert_eq!(
            got,
            vec![
                Element::Bytes(b"hi"),
                Element::Int(7),
                Element::Int(-1),
                Element::Int(-128),
                Element::Int(-8388608),
            ]
        );
        assert!(ziplist(&zl[..zl.len() - 2]).is_err());
    }

    #[test]
    fn intset_and_zipmap() {
        let mut is = 4u32.to_le_bytes().to_vec();
        is.extend_from_slice(&2u32.to_le_bytes());
        is.extend_from_slice(&(-5i32).to_le_bytes());
        is.extend_from_slice(&70000i32.to_le_bytes());
        assert_eq!(intset(&is).expect("decodes"), vec![-5, 70000]);
        assert!(intset(&is[..10]).is_err());

        let zm = [1, 1, b'k', 2, 1, b'v', b'w', 0, 0xff];
        assert_eq!(
            zipmap(&zm).expect("decodes"),
            vec![(b"k".to_vec(), b"vw".to_vec())]
        );
    }

    #[test]
    fn lzf_literals_and_back_references() {
        // "abcabcabc": a literal "abc", then a back reference of length 6 at distance 3.
        let compressed = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(
            lzf_decompress(&compressed, 9).expect("decodes"),
            b"abcabcabc"
        );
        assert!(lzf_decompress(&compressed, 8).is_err());
        assert!(
            lzf_decompress(&[0x20, 0x05], 3).is_err(),
            "reference before start"
        );
    }
}
