//! Reading RDB files as a stream: one key at a time, each value either skipped or captured as
//! the raw bytes a `RESTORE` payload needs, and decoded on demand into a plain value for
//! comparisons. Covers every type and encoding Redis 2.6 to 7.2 writes; module values are
//! walked (their generic opcode framing) but not interpreted. The trailing CRC64 is checked,
//! so a file cut short or damaged in transit is an error, never a short listing.

use std::io::{BufRead, BufReader, Read};

use super::encodings;
use super::rdb_values::{module_name, read_value, skip_module_body};
use crate::error::{Error, ErrorKind, Result};

/// The newest RDB version this reader understands (Redis 7.4 writes 12).
pub const MAX_VERSION: u32 = 12;

/// Value type bytes, as in Redis's rdb.h.
pub mod kind {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
}

mod opcode {
    pub const FUNCTION_PRE_GA: u8 = 0xf6;
    pub const FUNCTION_2: u8 = 0xf5;
    pub const MODULE_AUX: u8 = 0xf7;
    pub const IDLE: u8 = 0xf8;
    pub const FREQ: u8 = 0xf9;
    pub const AUX: u8 = 0xfa;
    pub const RESIZEDB: u8 = 0xfb;
    pub const EXPIRETIME_MS: u8 = 0xfc;
    pub const EXPIRETIME: u8 = 0xfd;
    pub const SELECTDB: u8 = 0xfe;
    pub const EOF: u8 = 0xff;
}

/// The name `TYPE` reports for a value type byte.
pub fn type_name(k: u8) -> &'static str {
    use kind::*;
    match k {
        STRING => "string",
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => "list",
        SET | SET_INTSET | SET_LISTPACK => "set",
        ZSET | ZSET_2 | ZSET_ZIPLIST | ZSET_LISTPACK => "zset",
        HASH | HASH_ZIPMAP | HASH_ZIPLIST | HASH_LISTPACK => "hash",
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => "stream",
        MODULE_PRE_GA | MODULE_2 => "module",
        _ => "unknown",
    }
}

static CRC64: crc::Crc<u64, crc::Table<16>> =
    crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_REDIS);

/// The checksum Redis puts at the end of RDB files and DUMP payloads.
pub fn crc64(data: &[u8]) -> u64 {
    CRC64.checksum(data)
}

/// A stream identifier: milliseconds and sequence.
pub type StreamId = (u64, u64);

/// Stream entries: id and field/value pairs.
pub type StreamEntries = Vec<(StreamId, Vec<(Vec<u8>, Vec<u8>)>)>;

/// A value decoded into what clients see; element order as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    ZSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    Stream(Box<StreamValue>),
    /// A module's value: only its name is known.
    Module(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamValue {
    pub length: u64,
    pub last_id: StreamId,
    /// Live entries in id order.
    pub entries: StreamEntries,
    pub groups: Vec<GroupValue>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupValue {
    pub name: Vec<u8>,
    pub last_id: StreamId,
    pub pending: u64,
    pub consumers: Vec<Vec<u8>>,
}

/// One key as read from the file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub db: u32,
    pub key: Vec<u8>,
    /// Absolute expiry, Unix milliseconds.
    pub expire_ms: Option<i64>,
    pub kind: u8,
    /// The value's bytes as stored (after the key), when capturing: with `kind` in front and
    /// a version and checksum behind it, this is a `RESTORE` payload.
    pub raw: Vec<u8>,
    /// The module's name, for module values.
    pub module: Option<String>,
}

impl Entry {
    /// The value as a `DUMP`/`RESTORE` payload, stamped with the RDB version it was read at.
    pub fn dump_payload(&self, version: u32) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.raw.len() + 11);
        p.push(self.kind);
        p.extend_from_slice(&self.raw);
        p.extend_from_slice(&(version as u16).to_le_bytes());
        let crc = crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        p
    }

    /// Decodes the captured value.
    pub fn value(&self) -> Result<Value> {
        if let Some(m) = &self.module {
            return Ok(Value::Module(m.clone()));
        }
        let mut input = Input::new(self.raw.as_slice(), false);
        let v = read_value(&mut input, self.kind, true)?;
        v.ok_or_else(|| Error::corrupt("value not decoded"))
    }
}

/// What the file holds, in order.
#[derive(Debug, Clone)]
pub enum Record {
    Aux(Vec<u8>, Vec<u8>),
    /// A function library's source (Redis 7 functions).
    Function(Vec<u8>),
    ModuleAux(String),
    Entry(Entry),
}

/// Bytes in, with a running checksum and optionally a copy of what was read.
pub(super) struct Input<R> {
    r: R,
    crc: Option<crc::Digest<'static, u64, crc::Table<16>>>,
    capture: Option<Vec<u8>>,
    offset: u64,
}

impl<R: BufRead> Input<R> {
    pub(super) fn new(r: R, checksum: bool) -> Self {
        Self {
            r,
            crc: checksum.then(|| CRC64.digest()),
            capture: None,
            offset: 0,
        }
    }

    pub(super) fn eof_error(&self) -> Error {
        Error::corrupt(format!(
            "the RDB ends early (after {} bytes): the transfer was cut short or the file is truncated",
            self.offset
        ))
    }

    /// Passes the next `n` bytes to `sink` (None: discard), in buffer-sized pieces.
    pub(super) fn take(&mut self, mut n: usize, mut sink: Option<&mut Vec<u8>>) -> Result<()> {
        while n > 0 {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(self.eof_error());
            }
            let k = buf.len().min(n);
            let piece = &buf[..k];
            if let Some(c) = self.crc.as_mut() {
                c.update(piece);
            }
            if let Some(c) = self.capture.as_mut() {
                c.extend_from_slice(piece);
            }
            if let Some(s) = sink.as_deref_mut() {
                s.extend_from_slice(piece);
            }
            self.r.consume(k);
            self.offset += k as u64;
            n -= k;
        }
        Ok(())
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(n.min(1 << 20));
        self.take(n, Some(&mut v))?;
        Ok(v)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let v = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }

    pub(super) fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn len_or_encoding(&mut self) -> Result<Len> {
        let b = self.byte()?;
        Ok(match b >> 6 {
            0 => Len::Len((b & 0x3f) as u64),
            1 => Len::Len((((b & 0x3f) as u64) << 8) | self.byte()? as u64),
            2 => match b {
                0x80 => Len::Len(u32::from_be_bytes(self.array()?) as u64),
                0x81 => Len::Len(u64::from_be_bytes(self.array()?)),
                _ => return Err(self.damaged(&format!("length prefix {b:#x}"))),
            },
            _ => Len::Encoded(b & 0x3f),
        })
    }

    pub(super) fn len(&mut self) -> Result<u64> {
        match self.len_or_encoding()? {
            Len::Len(n) => Ok(n),
            Len::Encoded(e) => Err(self.damaged(&format!("encoding {e} where a length belongs"))),
        }
    }

    pub(super) fn usize_len(&mut self) -> Result<usize> {
        let n = self.len()?;
        usize::try_from(n).map_err(|_| self.damaged("length"))
    }

    pub(super) fn damaged(&self, what: &str) -> Error {
        Error::corrupt(format!("damaged RDB at byte {}: {what}", self.offset))
    }

    /// A string; when `keep` is false its bytes are skipped and an empty vector returned.
    pub(super) fn string(&mut self, keep: bool) -> Result<Vec<u8>> {
        match self.len_or_encoding()? {
            Len::Len(n) => {
                let n = usize::try_from(n).map_err(|_| self.damaged("string length"))?;
                if keep {
                    self.bytes(n)
                } else {
                    self.take(n, None).map(|_| Vec::new())
                }
            }
            Len::Encoded(0) => Ok((self.byte()? as i8).to_string().into_bytes()),
            Len::Encoded(1) => Ok(i16::from_le_bytes(self.array()?).to_string().into_bytes()),
            Len::Encoded(2) => Ok(i32::from_le_bytes(self.array()?).to_string().into_bytes()),
            Len::Encoded(3) => {
                let clen = self.usize_len()?;
                let len = self.usize_len()?;
                if !keep {
                    return self.take(clen, None).map(|_| Vec::new());
                }
                let compressed = self.bytes(clen)?;
                encodings::lzf_decompress(&compressed, len)
            }
            Len::Encoded(e) => Err(self.damaged(&format!("string encoding {e}"))),
        }
    }

    /// The score of a pre-Redis-3.2 sorted set: a length-prefixed decimal string.
    pub(super) fn text_double(&mut self) -> Result<f64> {
        match self.byte()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let text = self.bytes(n as usize)?;
                std::str::from_utf8(&text)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.damaged("sorted set score"))
            }
        }
    }

    pub(super) fn millis(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

enum Len {
    Len(u64),
    Encoded(u8),
}

/// Reads an RDB stream record by record.
pub struct RdbReader<R: Read> {
    input: Input<BufReader<R>>,
    version: u32,
    db: u32,
    capture: bool,
    finished: bool,
}

impl<R: Read> RdbReader<R> {
    /// Reads the header. With `capture`, entries carry their raw value bytes.
    pub fn new(r: R, capture: bool) -> Result<Self> {
        let mut input = Input::new(BufReader::with_capacity(256 << 10, r), true);
        let magic = input.bytes(9)?;
        if &magic[..5] != b"REDIS" {
            return Err(Error::corrupt("not an RDB file (no REDIS header)"));
        }
        let version: u32 = std::str::from_utf8(&magic[5..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::corrupt("RDB header has no version number"))?;
        if version > MAX_VERSION {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("RDB version {version} is newer than this build reads ({MAX_VERSION})"),
            ));
        }
        Ok(Self {
            input,
            version,
            db: 0,
            capture,
            finished: false,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.input.offset
    }

    /// The next record; `None` once the end marker and checksum have been read and checked.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.finished {
            return Ok(None);
        }
        let mut expire_ms = None;
        loop {
            let op = self.input.byte()?;
            match op {
                opcode::AUX => {
                    let k = self.input.string(true)?;
                    let v = self.input.string(true)?;
                    return Ok(Some(Record::Aux(k, v)));
                }
                opcode::RESIZEDB => {
                    self.input.len()?;
                    self.input.len()?;
                }
                opcode::EXPIRETIME_MS => expire_ms = Some(self.input.millis()?),
                opcode::EXPIRETIME => {
                    let secs = i32::from_le_bytes(self.input.array()?);
                    expire_ms = Some(secs as i64 * 1000);
                }
                opcode::FREQ => {
                    self.input.byte()?;
                }
                opcode::IDLE => {
                    self.input.len()?;
                }
                opcode::SELECTDB => {
                    self.db = u32::try_from(self.input.len()?)
                        .map_err(|_| self.input.damaged("database number"))?;
                }
                opcode::MODULE_AUX => {
                    let id = self.input.len()?;
                    let when_opcode = self.input.len()?;
                    if when_opcode != 2 {
                        return Err(self.input.damaged("module aux data framing"));
                    }
                    self.input.len()?;
                    skip_module_body(&mut self.input)?;
                    return Ok(Some(Record::ModuleAux(module_name(id))));
                }
                opcode::FUNCTION_2 => {
                    return Ok(Some(Record::Function(self.input.string(true)?)));
                }
                opcode::FUNCTION_PRE_GA => {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "the RDB holds functions in the Redis 7.0 release-candidate format",
                    ));
                }
                opcode::EOF => {
                    self.finish()?;
                    return Ok(None);
                }
                k => return self.entry(k, expire_ms).map(|e| Some(Record::Entry(e))),
            }
        }
    }

    fn entry(&mut self, kind: u8, expire_ms: Option<i64>) -> Result<Entry> {
        let key = self.input.string(true)?;
        if self.capture {
            self.input.capture = Some(Vec::new());
        }
        let walked = read_value(&mut self.input, kind, false);
        let raw = self.input.capture.take().unwrap_or_default();
        let module = match walked {
            Ok(v) => match v {
                Some(Value::Module(name)) => Some(name),
                _ => None,
            },
            Err(e) => {
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "key '{}' in db {}: {e}",
                        String::from_utf8_lossy(&key),
                        self.db
                    ),
                ))
            }
        };
        Ok(Entry {
            db: self.db,
            key,
            expire_ms,
            kind,
            raw,
            module,
        })
    }

    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        if self.version < 5 {
            return Ok(());
        }
        let computed = self.input.crc.take().map(|d| d.finalize()).unwrap_or(0);
        let stored = u64::from_le_bytes(self.input.array()?);
        // Zero means the server was told not to checksum (rdbchecksum no).
        if stored != 0 && stored != computed {
            return Err(Error::corrupt(format!(
                "the RDB's checksum does not match its contents ({stored:#018x} stored, {computed:#018x} computed)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_redis_jones() {
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    fn rdb(body: &[u8], version: u32) -> Vec<u8> {
        let mut f = format!("REDIS{version:04}").into_bytes();
        f.extend_from_slice(body);
        f.push(opcode::EOF);
        let crc = crc64(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }

    fn entries(file: &[u8]) -> Result<Vec<Entry>> {
        let mut r = RdbReader::new(file, true)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            if let Record::Entry(e) = rec {
                out.push(e);
            }
        }
        Ok(out)
    }

    #[test]
    fn reads_keys_databases_expiries_and_checks_the_checksum() {
        let mut body = vec![opcode::AUX, 3, b'v', b'e', b'r', 3, b'7', b'.', b'0'];
        body.extend_from_slice(&[opcode::SELECTDB, 2, opcode::RESIZEDB, 2, 1]);
        body.push(opcode::EXPIRETIME_MS);
        body.extend_from_slice(&1_900_000_000_000i64.to_le_bytes());
        body.extend_from_slice(&[kind::STRING, 1, b'a', 0xc0, 0xfb]); // int8 -5
        body.extend_from_slice(&[kind::SET, 1, b's', 2, 1, b'x', 0xc1, 0x39, 0x30]);
        let file = rdb(&body, 10);
        let got = entries(&file).expect("parses");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].db, 2);
        assert_eq!(got[0].expire_ms, Some(1_900_000_000_000));
        assert_eq!(
            got[0].value().expect("decodes"),
            Value::String(b"-5".to_vec())
        );
        assert_eq!(got[1].expire_ms, None);
        assert_eq!(
            got[1].value().expect("decodes"),
            Value::Set(vec![b"x".to_vec(), b"12345".to_vec()])
        );
        // The DUMP payload is type, value, version, checksum of everything before it.
        let p = got[0].dump_payload(10);
        assert_eq!(&p[..3], &[kind::STRING, 0xc0, 0xfb]);
        assert_eq!(&p[3..5], &10u16.to_le_bytes());
        assert_eq!(crc64(&p[..5]).to_le_bytes(), p[5..]);

        let mut flipped = file.clone();
        flipped[25] ^= 1; // inside the expiry: parses, but the sum differs
        let e = entries(&flipped).expect_err("checksum");
        assert!(e.to_string().contains("checksum"), "{e}");
        let e = entries(&file[..file.len() - 12]).expect_err("truncated");
        assert!(e.to_string().contains("ends early"), "{e}");
    }

    #[test]
    fn module_values_are_walked_and_named() {
        // Module id: name "mymodule1" in 6-bit characters, then a 10-bit version.
        let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id: u64 = 0;
        for c in b"mymodule1" {
            id = (id << 6) | chars.iter().position(|x| x == c).expect("in set") as u64;
        }
        id = (id << 10) | 3;
        let mut body = vec![kind::MODULE_2, 1, b'm', 0x81];
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&[2, 7, 5, 2, b'h', b'i', 4]); // uint 7, string "hi", double
        body.extend_from_slice(&1.5f64.to_le_bytes());
        body.push(0); // end of module value
        body.extend_from_slice(&[kind::STRING, 1, b'z', 1, b'y']);
        let got = entries(&rdb(&body, 10)).expect("parses");
        assert_eq!(got[0].module.as_deref(), Some("mymodule1"));
        assert_eq!(
            got[0].value().expect("named"),
            Value::Module("mymodule1".into())
        );
        assert_eq!(got[1].key, b"z");
    }

    #[test]
    fn unknown_types_and_newer_versions_are_refused_clearly() {
        let e = entries(&rdb(&[42, 1, b'k', 0], 10)).expect_err("unknown type");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("key 'k'"), "{e}");
        let e = entries(&rdb(&[], 99)).expect_err("new version");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}
