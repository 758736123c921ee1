//! Per-table figures that prove a restore: the row count and an order-independent content
//! checksum (the sum of a 64-bit hash of each row's text). Recorded at backup time inside the
//! dump's own snapshot, recomputed after a restore, and compared.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::conn::PgConn;
use crate::connectors::process::Child;
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    pub rows: u64,
    /// Decimal sum of `hashtextextended(row::text, 0)` over all rows; `-` when only rows
    /// were counted.
    pub checksum: String,
}

/// Keyed by `schema.table`.
pub type DatabaseStats = BTreeMap<String, TableStats>;

/// Session settings that make a row's text form the same on every server and session.
const STABLE_TEXT: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; \
    SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; \
    SET LOCAL bytea_output = 'hex';";

/// Ordinary tables whose data a dump carries: not catalogs, not owned by an extension.
const TABLES: &str = "SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname) \
    ORDER BY n.nspname, c.relname), '[]') FROM pg_class c \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
    AND d.objid = c.oid AND d.deptype = 'e')";

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Counts (and with `checksums`, checksums) every table of `db`, inside exported snapshot
/// `snapshot` when given, so the figures match a dump taken in that snapshot exactly.
pub fn collect(
    conn: &PgConn,
    db: &str,
    snapshot: Option<&str>,
    checksums: bool,
) -> Result<DatabaseStats> {
    let tables: Vec<(String, String)> = conn.query(db, TABLES)?;
    if tables.is_empty() {
        return Ok(DatabaseStats::new());
    }
    let mut script = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n");
    if let Some(s) = snapshot {
        script.push_str(&format!(
            "SET TRANSACTION SNAPSHOT '{}';\n",
            s.replace('\'', "")
        ));
    }
    script.push_str(STABLE_TEXT);
    script.push('\n');
    let checksum = if checksums {
        "coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)"
    } else {
        "'-'"
    };
    for (schema, table) in &tables {
        script.push_str(&format!(
            "SELECT count(*) || ' ' || {checksum} FROM {}.{} t;\n",
            ident(schema),
            ident(table)
        ));
    }
    script.push_str("COMMIT;\n");
    let mut cmd = conn.psql(db);
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = Child::spawn(cmd, format!("table checksums of database {db}"))?;
    let mut stdin = child.take_stdin()?;
    let mut stdout = child.take_stdout()?;
    // Feed the script on a thread: a large script and a large answer would otherwise deadlock.
    let feeder = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let mut out = String::new();
    let read = std::io::Read::read_to_string(&mut stdout, &mut out);
    let fed = feeder.join();
    child.wait().map_err(|e| conn.explain(e))?;
    read.map_err(|e| Error::new(ErrorKind::Source, "reading checksums").with_source(e))?;
    if !matches!(fed, Ok(Ok(()))) {
        return Err(Error::new(
            ErrorKind::Source,
            "psql stopped reading the checksum script",
        ));
    }
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != tables.len() {
        return Err(Error::new(
            ErrorKind::Source,
            format!(
                "expected {} checksum lines from psql, got {}",
                tables.len(),
                lines.len()
            ),
        ));
    }
    let mut stats = DatabaseStats::new();
    for ((schema, table), line) in tables.iter().zip(lines) {
        let (rows, checksum) = line
            .split_once(' ')
            .and_then(|(r, c)| Some((r.parse::<u64>().ok()?, c.to_string())))
            .ok_or_else(|| Error::new(ErrorKind::Source, format!("bad checksum line '{line}'")))?;
        stats.insert(format!("{schema}.{table}"), TableStats { rows, checksum });
    }
    Ok(stats)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mismatch {
    pub table: String,
    pub expected: Option<TableStats>,
    pub actual: Option<TableStats>,
}

/// Tables whose rows or checksum differ, or that are missing after the restore. Tables the
/// target has beyond the backup's are not mismatches (a restore into a database with --clean
/// leaves unrelated objects alone).
pub fn compare(expected: &DatabaseStats, actual: &DatabaseStats) -> Vec<Mismatch> {
    expected
        .iter()
        .filter(|(t, e)| actual.get(*t) != Some(e))
        .map(|(t, e)| Mismatch {
            table: t.clone(),
            expected: Some(e.clone()),
            actual: actual.get(t).cloned(),
        })
        .collect()
}
