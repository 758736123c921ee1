//! Logical backups: one `pg_dump -Fc -Z0` per database, streamed into the snapshot (several at
//! once), plus `pg_dumpall --globals-only`. Uncompressed custom format keeps table data as
//! plain COPY text, so unchanged rows deduplicate from one day to the next while pg_restore can
//! still restore selectively and in parallel.
//!
//! Each dump runs in a snapshot exported by a helper session. Every table's row count and
//! checksum are taken from the dump's own COPY text as it streams past (`dump_format`), so they
//! describe exactly the data in the dump at no extra read of the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::conn::{debian_bin_dir, PgConn};
use super::dump_format;
use super::globals;
use super::neighbours::{self, SearchCheck};
use super::verify::{self, Mismatch, TextSettings};
use super::{DatabaseFacts, PgFacts, PgSettings, ServerInfo, Verify};
use crate::backup::{SnapshotWriter, StreamSink};
use crate::connectors::process::Child;
use crate::connectors::stream::stream_item;
use crate::connectors::{ChannelReader, Tee};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::item_data::{find_items, ItemStream};
use crate::items::Item;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot::Snapshot;

const GLOBALS: &str = "logical/globals.sql";
/// Larger than any real globals dump (roles and tablespaces), small enough to hold.
const GLOBALS_MAX: u64 = 64 << 20;

/// `logical/databases/<name>.dump`, with any byte that is not safe in a path component
/// percent-encoded.
fn dump_path(db: &str) -> String {
    let mut name = String::new();
    for (i, b) in db.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    format!("logical/databases/{name}.dump")
}

/// The databases to dump: every one that accepts connections, or the configured ones (each of
/// which must exist), minus the excluded.
fn select_databases(settings: &PgSettings) -> Result<Vec<String>> {
    let conn = &settings.conn;
    let all: Vec<String> = conn.query(
        &conn.maintenance_db,
        "SELECT coalesce(json_agg(datname ORDER BY datname), '[]') FROM pg_database \
         WHERE datallowconn AND NOT datistemplate",
    )?;
    let mut chosen = if settings.databases.is_empty() {
        all.clone()
    } else {
        for db in &settings.databases {
            if !all.contains(db) {
                return Err(Error::invalid(format!(
                    "database '{db}' does not exist on {} (or does not accept connections); it has: {}",
                    conn.describe(),
                    all.join(", ")
                )));
            }
        }
        settings.databases.clone()
    };
    chosen.retain(|db| !settings.exclude_databases.contains(db));
    Ok(chosen)
}

pub(super) fn backup(
    settings: &PgSettings,
    server: &ServerInfo,
    w: &mut SnapshotWriter,
    facts: &mut PgFacts,
) -> Result<()> {
    let conn = &settings.conn;
    let databases = select_databases(settings)?;

    // Items go in path order: logical/databases/... sorts before logical/globals.sql.
    let dumped = Mutex::new(BTreeMap::new());
    let tasks = databases
        .iter()
        .map(|db| (stream_item(&dump_path(db)), db.clone()))
        .collect();
    w.put_streams(tasks, settings.jobs.max(1), |db, sink| {
        let f = dump_database(settings, &db, sink)?;
        dumped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(db, f);
        Ok(())
    })?;
    for (db, (f, warning)) in dumped.into_inner().unwrap_or_else(|p| p.into_inner()) {
        if let Some(warning) = warning {
            w.warn(&f.dump, warning);
        }
        facts.databases.insert(db, f);
    }

    let mut cmd = conn.tool("pg_dumpall");
    cmd.args(["--globals-only", "-d"])
        .arg(conn.conninfo(&conn.maintenance_db))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if !server.superuser {
        cmd.arg("--no-role-passwords");
    }
    let mut child = Child::spawn(cmd, "pg_dumpall --globals-only")?;
    let streamed = w.put_stream(stream_item(GLOBALS), child.take_stdout()?);
    child.finish(streamed).map_err(|e| conn.explain(e))?;
    facts.globals = Some(GLOBALS.into());
    Ok(())
}

/// A session holding an exported snapshot open, so other sessions can see exactly its data.
struct ExportedSnapshot {
    child: Child,
    stdin: ChildStdin,
    name: String,
    /// The session's text settings, which pg_dump's session shares (same role, database and
    /// environment).
    text: TextSettings,
}

#[derive(Deserialize)]
struct Exported {
    snapshot: String,
    timezone: String,
    bytea_output: String,
}

impl ExportedSnapshot {
    fn start(conn: &PgConn, db: &str) -> Result<Self> {
        let mut cmd = conn.psql(db);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = Child::spawn(cmd, format!("snapshot session on database {db}"))?;
        let mut stdin = child.take_stdin()?;
        let stdout = child.take_stdout()?;
        let mut line = String::new();
        let asked = stdin
            .write_all(
                b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n\
                  SELECT json_build_object('snapshot', pg_export_snapshot(), \
                  'timezone', current_setting('TimeZone'), \
                  'bytea_output', current_setting('bytea_output'));\n",
            )
            .and_then(|_| stdin.flush())
            .and_then(|_| BufReader::new(stdout).read_line(&mut line));
        let exported = asked
            .ok()
            .and_then(|_| serde_json::from_str::<Exported>(line.trim()).ok());
        let Some(exported) = exported else {
            drop(stdin);
            child.wait().map_err(|e| conn.explain(e))?;
            return Err(Error::new(
                ErrorKind::Source,
                format!("could not export a snapshot of database {db}"),
            ));
        };
        Ok(Self {
            child,
            stdin,
            name: exported.snapshot,
            text: TextSettings {
                timezone: exported.timezone,
                bytea_output: exported.bytea_output,
                encoding: None,
            },
        })
    }

    fn finish(mut self) -> Result<()> {
        let _ = self.stdin.write_all(b"COMMIT;\n");
        drop(self.stdin);
        self.child.wait()
    }
}

/// Dumps one database into `sink`; the warning says why its table figures are missing.
fn dump_database(
    settings: &PgSettings,
    db: &str,
    sink: &mut StreamSink,
) -> Result<(DatabaseFacts, Option<String>)> {
    let conn = &settings.conn;
    let mut verify = settings.verify;
    let mut warning = None;
    let columns = match verify {
        Verify::None => Vec::new(),
        _ => neighbours::vector_columns(conn, db).unwrap_or_else(|e| {
            warning = Some(format!(
                "no vector searches recorded, its pgvector columns could not be listed: {e}"
            ));
            Vec::new()
        }),
    };
    let snapshot = ExportedSnapshot::start(conn, db)?;
    let mut cmd = conn.tool("pg_dump");
    cmd.args(["-Fc", "-Z0", "--snapshot", &snapshot.name, "-d"])
        .arg(conn.conninfo(db))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = Child::spawn(cmd, format!("pg_dump of database {db}"))?;
    let stdout = child.take_stdout()?;
    // The dump goes to the repository and, through a channel, to a reader that takes each
    // table's figures from it.
    let (copied, summary) = if verify == Verify::None {
        (sink.copy_from(stdout), None)
    } else {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(16);
        let checksums = verify == Verify::Checksums;
        let mut teed = 0;
        std::thread::scope(|s| {
            let columns = &columns;
            let reader =
                s.spawn(move || dump_format::summarize(ChannelReader::new(rx), checksums, columns));
            // Dropping stdout when the copy ends also stops a pg_dump whose output we refused.
            let copied = sink.copy_from(Tee::new(stdout, tx, &mut teed));
            let summary = reader
                .join()
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Source, "the dump reader panicked")));
            (copied, Some(summary))
        })
    };
    let dumped = child.finish(copied).map_err(|e| conn.explain(e));
    let mut text = Some(snapshot.text.clone());
    let closed = snapshot.finish();
    let bytes = dumped?;
    closed?;
    let tables = match summary {
        None => Default::default(),
        Some(Ok(summary)) => {
            if let Some(t) = &mut text {
                t.encoding = summary.encoding;
            }
            summary.tables
        }
        Some(Err(e)) => {
            verify = Verify::None;
            text = None;
            warning = Some(format!(
                "no table figures recorded, so restores of it cannot be verified: {e}"
            ));
            Default::default()
        }
    };
    let facts = DatabaseFacts {
        dump: dump_path(db),
        bytes,
        verify,
        tables,
        text,
    };
    Ok((facts, warning))
}

#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Databases to restore; empty means all in the snapshot.
    pub databases: Vec<String>,
    /// Create databases that do not exist on the target.
    pub create: bool,
    /// Drop and recreate the dumped objects in a database that is not empty.
    pub clean: bool,
    /// Restore roles and tablespaces first.
    pub globals: bool,
    /// With `globals`: also give roles the target already has their passwords from the
    /// backup (never the connecting role's).
    pub replace_passwords: bool,
    /// pg_restore jobs; above 1 the dump is first written to `spool_dir`.
    pub jobs: usize,
    pub spool_dir: PathBuf,
    pub verify: bool,
    /// With `verify`: row counts instead of checksums, and one search per vector column.
    pub sample: bool,
    pub dry_run: bool,
    pub progress: Reporter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The database did not exist; pg_restore created it.
    Create,
    /// The database existed and was empty.
    Fill,
    /// The database had objects; the dumped ones were dropped and recreated.
    Clean,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseReport {
    pub database: String,
    pub action: Action,
    pub bytes: u64,
    pub duration_secs: f64,
    /// Tables whose row count (and checksum) were compared with the backup's.
    pub tables_verified: usize,
    pub mismatches: Vec<Mismatch>,
    /// Vector searches asked again, and those that did not find what the backup's found.
    pub searches_verified: usize,
    pub search_mismatches: Vec<SearchCheck>,
    /// Checksums were skipped and searches sampled (`--verify sample`).
    pub sampled: bool,
}

impl DatabaseReport {
    fn new(database: &str, action: Action, bytes: u64, sampled: bool) -> Self {
        Self {
            database: database.to_string(),
            action,
            bytes,
            duration_secs: 0.0,
            tables_verified: 0,
            mismatches: Vec::new(),
            searches_verified: 0,
            search_mismatches: Vec::new(),
            sampled,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Errors psql reported while restoring globals.
    pub globals_errors: Vec<String>,
    /// What the globals replay left alone on the target (set when globals were restored).
    pub globals_skipped: Option<globals::Skipped>,
    pub databases: Vec<DatabaseReport>,
}

/// The target's state for one database, decided before anything is written.
fn plan(target: &PgConn, db: &str, opts: &RestoreOptions) -> Result<Action> {
    let exists = database_exists(target, db)?;
    if !exists {
        if !opts.create {
            return Err(Error::invalid(format!(
                "database '{db}' does not exist on {}; pass --create to create it",
                target.describe()
            )));
        }
        return Ok(Action::Create);
    }
    let objects = relations(target, db)?;
    match (objects, opts.clean) {
        (0, _) => Ok(Action::Fill),
        (_, true) => Ok(Action::Clean),
        (n, false) => Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "database '{db}' on {} is not empty ({n} relations); refusing to restore into it without --clean",
                target.describe()
            ),
        )),
    }
}

fn database_exists(target: &PgConn, db: &str) -> Result<bool> {
    target.query(
        &target.maintenance_db,
        &format!(
            "SELECT to_json(EXISTS (SELECT 1 FROM pg_database WHERE datname = '{}'))",
            db.replace('\'', "''")
        ),
    )
}

/// The tables, views, sequences and indexes a database holds outside the system schemas.
fn relations(target: &PgConn, db: &str) -> Result<i64> {
    target.query(
        db,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
    )
}

/// True if database `db` exists on `target` and holds objects a restore would meet.
pub fn holds_objects(target: &PgConn, db: &str) -> Result<bool> {
    let exists = database_exists(target, db)?;
    Ok(exists && relations(target, db)? > 0)
}

/// Restores a logical snapshot's databases (and globals) into the server at `target`.
pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    target: &PgConn,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let facts = PgFacts::of(snap)?;
    if facts.databases.is_empty() {
        return Err(Error::invalid("this snapshot holds no logical dumps"));
    }
    let selected: Vec<(&String, &DatabaseFacts)> = if opts.databases.is_empty() {
        facts.databases.iter().collect()
    } else {
        opts.databases
            .iter()
            .map(|d| {
                facts.databases.get_key_value(d).ok_or_else(|| {
                    Error::invalid(format!(
                        "the snapshot has no database '{d}'; it has: {}",
                        facts
                            .databases
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect::<Result<_>>()?
    };
    let server = ServerInfo::query(target)?;
    // pg_restore must be at least as new as the pg_dump that wrote the archive.
    let mut target = target.clone();
    if target.bin_dir().is_none() {
        let major = server.major().max(facts.server_version_num / 10000);
        target = target.with_bin_dir(debian_bin_dir(major));
    }
    let actions = selected
        .iter()
        .map(|(db, _)| plan(&target, db, opts))
        .collect::<Result<Vec<_>>>()?;
    let mut report = RestoreReport::default();
    if opts.dry_run {
        for ((db, f), action) in selected.iter().zip(actions) {
            report
                .databases
                .push(DatabaseReport::new(db, action, f.bytes, opts.sample));
        }
        return Ok(report);
    }
    let index = Arc::new(repo.load_index()?);
    let globals = match (opts.globals, facts.globals.as_deref()) {
        (false, _) => None,
        (true, Some(g)) => Some(g),
        (true, None) => return Err(Error::invalid("this snapshot has no globals dump")),
    };
    let wanted: Vec<&str> = globals
        .into_iter()
        .chain(selected.iter().map(|(_, f)| f.dump.as_str()))
        .collect();
    let items = find_items(repo, index.clone(), snap, &wanted)?;
    if let Some(g) = globals {
        let (errors, skipped) = restore_globals(repo, &index, &items[g], &target, opts)?;
        report.globals_errors = errors;
        report.globals_skipped = Some(skipped);
    }
    for ((db, f), action) in selected.into_iter().zip(actions) {
        let started = Instant::now();
        opts.progress
            .send(Progress::Phase(format!("restoring database {db}")));
        let item = &items[&f.dump];
        let stream = ItemStream::open(repo, index.clone(), item, opts.progress.clone());
        pg_restore(&target, db, action, stream, opts).map_err(|e| {
            match &report.globals_skipped {
                // Name what changed just before, should the target now refuse us.
                Some(_) => e.context(format!(
                "restoring database {db} after the roles were replayed from the backup (--globals)"
            )),
                None => e,
            }
        })?;
        let mut r = DatabaseReport::new(db, action, item.size, opts.sample);
        if opts.verify && f.verify != Verify::None {
            opts.progress
                .send(Progress::Phase(format!("verifying database {db}")));
            let text = f.text.clone().unwrap_or_default();
            let expected = match opts.sample {
                true => verify::counts_only(&f.tables),
                false => f.tables.clone(),
            };
            let actual = verify::measure(&target, db, &expected, &text)?;
            r.tables_verified = expected.len();
            r.mismatches = verify::compare(&expected, &actual);
            let per_column = opts.sample.then_some(1);
            let searches = neighbours::check(&target, db, &f.tables, &text, per_column)?;
            r.searches_verified = searches.len();
            r.search_mismatches = searches.into_iter().filter(|s| !s.ok()).collect();
        }
        r.duration_secs = started.elapsed().as_secs_f64();
        report.databases.push(r);
    }
    Ok(report)
}

fn restore_globals(
    repo: &Repository,
    index: &Arc<crate::index::Index>,
    item: &Item,
    target: &PgConn,
    opts: &RestoreOptions,
) -> Result<(Vec<String>, globals::Skipped)> {
    opts.progress
        .send(Progress::Phase("restoring roles and tablespaces".into()));
    #[derive(Deserialize)]
    struct Roles {
        user: String,
        roles: BTreeSet<String>,
    }
    let roles: Roles = target.query(
        &target.maintenance_db,
        "SELECT json_build_object('user', current_user, \
         'roles', (SELECT json_agg(rolname) FROM pg_roles))",
    )?;
    // A globals dump is small (roles and tablespaces); it is read whole to be rewritten.
    if item.size > GLOBALS_MAX {
        return Err(Error::corrupt(format!(
            "the globals dump is {} bytes; more than {GLOBALS_MAX} is not a globals dump",
            item.size
        )));
    }
    let mut sql = String::new();
    ItemStream::open(repo, index.clone(), item, opts.progress.clone())
        .read_to_string(&mut sql)
        .map_err(|e| Error::new(ErrorKind::Io, "reading the globals dump").with_source(e))?;
    let (sql, skipped) = globals::filter(&sql, &roles.user, &roles.roles, opts.replace_passwords);
    // Not ON_ERROR_STOP: one failing statement (a tablespace whose directory is missing) must
    // not stop the others; every error is reported.
    let mut cmd = target.tool("psql");
    cmd.args(["-X", "-q", "-f", "-", "-d"])
        .arg(target.conninfo(&target.maintenance_db))
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let stderr = feed(Child::spawn(cmd, "psql restoring globals")?, sql.as_bytes())
        .map_err(|e| target.explain(e))?;
    let errors = stderr
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .map(|l| l.trim().to_string())
        .collect();
    Ok((errors, skipped))
}

/// Copies `input` into the child's stdin and waits for it; the child's failure, if any, is the
/// error reported (a broken pipe is only its symptom).
fn feed(mut child: Child, mut input: impl std::io::Read) -> Result<String> {
    let mut stdin = child.take_stdin()?;
    let copied = std::io::copy(&mut input, &mut stdin);
    drop(stdin);
    let exited = child.wait_with_stderr()?;
    copied.map_err(|e| Error::new(ErrorKind::Io, "streaming the dump").with_source(e))?;
    Ok(exited)
}

fn pg_restore(
    target: &PgConn,
    db: &str,
    action: Action,
    mut stream: ItemStream,
    opts: &RestoreOptions,
) -> Result<()> {
    let mut cmd = target.tool("pg_restore");
    cmd.arg("--exit-on-error").stdout(Stdio::null());
    match action {
        Action::Create => cmd
            .arg("--create")
            .arg("-d")
            .arg(target.conninfo(&target.maintenance_db)),
        Action::Fill => cmd.arg("-d").arg(target.conninfo(db)),
        Action::Clean => cmd
            .args(["--clean", "--if-exists", "-d"])
            .arg(target.conninfo(db)),
    };
    let what = format!("pg_restore of database {db}");
    if opts.jobs <= 1 {
        cmd.stdin(Stdio::piped());
        return feed(Child::spawn(cmd, what)?, stream)
            .map(|_| ())
            .map_err(|e| target.explain(e));
    }
    // Parallel pg_restore needs a file it can reopen and seek.
    let mut spool = tempfile::Builder::new()
        .prefix("bulwark-restore-")
        .suffix(".dump")
        .tempfile_in(&opts.spool_dir)
        .with_context(|| format!("creating a spool file in {}", opts.spool_dir.display()))?;
    std::io::copy(&mut stream, spool.as_file_mut()).with_context(|| {
        format!(
            "writing the dump of {db} to {} (--jobs needs room for one dump there)",
            opts.spool_dir.display()
        )
    })?;
    cmd.arg("-j")
        .arg(opts.jobs.to_string())
        .arg(spool.path())
        .stdin(Stdio::null());
    Child::spawn(cmd, what)?
        .wait()
        .map_err(|e| target.explain(e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dump_paths_are_safe_components() {
        assert_eq!(super::dump_path("app"), "logical/databases/app.dump");
        assert_eq!(
            super::dump_path("a/b c"),
            "logical/databases/a%2Fb%20c.dump"
        );
        assert_eq!(super::dump_path(".."), "logical/databases/%2E..dump");
        assert_eq!(
            super::dump_path("ünï"),
            "logical/databases/%C3%BCn%C3%AF.dump"
        );
    }
}
