//! Per-table figures that prove a restore: the row count and an order-independent content
//! checksum (the wrapping sum of the XXH3-64 of every row's COPY text line). At backup time
//! they are taken from the dump as it streams past (see `archive`); after a restore every
//! table is read back with COPY, in the same text settings as pg_dump's session, and the
//! figures are compared.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::conn::PgConn;
use super::neighbours::Search;
use crate::error::{Error, ErrorKind, Result};

const CHECKSUM_PREFIX: &str = "xxh3:";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    pub rows: u64,
    /// `xxh3:` and the hexadecimal row-hash sum; `-` when only rows were counted. Snapshots
    /// from before this scheme hold a decimal server-side sum, which is not compared.
    pub checksum: String,
    /// What follows `COPY` in pg_dump's statement for this table: its qualified name and the
    /// columns dumped (generated columns are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// Nearest-neighbour searches of its pgvector columns and their answers at backup time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<Search>,
}

impl TableStats {
    fn has_checksum(&self) -> bool {
        self.checksum.starts_with(CHECKSUM_PREFIX)
    }

    /// The COPY target to read the table back through when its checksum is to be recomputed;
    /// `None` when only its rows are counted.
    fn copy_to_hash(&self) -> Option<&str> {
        self.copy.as_deref().filter(|_| self.has_checksum())
    }

    /// The table's qualified name as SQL text.
    pub(super) fn name(&self, key: &str) -> String {
        match &self.copy {
            Some(copy) => qualified_name(copy).to_string(),
            // Older snapshots keyed tables by `schema.table` without quoting.
            None => {
                let (schema, table) = key.split_once('.').unwrap_or(("public", key));
                format!("{}.{}", ident(schema), ident(table))
            }
        }
    }
}

impl std::fmt::Display for TableStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows", self.rows)?;
        if self.checksum != "-" {
            write!(f, ", checksum {}", self.checksum)?;
        }
        Ok(())
    }
}

/// Keyed by `schema.table`.
pub type DatabaseStats = BTreeMap<String, TableStats>;

/// Row count and checksum of a table, fed one COPY text line (without its newline) at a time.
#[derive(Debug, Default)]
pub struct RowDigest {
    rows: u64,
    sum: u64,
}

impl RowDigest {
    pub fn add(&mut self, row: &[u8]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxhash_rust::xxh3::xxh3_64(row));
    }

    pub fn stats(&self, checksum: bool, copy: Option<String>) -> TableStats {
        TableStats {
            rows: self.rows,
            checksum: if checksum {
                format!("{CHECKSUM_PREFIX}{:016x}", self.sum)
            } else {
                "-".into()
            },
            copy,
            searches: Vec::new(),
        }
    }
}

/// Settings that shape a row's text which pg_dump leaves at the session's defaults (it fixes
/// DateStyle, IntervalStyle, extra_float_digits, search_path and row_security itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSettings {
    pub timezone: String,
    pub bytea_output: String,
    /// The dump's client encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

impl TextSettings {
    /// SQL that makes a session print rows exactly as pg_dump did.
    pub(super) fn set_local(&self) -> String {
        let mut sql = String::from(
            "SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres; \
             SET LOCAL extra_float_digits = 3; SET LOCAL search_path = ''; \
             SET LOCAL row_security = off;\n",
        );
        let mut set = |name: &str, value: &str| {
            sql.push_str(&format!("SET LOCAL {name} = {};\n", literal(value)));
        };
        if !self.timezone.is_empty() {
            set("TimeZone", &self.timezone);
        }
        if !self.bytea_output.is_empty() {
            set("bytea_output", &self.bytea_output);
        }
        if let Some(e) = &self.encoding {
            set("client_encoding", e);
        }
        sql
    }
}

pub(super) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(super) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The leading `schema.table` of a COPY target such as `public."my (t)" (a, "b c")`: dotted
/// identifiers, each bare or double-quoted, up to the first space outside quotes.
fn qualified_name(copy: &str) -> &str {
    let bytes = copy.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' if quoted && bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => quoted = !quoted,
            b' ' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    &copy[..i]
}

/// A line no COPY text row can be (COPY escapes every backslash as `\\`).
pub(super) const END_MARK: &[u8] = b"\\.";
const MISSING_MARK: &[u8] = b"\\.missing";

/// Recomputes the figures `expected` lists for database `db`: row counts, and checksums where
/// the backup recorded them. Tables the database lacks are absent from the result.
pub fn measure(
    conn: &PgConn,
    db: &str,
    expected: &DatabaseStats,
    text: &TextSettings,
) -> Result<DatabaseStats> {
    if expected.is_empty() {
        return Ok(DatabaseStats::new());
    }
    let mut script = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n");
    script.push_str(&text.set_local());
    for (key, stats) in expected {
        let name = stats.name(key);
        let read = match stats.copy_to_hash() {
            Some(copy) => format!("COPY {copy} TO STDOUT;"),
            None => format!("SELECT count(*) FROM {name};"),
        };
        script.push_str(&format!(
            "SELECT to_regclass({}) IS NULL AS bulwark_missing \\gset\n\
             \\if :bulwark_missing\nSELECT E'\\\\.missing';\n\\else\n{read}\n\\endif\n\
             SELECT E'\\\\.';\n",
            literal(&name)
        ));
    }
    script.push_str("COMMIT;\n");

    conn.run_script(
        db,
        script,
        format!("table checksums of database {db}"),
        |out| read_figures(out, expected),
    )
}

/// Parses psql's answer to `measure`'s script: per table, its rows (or its count) and then
/// the end mark, or the missing mark instead.
fn read_figures(mut out: impl BufRead, expected: &DatabaseStats) -> Result<DatabaseStats> {
    let bad = |what: String| Error::new(ErrorKind::Source, format!("reading checksums: {what}"));
    let mut actual = DatabaseStats::new();
    let mut line = Vec::new();
    for (key, stats) in expected {
        let mut digest = RowDigest::default();
        let mut count: Option<u64> = None;
        let mut missing = false;
        loop {
            line.clear();
            if out.read_until(b'\n', &mut line)? == 0 {
                return Err(bad(format!("psql's answer ends before table {key}")));
            }
            let row = line.strip_suffix(b"\n").unwrap_or(&line);
            if row == END_MARK {
                break;
            }
            if row == MISSING_MARK {
                missing = true;
            } else if stats.copy_to_hash().is_some() {
                digest.add(row);
            } else {
                let text = String::from_utf8_lossy(row);
                count =
                    Some(text.trim().parse().map_err(|_| {
                        bad(format!("'{text}' is not a row count for table {key}"))
                    })?);
            }
        }
        if missing {
            continue;
        }
        let mut figures = digest.stats(stats.has_checksum(), stats.copy.clone());
        if let Some(n) = count {
            figures.rows = n;
        }
        actual.insert(key.clone(), figures);
    }
    Ok(actual)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mismatch {
    pub table: String,
    pub expected: Option<TableStats>,
    pub actual: Option<TableStats>,
}

/// The same tables with their row counts alone, for a sampled verification.
pub fn counts_only(tables: &DatabaseStats) -> DatabaseStats {
    tables
        .iter()
        .map(|(key, t)| {
            let stats = TableStats {
                checksum: "-".into(),
                searches: Vec::new(),
                ..t.clone()
            };
            (key.clone(), stats)
        })
        .collect()
}

/// Tables whose rows or checksum differ, or that are missing after the restore. Tables the
/// target has beyond the backup's are not mismatches (a restore into a database with --clean
/// leaves unrelated objects alone).
pub fn compare(expected: &DatabaseStats, actual: &DatabaseStats) -> Vec<Mismatch> {
    expected
        .iter()
        .filter(|(t, e)| match actual.get(*t) {
            None => true,
            Some(a) => a.rows != e.rows || (e.has_checksum() && a.checksum != e.checksum),
        })
        .map(|(t, e)| Mismatch {
            table: t.clone(),
            expected: Some(e.clone()),
            actual: actual.get(t).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_end_at_the_column_list() {
        assert_eq!(qualified_name("public.t (a, b)"), "public.t");
        assert_eq!(
            qualified_name("\"my schema\".\"t (x)\" (a)"),
            "\"my schema\".\"t (x)\""
        );
        assert_eq!(qualified_name("s.\"a\"\" b\" (c)"), "s.\"a\"\" b\"");
        assert_eq!(qualified_name("public.t"), "public.t");
    }

    #[test]
    fn digests_ignore_row_order() {
        let mut a = RowDigest::default();
        let mut b = RowDigest::default();
        for r in [&b"1\tx"[..], b"2\ty", b"3\tz"] {
            a.add(r);
        }
        for r in [&b"3\tz"[..], b"1\tx", b"2\ty"] {
            b.add(r);
        }
        assert_eq!(a.stats(true, None), b.stats(true, None));
        let mut c = RowDigest::default();
        for r in [&b"1\tx"[..], b"2\ty", b"3\tZ"] {
            c.add(r);
        }
        assert_ne!(a.stats(true, None).checksum, c.stats(true, None).checksum);
        assert_eq!(a.stats(false, None).checksum, "-");
    }

    #[test]
    fn answers_are_split_per_table() {
        let copy = |t: &str| RowDigest::default().stats(true, Some(format!("public.{t} (a)")));
        let legacy = TableStats {
            rows: 2,
            checksum: "12345".into(),
            copy: None,
            searches: Vec::new(),
        };
        let expected: DatabaseStats = [
            ("public.a".to_string(), copy("a")),
            ("public.b".to_string(), legacy),
            ("public.c".to_string(), copy("c")),
            ("public.d".to_string(), copy("d")),
        ]
        .into();
        let answer = b"r1\nr2\n\\.\n7\n\\.\n\\.missing\n\\.\n\\.\n";
        let actual = read_figures(&answer[..], &expected).expect("parses");
        assert_eq!(actual["public.a"].rows, 2);
        assert!(actual["public.a"].has_checksum());
        assert_eq!(actual["public.b"].rows, 7);
        assert!(!actual.contains_key("public.c"));
        assert_eq!(actual["public.d"].rows, 0);
        let mismatched: Vec<String> = compare(&expected, &actual)
            .into_iter()
            .map(|m| m.table)
            .collect();
        // a: 2 rows, not 0; b: 7 rows, not 2; c: missing; d: empty as expected.
        assert_eq!(mismatched, ["public.a", "public.b", "public.c"]);
        assert!(read_figures(&b"r1\n"[..], &expected).is_err());
    }
}
