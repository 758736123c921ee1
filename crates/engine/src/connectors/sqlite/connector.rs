//! SQLite through the datastore interface: configuration, restore to a file (or into a
//! directory), a sandbox copy, and the verdict: integrity check, then each table's rows and
//! checksum against the backup's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{integrity, open_read_only, table_sums, SqliteFacts, SqliteSource};
use crate::backup::Source;
use crate::connectors::interface::Tier;
use crate::connectors::interface::{
    fields_of, ConfigError, Connector, Datastore, Health, Kind, Mismatch, Point, Recovery,
    RestoreInput, RestoreOutcome, RestoreRequest, Restored, Section, Timings, Verdict,
};
use crate::connectors::sandbox::Throwaway;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::item_data::{find_items, ItemStream};
use crate::snapshot::Snapshot;

pub struct SqliteConnector;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The database file.
    path: PathBuf,
    /// How long to wait for a writer's exclusive lock (default 30).
    busy_timeout_secs: Option<u64>,
    /// Where the consistent copy is made before it is stored (default: the temp directory).
    spool_dir: Option<PathBuf>,
}

struct SqliteDatastore {
    name: String,
    settings: Settings,
}

/// How a SQLite snapshot is restored (flags of `bulwark restore`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Move an existing file aside (kept as `<name>.replaced-<unix time>`) instead of refusing.
    #[serde(default)]
    replace: bool,
}

/// Where a restored database goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A throwaway directory.
    Sandbox,
    /// A name nothing has yet.
    New,
    /// The name of an existing file, which is kept aside.
    Replace,
}

impl Connector for SqliteConnector {
    fn kind(&self) -> Kind {
        Kind::Sqlite
    }

    fn tier(&self) -> Tier {
        Tier::Database
    }

    fn restore_options(&self) -> &'static [&'static str] {
        fields_of::<Options>()
    }

    fn config_keys(&self) -> &'static [&'static str] {
        fields_of::<Settings>()
    }

    fn configure(&self, name: &str, section: &Section) -> Result<Box<dyn Datastore>, ConfigError> {
        let mut settings: Settings = section.parse()?;
        settings.path = section.path(&settings.path);
        settings.spool_dir = settings.spool_dir.map(|p| section.path(&p));
        Ok(Box::new(SqliteDatastore {
            name: name.to_string(),
            settings,
        }))
    }

    /// Into a new file (`--target FILE`) or, when the target is a directory, a file of the
    /// backed-up name in it. The data is written under a hidden name and verified before it
    /// takes the real one; an existing file is never overwritten.
    fn restore(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Sqlite)?;
        req.refuse(
            Kind::Sqlite,
            &[("--start", req.start), ("--port", req.port.is_some())],
        )?;
        let facts = SqliteFacts::of(input.snapshot)?;
        let target = PathBuf::from(req.target()?);
        let dest = if target.is_dir() {
            target.join(facts.file.rsplit('/').next().unwrap_or("database.sqlite"))
        } else {
            target
        };
        let place = match (dest.exists(), opts.replace) {
            (false, _) => Place::New,
            (true, true) => Place::Replace,
            (true, false) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} exists; a SQLite restore writes a new file (--replace keeps the old one aside)",
                        dest.display()
                    ),
                ))
            }
        };
        restore_file(input, req, &facts, &dest, place)
    }

    fn sandbox(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Sqlite)?;
        req.refuse(
            Kind::Sqlite,
            &[
                ("--start", req.start),
                ("--port", req.port.is_some()),
                ("--dry-run", req.dry_run),
                ("--replace", opts.replace),
            ],
        )?;
        let facts = SqliteFacts::of(input.snapshot)?;
        let dir = tempfile::Builder::new()
            .prefix("bulwark-sqlite-sandbox-")
            .tempdir_in(&req.scratch)
            .with_context(|| {
                format!("creating a sandbox directory in {}", req.scratch.display())
            })?;
        let _removed = Throwaway::dir(dir.path());
        restore_file(
            input,
            req,
            &facts,
            &dir.path().join("database.sqlite"),
            Place::Sandbox,
        )
    }
}

impl Datastore for SqliteDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Sqlite
    }

    /// Back to its own file; one there now is kept aside when replaced.
    fn recovery(&self, _snapshot: &Snapshot, _point: &Point, replace: bool) -> Result<Recovery> {
        let path = &self.settings.path;
        let mut options = serde_json::Map::new();
        if replace {
            options.insert("replace".into(), true.into());
        }
        Ok(Recovery {
            target: path.display().to_string(),
            options,
            method: format!("the database file restored to {}", path.display()),
            occupied: std::fs::metadata(path).ok().map(|m| {
                format!(
                    "{} exists ({}; kept aside when replaced)",
                    path.display(),
                    crate::stats::human_bytes(m.len())
                )
            }),
            ..Recovery::default()
        })
    }

    fn source(&self) -> Result<Box<dyn Source>> {
        let s = &self.settings;
        Ok(Box::new(SqliteSource::new(
            &self.name,
            &s.path,
            &s.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            Duration::from_secs(s.busy_timeout_secs.unwrap_or(30)),
        )))
    }

    /// The file opens as a database; its journal mode as the role, its size as a detail.
    fn health(&self) -> Health {
        let path = &self.settings.path;
        let probe = || -> Result<Health> {
            let db = open_read_only(path)?;
            let mode: String = db
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .map_err(|e| Error::new(ErrorKind::Source, format!("{}: {e}", path.display())))?;
            let mut h = Health {
                reachable: true,
                version: Some(rusqlite::version().to_string()),
                role: Some(format!("journal_mode={mode}")),
                ..Health::default()
            };
            h.detail(
                "bytes",
                std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            );
            Ok(h)
        };
        probe().unwrap_or_else(Health::unreachable)
    }
}

fn restore_file(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    facts: &SqliteFacts,
    dest: &Path,
    place: Place,
) -> Result<Restored> {
    let started = Instant::now();
    let mut lines = Vec::new();
    let outcome = RestoreOutcome {
        sandbox: place == Place::Sandbox,
        dry_run: req.dry_run,
        items: facts.tables.len() as u64,
        bytes: facts.bytes,
        ..RestoreOutcome::of(input, dest.display().to_string(), "tables")
    };
    if req.dry_run {
        lines.push(format!(
            "would restore {} ({} table(s)) from snapshot {} to {}",
            facts.file,
            facts.tables.len(),
            input.id.short(),
            dest.display()
        ));
        return Ok(Restored::new(outcome, facts, lines));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staged = tempfile::Builder::new()
        .prefix(".bulwark-restore-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a file in {}", parent.display()))?;
    let index = Arc::new(input.repo.load_index()?);
    let items = find_items(
        input.repo,
        index.clone(),
        input.snapshot,
        &[facts.file.as_str()],
    )?;
    let mut reader = ItemStream::open(input.repo, index, &items[&facts.file], req.progress.clone());
    let mut out = staged.as_file();
    std::io::copy(&mut reader, &mut out)
        .map_err(|e| Error::new(ErrorKind::Corrupt, e.to_string()).context(facts.file.clone()))?;
    out.sync_all().context("writing the restored database")?;
    let transfer_secs = started.elapsed().as_secs_f64();
    let (verdict, verify_secs) = if req.verify {
        let checking = Instant::now();
        (
            Some(verify(staged.path(), facts)?),
            Some(checking.elapsed().as_secs_f64()),
        )
    } else {
        (None, None)
    };
    if place == Place::Replace {
        let aside = dest.with_file_name(format!(
            "{}.replaced-{}",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            jiff::Timestamp::now().as_second()
        ));
        std::fs::rename(dest, &aside)
            .with_context(|| format!("moving {} aside to {}", dest.display(), aside.display()))?;
        lines.push(format!("the previous file was kept as {}", aside.display()));
    }
    staged.persist_noclobber(dest).map_err(|e| {
        Error::from(e.error).context(format!("moving into place at {}", dest.display()))
    })?;
    lines.push(format!(
        "{} {} from snapshot {} to {}: {} table(s), {} in {transfer_secs:.1}s",
        if place == Place::Sandbox {
            "sandbox restore of"
        } else {
            "restored"
        },
        facts.file,
        input.id.short(),
        dest.display(),
        facts.tables.len(),
        crate::stats::human_bytes(facts.bytes)
    ));
    if let Some(v) = &verdict {
        lines.push(format!(
            "  integrity check and {} table(s) compared by rows and checksum, {} mismatch(es)",
            facts.tables.len(),
            v.mismatches.len()
        ));
        lines.extend(v.mismatches.iter().map(|m| format!("  MISMATCH {m}")));
    }
    let outcome = RestoreOutcome {
        timings: Timings {
            total_secs: started.elapsed().as_secs_f64(),
            transfer_secs,
            ready_secs: None,
            verify_secs,
        },
        verdict,
        incomplete: crate::connectors::files::connector::partial_snapshot(input),
        ..outcome
    };
    Ok(Restored::new(outcome, facts, lines))
}

/// The restored file against the backup's figures: it must pass the integrity check, and
/// every table must have the rows and checksum recorded at backup time.
fn verify(path: &Path, facts: &SqliteFacts) -> Result<Verdict> {
    let mut v = Verdict::default();
    let db = open_read_only(path)?;
    let found = integrity(&db)?;
    v.checked += 1;
    if found != "ok" {
        v.mismatches.push(Mismatch::new(
            "database",
            facts.file.clone(),
            format!("integrity check: {found}"),
        ));
        return Ok(v);
    }
    let actual = table_sums(&db)?;
    for (table, expected) in &facts.tables {
        v.checked += 1;
        match actual.get(table) {
            Some(a) if a == expected => {}
            Some(a) => v.mismatches.push(Mismatch::new(
                "table",
                table.clone(),
                format!("{a}; the backup has {expected}"),
            )),
            None => v
                .mismatches
                .push(Mismatch::new("table", table.clone(), "missing")),
        }
    }
    for table in actual.keys().filter(|t| !facts.tables.contains_key(*t)) {
        v.mismatches
            .push(Mismatch::new("table", table.clone(), "not in the backup"));
    }
    Ok(v)
}
