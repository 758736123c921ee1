//! SQLite: a live database copied consistently with SQLite's online backup API (other
//! processes may keep writing: the copy is one read transaction), checked with
//! `PRAGMA integrity_check`, counted and checksummed per table, and stored as one file.
//!
//! A snapshot of a sqlite source holds `sqlite/<file name>` and a `sqlite` fact with the
//! SQLite version, the integrity check's verdict and each table's rows and checksum.
//!
//! The consistent copy is a database file, so it is made in a temporary file first (in
//! `spool_dir`, default the system temp directory) and streamed from there; that is the one
//! place Bulwark stages a source on disk.

pub mod connector;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::backup::{SnapshotWriter, Source};
use crate::connectors::stream::stream_item;
use crate::connectors::Kind;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::snapshot::{Snapshot, SourceInfo};

/// Where the database lives in a snapshot.
const DIR: &str = "sqlite";

/// What a sqlite snapshot records about the copy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SqliteFacts {
    pub sqlite_version: String,
    /// The item path of the database file.
    pub file: String,
    pub bytes: u64,
    /// `ok`, or what `PRAGMA integrity_check` found.
    pub integrity: String,
    pub tables: BTreeMap<String, TableSum>,
}

/// A table's row count and an order-independent checksum of its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSum {
    pub rows: u64,
    pub checksum: u64,
}

impl std::fmt::Display for TableSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows, checksum {:016x}", self.rows, self.checksum)
    }
}

impl SqliteFacts {
    pub const KEY: &'static str = "sqlite";

    pub fn of(snap: &Snapshot) -> Result<Self> {
        let v = snap.facts.get(Self::KEY).ok_or_else(|| {
            Error::invalid(format!(
                "snapshot of '{}' ({}) is not a SQLite backup",
                snap.source.name, snap.source.kind
            ))
        })?;
        serde_json::from_value(v.clone())
            .map_err(|e| Error::corrupt(format!("snapshot's sqlite facts are unreadable: {e}")))
    }
}

pub struct SqliteSource {
    name: String,
    path: PathBuf,
    spool_dir: PathBuf,
    busy_timeout: Duration,
}

impl SqliteSource {
    pub fn new(name: &str, path: &Path, spool_dir: &Path, busy_timeout: Duration) -> Self {
        Self {
            name: name.to_string(),
            path: path.to_path_buf(),
            spool_dir: spool_dir.to_path_buf(),
            busy_timeout,
        }
    }
}

impl Source for SqliteSource {
    fn info(&self) -> SourceInfo {
        SourceInfo::new(&self.name, Kind::Sqlite)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.path.display().to_string()]
    }

    fn run(&mut self, w: &mut SnapshotWriter) -> Result<()> {
        let copy = tempfile::Builder::new()
            .prefix("bulwark-sqlite-")
            .tempfile_in(&self.spool_dir)
            .with_context(|| format!("creating a copy in {}", self.spool_dir.display()))?;
        copy_consistently(&self.path, copy.path(), self.busy_timeout)?;
        let db = open_read_only(copy.path())?;
        let integrity = integrity(&db)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "database.sqlite".into());
        let item_path = format!("{DIR}/{name}");
        let mut facts = SqliteFacts {
            sqlite_version: rusqlite::version().to_string(),
            file: item_path.clone(),
            integrity: integrity.clone(),
            ..SqliteFacts::default()
        };
        if integrity == "ok" {
            facts.tables = table_sums(&db)?;
        } else {
            // Stored all the same (it is what exists), but never as a complete backup.
            w.item_error(
                &item_path,
                format!("the database fails PRAGMA integrity_check: {integrity}"),
            );
        }
        drop(db);
        let file = std::fs::File::open(copy.path()).context("reading the copy")?;
        facts.bytes = w.put_stream(stream_item(&item_path), file)?;
        w.fact(
            SqliteFacts::KEY,
            serde_json::to_value(&facts).map_err(|e| Error::invalid(e.to_string()))?,
        );
        Ok(())
    }
}

/// A SQLite failure as a source error (not `Locked` or `Corrupt`: those name the repository).
fn sqlite_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::Source,
        format!("SQLite database {}: {e}", path.display()),
    )
}

/// Opens an existing database for reading; never creates one.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("SQLite database {} does not exist", path.display()),
        ));
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(path, e))
}

/// Copies `src` into `dst` in one step of the online backup API: one read transaction, so
/// the copy is the database as of one commit, whatever other processes write meanwhile.
/// Waits up to `busy` for a writer holding an exclusive lock.
fn copy_consistently(src: &Path, dst: &Path, busy: Duration) -> Result<()> {
    let from = open_read_only(src)?;
    let mut to = Connection::open(dst).map_err(|e| sqlite_error(dst, e))?;
    let backup = Backup::new(&from, &mut to).map_err(|e| sqlite_error(src, e))?;
    let deadline = Instant::now() + busy;
    loop {
        match backup.step(-1).map_err(|e| sqlite_error(src, e))? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            StepResult::Busy | StepResult::Locked => {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "SQLite database {} stayed locked by another process for {}s (busy_timeout_secs)",
                        src.display(),
                        busy.as_secs()
                    ),
                ))
            }
            // More: another step copies the rest.
            _ => {}
        }
    }
}

/// `ok`, or the problems `PRAGMA integrity_check` lists (the first ten).
pub fn integrity(db: &Connection) -> Result<String> {
    let mut stmt = db
        .prepare("PRAGMA integrity_check(10)")
        .map_err(|e| sqlite_error(Path::new("copy"), e))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| sqlite_error(Path::new("copy"), e))?;
    Ok(lines.join("; "))
}

/// Rows and checksum of every table (not SQLite's internal ones).
pub fn table_sums(db: &Connection) -> Result<BTreeMap<String, TableSum>> {
    let err = |e| sqlite_error(Path::new("copy"), e);
    let names: Vec<String> = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(err)?;
    let mut out = BTreeMap::new();
    for name in names {
        let sql = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
        let mut stmt = db.prepare(&sql).map_err(err)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).map_err(err)?;
        let mut sum = TableSum::default();
        while let Some(row) = rows.next().map_err(err)? {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for i in 0..columns {
                match row.get_ref(i).map_err(err)? {
                    ValueRef::Null => h.update(&[0]),
                    ValueRef::Integer(v) => {
                        h.update(&[1]);
                        h.update(&v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        h.update(&[2]);
                        h.update(&v.to_bits().to_le_bytes());
                    }
                    ValueRef::Text(t) => {
                        h.update(&[3]);
                        h.update(&(t.len() as u64).to_le_bytes());
                        h.update(t);
                    }
                    ValueRef::Blob(b) => {
                        h.update(&[4]);
                        h.update(&(b.len() as u64).to_le_bytes());
                        h.update(b);
                    }
                }
            }
            sum.rows += 1;
            // A sum of row hashes: the same rows in any order give the same checksum.
            sum.checksum = sum.checksum.wrapping_add(h.digest());
        }
        out.insert(name, sum);
    }
    Ok(out)
}
