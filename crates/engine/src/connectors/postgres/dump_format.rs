//! Reads a pg_dump custom-format archive as it streams past, to take each table's row count
//! and checksum from the dump itself instead of scanning the tables a second time.
//!
//! The layout (PostgreSQL's `pg_backup_archiver.c` and `pg_backup_custom.c`): a header, the
//! table of contents, then one data block per entry that has data. Integers are a sign byte
//! and `intSize` little-endian bytes; strings are an integer length (-1 for NULL) and bytes.
//! A table's data block is a run of length-prefixed pieces of COPY text ending with length 0;
//! a large-object block is a run of (oid, pieces) ending with oid 0. Only uncompressed
//! archives (`-Z0`) of versions 1.12 to 1.16 (PostgreSQL 9.6 to 18) are read; anything else
//! is an error the caller turns into a warning.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};

use super::neighbours::{Scan, VectorColumn};
use super::verify::{DatabaseStats, RowDigest};
use crate::error::{Error, ErrorKind, Result};

const MAGIC: &[u8] = b"PGDMP";
const FORMAT_CUSTOM: u8 = 1;
const BLOCK_DATA: u8 = 1;
const BLOCK_BLOBS: u8 = 3;
/// A string longer than this is taken for a misreading, not a definition.
const MAX_STRING: i64 = 1 << 30;

/// What a dump says about its tables.
#[derive(Debug, Default)]
pub struct Summary {
    /// The client encoding the table data was written in (`ENCODING` entry).
    pub encoding: Option<String>,
    pub tables: DatabaseStats,
}

fn malformed(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Source,
        format!("unexpected pg_dump archive layout: {what}"),
    )
}

struct Input<R> {
    r: BufReader<R>,
    int_size: usize,
    off_size: usize,
}

impl<R: Read> Input<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                malformed("the archive ends in the middle of a record")
            } else {
                Error::from(e)
            }
        })
    }

    fn byte(&mut self) -> Result<u8> {
        let mut b = [0u8];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    /// The next block type, or `None` at a clean end of the archive.
    fn block_type(&mut self) -> Result<Option<u8>> {
        let mut b = [0u8];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(b[0])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn int(&mut self) -> Result<i64> {
        // One read for the sign byte and the digits: this runs for every row.
        let mut b = [0u8; 17];
        let n = 1 + self.int_size;
        self.exact(&mut b[..n])?;
        let v = b[1..n]
            .iter()
            .take(8)
            .enumerate()
            .fold(0i64, |v, (i, &d)| v | (i64::from(d) << (8 * i)));
        Ok(if b[0] != 0 { -v } else { v })
    }

    fn bytes(&mut self) -> Result<Option<Vec<u8>>> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        if len > MAX_STRING {
            return Err(malformed(format!("a string of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.exact(&mut buf)?;
        Ok(Some(buf))
    }

    fn string(&mut self) -> Result<String> {
        Ok(self
            .bytes()?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let skipped = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        if skipped != n {
            return Err(malformed("the archive ends inside a data block"));
        }
        Ok(())
    }
}

/// A table whose rows the archive carries.
struct TableData {
    key: String,
    /// What follows `COPY` in pg_dump's statement: the table and its column list.
    copy: String,
    /// Its pgvector columns' searches.
    scans: Vec<Scan>,
}

/// Reads the whole archive from `r`, summing the rows of every table (and their checksums
/// when `checksums`), and recording the searches of the pgvector `columns`.
pub fn summarize(r: impl Read, checksums: bool, columns: &[VectorColumn]) -> Result<Summary> {
    let mut input = Input {
        r: BufReader::with_capacity(256 * 1024, r),
        int_size: 4,
        off_size: 8,
    };
    let mut magic = [0u8; 5];
    input.exact(&mut magic)?;
    if magic != MAGIC {
        return Err(malformed("no PGDMP header"));
    }
    let (major, minor, _rev) = (input.byte()?, input.byte()?, input.byte()?);
    if major != 1 || !(12..=16).contains(&minor) {
        return Err(malformed(format!(
            "archive version {major}.{minor} is not one Bulwark knows"
        )));
    }
    input.int_size = usize::from(input.byte()?);
    input.off_size = usize::from(input.byte()?);
    if !(1..=16).contains(&input.int_size) || !(1..=16).contains(&input.off_size) {
        return Err(malformed("implausible integer sizes"));
    }
    if input.byte()? != FORMAT_CUSTOM {
        return Err(malformed("not the custom format"));
    }
    // 1.15 made the compression an algorithm byte; before, it was a zlib level.
    let compression = if minor >= 15 {
        i64::from(input.byte()?)
    } else {
        input.int()?
    };
    if compression != 0 {
        return Err(malformed("the archive is compressed"));
    }
    for _ in 0..7 {
        input.int()?; // creation time, field by field
    }
    for _ in 0..3 {
        input.bytes()?; // database name, server and pg_dump versions
    }

    let mut summary = Summary::default();
    let mut tables: BTreeMap<i64, TableData> = BTreeMap::new();
    let entries = input.int()?;
    for _ in 0..entries {
        let dump_id = input.int()?;
        let has_data = input.int()? != 0;
        input.bytes()?; // table oid
        input.bytes()?; // oid
        let tag = input.string()?;
        let desc = input.string()?;
        input.int()?; // section
        let defn = input.string()?;
        input.bytes()?; // drop statement
        let copy_stmt = input.string()?;
        let namespace = input.string()?;
        input.bytes()?; // tablespace
        if minor >= 14 {
            input.bytes()?; // table access method
        }
        if minor >= 16 {
            input.int()?; // relkind
        }
        input.bytes()?; // owner
        input.bytes()?; // "with oids", always false now
        while input.bytes()?.is_some() {} // dependencies, ended by NULL
        input.byte()?; // data offset: a flag, then the offset
        for _ in 0..input.off_size {
            input.byte()?;
        }
        if desc == "ENCODING" {
            summary.encoding = defn.split('\'').nth(1).map(str::to_string);
        }
        if desc == "TABLE DATA" && has_data {
            let copy = copy_stmt
                .strip_prefix("COPY ")
                .and_then(|s| s.trim_end().strip_suffix(" FROM stdin;"))
                .ok_or_else(|| {
                    malformed(format!("table {namespace}.{tag} is not dumped by COPY"))
                })?;
            let scans = columns
                .iter()
                .filter(|c| c.schema == namespace && c.table == tag)
                .filter_map(|c| Scan::new(copy, c))
                .collect();
            tables.insert(
                dump_id,
                TableData {
                    key: format!("{namespace}.{tag}"),
                    copy: copy.to_string(),
                    scans,
                },
            );
        }
    }

    let mut chunk = Vec::new();
    while let Some(kind) = input.block_type()? {
        let dump_id = input.int()?;
        match kind {
            BLOCK_DATA => {
                let Some(mut table) = tables.remove(&dump_id) else {
                    skip_pieces(&mut input)?;
                    continue;
                };
                let digest = digest_rows(&mut input, &mut chunk, &mut table.scans)?;
                let mut stats = digest.stats(checksums, Some(table.copy));
                stats.searches = table.scans.into_iter().flat_map(Scan::finish).collect();
                summary.tables.insert(table.key, stats);
            }
            BLOCK_BLOBS => {
                while input.int()? != 0 {
                    skip_pieces(&mut input)?;
                }
            }
            other => return Err(malformed(format!("data block of type {other}"))),
        }
    }
    if let Some(missing) = tables.values().next() {
        return Err(malformed(format!(
            "the archive ended without the data of table {}",
            missing.key
        )));
    }
    Ok(summary)
}

fn skip_pieces<R: Read>(input: &mut Input<R>) -> Result<()> {
    loop {
        let len = input.int()?;
        if len == 0 {
            return Ok(());
        }
        let len = u64::try_from(len).map_err(|_| malformed("a negative piece length"))?;
        input.skip(len)?;
    }
}

/// Feeds one table's COPY text to a digest and to its vector scans, row by row, up to the
/// `\.` line pg_dump ends it with (blank lines follow). Pieces are usually whole rows, but a
/// row split across pieces is joined first.
fn digest_rows<R: Read>(
    input: &mut Input<R>,
    buf: &mut Vec<u8>,
    scans: &mut [Scan],
) -> Result<RowDigest> {
    let mut add = |digest: &mut RowDigest, row: &[u8]| {
        digest.add(row);
        for scan in scans.iter_mut() {
            scan.add(row);
        }
    };
    let mut digest = RowDigest::default();
    let mut ended = false;
    buf.clear();
    loop {
        let len = input.int()?;
        if len == 0 {
            break;
        }
        if !(0..=MAX_STRING).contains(&len) {
            return Err(malformed(format!("a data piece of {len} bytes")));
        }
        let start = buf.len();
        buf.resize(start + len as usize, 0);
        input.exact(&mut buf[start..])?;
        let mut row_start = 0;
        for end in memchr::memchr_iter(b'\n', &buf[start..]) {
            let row = &buf[row_start..start + end];
            ended |= row == b"\\.";
            if !ended {
                add(&mut digest, row);
            }
            row_start = start + end + 1;
        }
        buf.drain(..row_start);
    }
    if !buf.is_empty() && !ended {
        add(&mut digest, buf);
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes archives the way pg_dump 18 lays them out (version 1.16, 4-byte integers).
    struct Builder(Vec<u8>);

    impl Builder {
        fn int(&mut self, v: i64) {
            self.0.push(u8::from(v < 0));
            self.0
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }
        fn str(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.0.extend_from_slice(s.as_bytes());
                }
            }
        }
        fn header(minor: u8, entries: i64) -> Self {
            let mut b = Builder(b"PGDMP".to_vec());
            b.0.extend_from_slice(&[1, minor, 0, 4, 8, FORMAT_CUSTOM, 0]);
            for _ in 0..7 {
                b.int(1);
            }
            for s in ["db", "18.3", "18.3"] {
                b.str(Some(s));
            }
            b.int(entries);
            b
        }
        fn entry(&mut self, id: i64, desc: &str, tag: &str, defn: &str, copy: Option<&str>) {
            self.int(id);
            self.int(i64::from(copy.is_some() || desc == "BLOBS"));
            for s in [Some("0"), Some("0"), Some(tag), Some(desc)] {
                self.str(s);
            }
            self.int(3);
            for s in [
                Some(defn),
                Some(""),
                copy,
                Some("public"),
                None,
                Some("heap"),
            ] {
                self.str(s);
            }
            self.int(i64::from(b'r'));
            for s in [Some("owner"), Some("false"), Some("1"), None] {
                self.str(s);
            }
            self.0.push(1);
            self.0.extend_from_slice(&[0; 8]);
        }
        fn data(&mut self, id: i64, pieces: &[&str]) {
            self.0.push(BLOCK_DATA);
            self.int(id);
            for p in pieces {
                self.str(Some(p));
            }
            self.int(0);
        }
    }

    fn sample() -> Builder {
        let mut b = Builder::header(16, 4);
        b.entry(
            1,
            "ENCODING",
            "ENCODING",
            "SET client_encoding = 'UTF8';\n",
            None,
        );
        b.entry(
            2,
            "TABLE DATA",
            "t",
            "",
            Some("COPY public.t (a, b) FROM stdin;\n"),
        );
        b.entry(3, "BLOBS", "BLOBS", "", None);
        b.entry(
            4,
            "TABLE DATA",
            "empty",
            "",
            Some("COPY public.empty (a) FROM stdin;\n"),
        );
        // A row split across two pieces, and pg_dump's end line with blank lines after it.
        b.data(2, &["1\tx\n", "2\t", "y\n3\tz\n", "\\.\n\n\n"]);
        b.0.push(BLOCK_BLOBS);
        b.int(3);
        b.int(16400);
        b.str(Some("large object bytes"));
        b.int(0);
        b.int(0);
        b.data(4, &["\\.\n\n\n"]);
        b
    }

    #[test]
    fn tables_are_summed_from_the_copy_text() {
        let s = summarize(&sample().0[..], true, &[]).expect("reads");
        assert_eq!(s.encoding.as_deref(), Some("UTF8"));
        let mut digest = RowDigest::default();
        for row in [&b"3\tz"[..], b"1\tx", b"2\ty"] {
            digest.add(row);
        }
        assert_eq!(
            s.tables["public.t"],
            digest.stats(true, Some("public.t (a, b)".into()))
        );
        assert_eq!(s.tables["public.empty"].rows, 0);
        assert_eq!(s.tables.len(), 2);
    }

    #[test]
    fn vector_columns_record_their_searches() {
        let mut b = Builder::header(16, 1);
        b.entry(
            1,
            "TABLE DATA",
            "v",
            "",
            Some("COPY public.v (id, e) FROM stdin;\n"),
        );
        b.data(1, &["1\t[0,0]\n2\t[3,", "4]\n3\t\\N\n", "\\.\n\n\n"]);
        let column = VectorColumn {
            schema: "public".into(),
            table: "v".into(),
            column: "e".into(),
            key: "id".into(),
            dims: 2,
            type_schema: "public".into(),
            type_name: "vector".into(),
        };
        let s = summarize(&b.0[..], true, &[column]).expect("reads");
        let v = &s.tables["public.v"];
        assert_eq!(v.rows, 3);
        let keys: Vec<(&str, Vec<&str>)> = v
            .searches
            .iter()
            .map(|q| {
                (
                    q.query_key.as_str(),
                    q.expected.iter().map(|n| n.key.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(keys, [("1", vec!["1", "2"]), ("2", vec!["2", "1"])]);
        assert_eq!(v.searches[1].vector, "[3,4]");
    }

    #[test]
    fn truncated_unknown_or_compressed_archives_are_errors() {
        let full = sample().0;
        for cut in [3, 40, full.len() - 30, full.len() - 1] {
            assert!(summarize(&full[..cut], true, &[]).is_err(), "cut at {cut}");
        }
        let mut newer = full.clone();
        newer[6] = 17;
        assert!(summarize(&newer[..], true, &[]).is_err());
        let mut compressed = full;
        compressed[11] = 1;
        assert!(summarize(&compressed[..], true, &[]).is_err());
    }
}
