//! PostgreSQL through the datastore interface: configuration, logical restore into a server,
//! point-in-time recovery into a data directory, a sandbox recovery, and the table verdict.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::logical::{self, RestoreReport};
use super::neighbours::{self, SearchCheck};
use super::pitr::{self, PitrOptions, PitrReport, RecoveryTarget};
use super::server::{self, ThrowawayCluster};
use super::verify::TableStats;
use super::{Mode, PgConn, PgFacts, PgSettings, PostgresSource, Verify};
use crate::backup::Source;
use crate::catalog::Snapshots;
use crate::connectors::interface::Tier;
use crate::connectors::interface::{
    fields_of, read_secret, ConfigError, Connector, Datastore, Health, Kind, LogArchive, Mismatch,
    Point, Recovery, RestoreInput, RestoreOutcome, RestoreRequest, Restored, Section, Timings,
    Verdict,
};
use crate::connectors::interface::{newest_snapshot, parse_time, RecoveryPoint};
use crate::connectors::sandbox::Throwaway;
use crate::error::{Error, Result, ResultExt};
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::stats::human_bytes;

pub struct PostgresConnector;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// postgres://user@host:port/maintenance-db?sslmode=...
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// logical, physical (default: logical).
    #[serde(default)]
    pub modes: Vec<Mode>,
    /// The client tools to use (default: those matching the server's version).
    pub bin_dir: Option<PathBuf>,
    /// Databases dumped at once (default 2).
    pub jobs: Option<usize>,
    pub verify: Option<Verify>,
    /// Where wal-push/wal-fetch keep their bookkeeping and read-ahead.
    pub wal_spool_dir: Option<PathBuf>,
    /// How long a base backup waits while archiving keeps failing (default 60).
    pub archive_wait_secs: Option<u64>,
    /// Where `recover` lays out a base backup, replays the WAL and starts the server: the
    /// data directory of the server this source reads. Without it, `recover` restores the
    /// logical dumps into the server at `url`.
    pub recover_data_dir: Option<PathBuf>,
}

struct PostgresDatastore {
    name: String,
    settings: Settings,
}

/// How a PostgreSQL snapshot is restored (flags of `bulwark restore`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    database: Vec<String>,
    #[serde(default)]
    create: bool,
    #[serde(default)]
    clean: bool,
    #[serde(default)]
    globals: bool,
    #[serde(default)]
    replace_passwords: bool,
    jobs: Option<u32>,
    pg_bin_dir: Option<PathBuf>,
    #[serde(default)]
    pitr: bool,
    target_time: Option<String>,
    target_lsn: Option<String>,
    target_xid: Option<String>,
    target_name: Option<String>,
    target_timeline: Option<u32>,
    #[serde(default)]
    no_archive: bool,
    #[serde(default)]
    allow_gap: bool,
    #[serde(default)]
    clear_unfinished: bool,
}

impl Options {
    fn recovery_target(&self) -> RecoveryTarget {
        match (
            &self.target_time,
            &self.target_lsn,
            &self.target_xid,
            &self.target_name,
        ) {
            (Some(t), ..) => RecoveryTarget::Time(t.clone()),
            (_, Some(l), ..) => RecoveryTarget::Lsn(l.clone()),
            (_, _, Some(x), _) => RecoveryTarget::Xid(x.clone()),
            (.., Some(n)) => RecoveryTarget::Name(n.clone()),
            _ => RecoveryTarget::Latest,
        }
    }

    /// The tools to restore with: --pg-bin-dir, else the configured source's bin_dir.
    fn bin_dir(&self, req: &RestoreRequest) -> Option<PathBuf> {
        self.pg_bin_dir.clone().or_else(|| {
            req.configured
                .as_ref()
                .and_then(|s| s.parse::<Settings>().ok())
                .and_then(|s| s.bin_dir)
        })
    }
}

impl Settings {
    pub fn conn(&self, name: &str) -> Result<PgConn> {
        let password = read_secret(
            name,
            self.password_file.as_deref(),
            self.password_env.as_deref(),
        )?;
        Ok(PgConn::parse(&self.url)?
            .with_password(password)
            .with_bin_dir(self.bin_dir.clone()))
    }
}

impl Connector for PostgresConnector {
    fn kind(&self) -> Kind {
        Kind::Postgres
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
        let mut s: Settings = section.parse()?;
        PgConn::parse(&s.url).map_err(|e| ConfigError::new("url", e.to_string()))?;
        if s.jobs == Some(0) {
            return Err(ConfigError::new("jobs", "must be at least 1"));
        }
        for p in [
            &mut s.password_file,
            &mut s.wal_spool_dir,
            &mut s.bin_dir,
            &mut s.recover_data_dir,
        ] {
            *p = p.as_ref().map(|p| section.path(p));
        }
        Ok(Box::new(PostgresDatastore {
            name: name.to_string(),
            settings: s,
        }))
    }

    fn restore(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Postgres)?;
        if opts.pitr {
            let target = PathBuf::from(req.target()?);
            return recover(input, req, &opts, &target, false);
        }
        let pitr_only = [
            ("--target-time", opts.target_time.is_some()),
            ("--target-lsn", opts.target_lsn.is_some()),
            ("--target-xid", opts.target_xid.is_some()),
            ("--target-name", opts.target_name.is_some()),
            ("--target-timeline", opts.target_timeline.is_some()),
            ("--no-archive", opts.no_archive),
            ("--allow-gap", opts.allow_gap),
            ("--start", req.start),
            ("--port", req.port.is_some()),
        ];
        req.refuse(Kind::Postgres, &pitr_only)?;
        let target = req.target()?;
        if !(target.starts_with("postgres://") || target.starts_with("postgresql://")) {
            return Err(Error::invalid(format!(
                "a logical PostgreSQL snapshot restores into a server: --target postgres://user@host:port/ (not '{target}'); a base backup restores into a directory with --pitr"
            )));
        }
        restore_logical(
            input,
            req,
            &opts,
            PgConn::parse(target)?
                .with_password(req.secret.clone())
                .with_bin_dir(opts.bin_dir(req)),
        )
    }

    /// Logical dumps are restored into a throwaway cluster and their tables verified; a
    /// base backup (a snapshot without dumps, or --pitr / a recovery target) is recovered
    /// into a throwaway data directory, started on a free port with archiving off, and its
    /// replay end checked. Either is stopped and removed.
    fn sandbox(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Postgres)?;
        req.refuse(
            Kind::Postgres,
            &[
                ("--dry-run", req.dry_run),
                ("--start", req.start),
                ("--port", req.port.is_some()),
                ("--create", opts.create),
                ("--clean", opts.clean),
            ],
        )?;
        let facts = PgFacts::of(input.snapshot)?;
        let wants_recovery = opts.pitr || opts.recovery_target() != RecoveryTarget::Latest;
        if facts.databases.is_empty() || wants_recovery {
            return sandbox_recovery(input, req, &opts);
        }
        let bin = server::server_bin_dir(
            opts.pg_bin_dir.as_deref(),
            opts.bin_dir(req).as_deref(),
            facts.server_version_num / 10000,
        )?;
        req.progress.send(crate::progress::Progress::Phase(
            "starting a sandbox cluster".into(),
        ));
        let cluster = ThrowawayCluster::start(&req.scratch, &bin)?;
        let sandbox_opts = Options {
            create: true,
            globals: facts.globals.is_some(),
            ..opts
        };
        let mut restored = restore_logical(input, req, &sandbox_opts, cluster.conn.clone())?;
        drop(cluster);
        restored.outcome.sandbox = true;
        restored
            .lines
            .push("the sandbox cluster was stopped and removed".into());
        Ok(restored)
    }

    /// A base backup with its WAL: replayed to the end of the archive, to the moment asked
    /// for, or to the backup set's restore point (none recorded: no replay to the set).
    fn replay_options(
        &self,
        snapshot: &Snapshot,
        point: &Point,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let base = PgFacts::of(snapshot).ok()?.physical?;
        let mut options = serde_json::Map::new();
        options.insert("pitr".into(), true.into());
        match point {
            Point::Latest => {}
            Point::Time { text, .. } => {
                options.insert("target_time".into(), text.clone().into());
            }
            Point::Set(_) => {
                options.insert("target_name".into(), base.set_point?.name.into());
            }
        }
        Some(options)
    }

    /// The set's restore point and its LSN (with a base backup), the server's version.
    fn consistency_point(&self, snapshot: &Snapshot) -> Option<serde_json::Value> {
        let facts = PgFacts::of(snapshot).ok()?;
        let point = facts.physical.and_then(|p| p.set_point);
        Some(serde_json::json!({
            "server_version": facts.server_version,
            "restore_point": point.as_ref().map(|p| &p.name),
            "lsn": point.as_ref().map(|p| &p.lsn),
        }))
    }

    fn log_archive(&self) -> Option<&'static dyn LogArchive> {
        Some(&super::wal::WalLog)
    }

    /// The newest snapshot, or, when a base backup of the source exists, the moment the
    /// newest WAL segment was archived with no gap after that base: what replaying the
    /// archive reaches.
    fn recovery_point(
        &self,
        repo: &Repository,
        snapshots: &Snapshots,
        source: &str,
    ) -> Result<Option<RecoveryPoint>> {
        let by_snapshot = newest_snapshot(snapshots, source);
        let base = snapshots
            .list
            .iter()
            .filter(|(_, s)| s.source.name == source && has_base(s))
            .max_by_key(|(_, s)| s.time);
        let Some((id, snap)) = base else {
            return Ok(by_snapshot);
        };
        let wal_source = PgFacts::of(snap)?
            .physical
            .map(|p| p.wal_source)
            .unwrap_or_else(|| source.to_string());
        let status = super::wal::status(&super::wal::WalArchive::new(repo, &wal_source)?)?;
        let gapless = status.timelines.iter().all(|t| t.gaps.is_empty());
        let by_wal = match (status.newest_archived, gapless) {
            (Some(t), true) if t > snap.time => Some(RecoveryPoint {
                time: t,
                snapshot: *id,
                via: "wal".into(),
            }),
            _ => None,
        };
        Ok([by_snapshot, by_wal]
            .into_iter()
            .flatten()
            .max_by_key(|p| p.time))
    }
}

impl Datastore for PostgresDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Postgres
    }

    /// Version, role (primary or replica), and the archiver: failures since the last success
    /// and the age of the last archived segment.
    fn health(&self) -> Health {
        let probe = || -> Result<Health> {
            let conn = self.settings.conn(&self.name)?;
            let v: serde_json::Value = conn.query(
                &conn.maintenance_db,
                "SELECT json_build_object(\
                   'version', current_setting('server_version'), \
                   'in_recovery', pg_is_in_recovery(), \
                   'archive_mode', current_setting('archive_mode'), \
                   'archived_count', archived_count, 'failed_count', failed_count, \
                   'last_archived_wal', last_archived_wal, \
                   'last_archived_age_secs', extract(epoch FROM now() - last_archived_time), \
                   'last_failed_wal', last_failed_wal, 'last_failed_time', last_failed_time, \
                   'failing', coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false)) \
                 FROM pg_stat_archiver",
            )?;
            let mut h = Health {
                reachable: true,
                version: v["version"].as_str().map(str::to_string),
                role: Some(
                    if v["in_recovery"] == true {
                        "replica"
                    } else {
                        "primary"
                    }
                    .into(),
                ),
                ..Health::default()
            };
            if v["failing"] == true {
                h.warnings.push(format!(
                    "WAL archiving is failing: {} failed at {} and nothing was archived since",
                    v["last_failed_wal"].as_str().unwrap_or("?"),
                    v["last_failed_time"].as_str().unwrap_or("?")
                ));
            }
            let archiving = v["archive_mode"].as_str().is_some_and(|m| m != "off");
            if archiving
                && v["archived_count"] == 0
                && self.settings.modes.contains(&Mode::Physical)
            {
                h.warnings
                    .push("archive_mode is on but no WAL segment was archived yet".into());
            }
            for key in [
                "archive_mode",
                "archived_count",
                "failed_count",
                "last_archived_wal",
                "last_archived_age_secs",
                "last_failed_wal",
            ] {
                h.detail(key, &v[key]);
            }
            Ok(h)
        };
        probe().unwrap_or_else(Health::unreachable)
    }

    /// A source with base backups archives its WAL (a base backup waits for it).
    fn archives_continuously(&self) -> bool {
        self.settings.modes.contains(&Mode::Physical)
    }

    /// With `recover_data_dir` and a base backup: point-in-time recovery into that directory
    /// (which must be empty), then the server is started. Otherwise the logical dumps are
    /// restored into the server at `url`, roles first; databases there that hold objects are
    /// cleaned first when replaced.
    fn recovery(&self, snapshot: &Snapshot, point: &Point, replace: bool) -> Result<Recovery> {
        let facts = PgFacts::of(snapshot)?;
        let s = &self.settings;
        let mut options = serde_json::Map::new();
        if let (Some(dir), Some(_)) = (&s.recover_data_dir, &facts.physical) {
            let method = format!(
                "point-in-time recovery of the base backup and the archived WAL into {}, then started",
                dir.display()
            );
            let Some(replay) = PostgresConnector.replay_options(snapshot, point) else {
                return Ok(Recovery {
                    method,
                    blocked: Some(
                        "the backup set has no restore point to stop at (the backup's role could not create one): recover with --target-time instead".into(),
                    ),
                    ..Recovery::default()
                });
            };
            let held = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
            let unfinished = dir.join(pitr::UNFINISHED).exists();
            let mut options = replay;
            let (occupied, blocked) = match (held, unfinished, replace) {
                (0, ..) => (None, None),
                (_, true, true) => {
                    options.insert("clear_unfinished".into(), true.into());
                    (Some("a recovery by Bulwark that did not finish: cleared and begun again".to_string()), None)
                }
                (_, true, false) => (None, Some(format!(
                    "{} holds a recovery by Bulwark that did not finish: run again with --replace to clear it and begin again",
                    dir.display()
                ))),
                (_, false, _) => (None, Some(format!(
                    "{} is not empty ({held} entries): stop its server and move it away; a recovery never writes over a data directory",
                    dir.display()
                ))),
            };
            return Ok(Recovery {
                target: dir.display().to_string(),
                options,
                start: true,
                method,
                occupied,
                blocked,
                ..Recovery::default()
            });
        }
        if facts.databases.is_empty() {
            return Ok(Recovery {
                method: format!(
                    "by hand: set recover_data_dir in [sources.{}] to recover its base backup, or `bulwark restore --pitr --target DIR`",
                    self.name
                ),
                manual: true,
                ..Recovery::default()
            });
        }
        let conn = s.conn(&self.name)?;
        let occupied: Vec<&String> = facts
            .databases
            .keys()
            .filter(|db| logical::holds_objects(&conn, db).unwrap_or(false))
            .collect();
        options.insert("create".into(), true.into());
        options.insert("globals".into(), facts.globals.is_some().into());
        if replace {
            options.insert("clean".into(), true.into());
        }
        // The password travels apart from the URL, so that the plan can show the URL.
        let mut target = url::Url::parse(&s.url)
            .map_err(|e| Error::invalid(format!("bad PostgreSQL URL: {e}")))?;
        let in_url = target.password().map(str::to_string);
        let _ = target.set_password(None);
        Ok(Recovery {
            target: target.to_string(),
            options,
            secret: read_secret(
                &self.name,
                s.password_file.as_deref(),
                s.password_env.as_deref(),
            )?
            .or(in_url),
            method: format!(
                "logical restore of {} into {}, roles first",
                facts
                    .databases
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                conn.describe()
            ),
            occupied: (!occupied.is_empty()).then(|| {
                format!(
                    "database(s) {} hold objects (cleaned and restored when replaced)",
                    occupied
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            needs_server: true,
            ..Recovery::default()
        })
    }

    fn source(&self) -> Result<Box<dyn Source>> {
        let s = &self.settings;
        Ok(Box::new(PostgresSource::new(
            &self.name,
            PgSettings {
                conn: s.conn(&self.name)?,
                databases: s.databases.clone(),
                exclude_databases: s.exclude_databases.clone(),
                modes: if s.modes.is_empty() {
                    vec![Mode::Logical]
                } else {
                    s.modes.clone()
                },
                jobs: s.jobs.unwrap_or(2),
                verify: s.verify.unwrap_or_default(),
                archive_wait: Duration::from_secs(s.archive_wait_secs.unwrap_or(60)),
            },
        )?))
    }
}

/// A base backup recovered into a throwaway data directory.
fn sandbox_recovery(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    opts: &Options,
) -> Result<Restored> {
    if !has_base(input.snapshot) && !input.latest {
        return Err(Error::invalid(format!(
            "snapshot {} holds no base backup to recover (source modes = [\"physical\"])",
            input.id.short()
        )));
    }
    let dir = tempfile::Builder::new()
        .prefix("bulwark-pg-sandbox-")
        .tempdir_in(&req.scratch)
        .with_context(|| format!("creating a sandbox directory in {}", req.scratch.display()))?;
    let _removed = Throwaway::dir(dir.path());
    // The server runs as the owner of the restored files, who must reach the data dir.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .with_context(|| format!("opening {} to the server's user", dir.path().display()))?;
    recover(input, req, opts, &dir.path().join("data"), true)
}

fn has_base(s: &Snapshot) -> bool {
    PgFacts::of(s).is_ok_and(|f| f.physical.is_some())
}

/// Point-in-time recovery into `dir`. With a target time and no snapshot named, the base is
/// the newest one finished before that time. A sandbox starts the server on a free port with
/// archiving off and stops it again.
fn recover(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    opts: &Options,
    dir: &Path,
    sandbox: bool,
) -> Result<Restored> {
    let logical_only = [
        ("--database", !opts.database.is_empty()),
        ("--globals", opts.globals),
        ("--jobs", opts.jobs.is_some()),
    ];
    req.refuse(Kind::Postgres, &logical_only)?;
    let (id, snap) = match (&opts.target_time, input.latest) {
        (Some(t), true) => {
            let when = parse_time(t)?;
            input
                .snapshots
                .list
                .iter()
                .filter(|(_, s)| s.source.name == input.snapshot.source.name)
                .filter(|(_, s)| has_base(s) && s.time < when)
                .max_by_key(|(_, s)| s.time)
                .map(|(id, s)| (*id, s))
                .ok_or_else(|| Error::invalid(format!("no base backup finished before {t}")))?
        }
        _ => (input.id, input.snapshot),
    };
    if !has_base(snap) {
        return Err(Error::invalid(format!(
            "snapshot {} holds no base backup",
            id.short()
        )));
    }
    let callback = req.callback.clone().map_err(Error::invalid)?;
    let mut fetch = format!("{callback} wal-fetch --source '{}' %f %p", snap.source.name);
    if opts.allow_gap {
        fetch.push_str(" --allow-gap");
    }
    let port = match (sandbox, req.port) {
        (true, _) => Some(crate::connectors::free_port()?),
        (false, p) => p,
    };
    let pitr_opts = PitrOptions {
        target_dir: dir.to_path_buf(),
        target: Some(opts.recovery_target()),
        restore_command: fetch,
        no_archive: opts.no_archive || sandbox,
        start: req.start || sandbox,
        allow_gap: opts.allow_gap,
        timeline: opts.target_timeline,
        clear_unfinished: opts.clear_unfinished,
        dry_run: req.dry_run,
        port,
        bin_dir: opts.pg_bin_dir.clone(),
        timeout: None,
        progress: req.progress.clone(),
    };
    // A sandbox's server is stopped whatever happens; registered before it can start.
    let stopper = sandbox.then(|| {
        let (dir, bin) = (dir.to_path_buf(), opts.pg_bin_dir.clone());
        Throwaway::new(move || server::stop(&dir, bin.as_deref()))
    });
    let started = Instant::now();
    let report = pitr::restore_pitr(input.repo, snap, &pitr_opts)?;
    drop(stopper);
    let mut incomplete = Vec::new();
    if report.short_by_request() {
        incomplete.push(
            "recovery stops at a gap in the WAL archive (--allow-gap): later WAL is not replayed"
                .to_string(),
        );
    }
    // The replay end was checked against the plan inside restore_pitr: a server that came
    // up somewhere else fails there. What the check covered is the verdict.
    let verdict = report.replay_end.as_ref().map(|end| Verdict {
        checked: 1,
        mismatches: Vec::new(),
        notes: vec![format!(
            "replay ended at {} on timeline {} ({}), as planned",
            end.lsn, end.timeline, end.reason
        )],
    });
    let outcome = RestoreOutcome {
        snapshot: id,
        sandbox,
        dry_run: req.dry_run,
        items: report.files,
        bytes: report.bytes,
        timings: Timings {
            total_secs: started.elapsed().as_secs_f64(),
            transfer_secs: report.layout_secs,
            ready_secs: report.recovery_secs,
            verify_secs: None,
        },
        verdict,
        incomplete,
        ..RestoreOutcome::of(input, report.data_dir.display().to_string(), "files")
    };
    let lines = pitr_lines(&id.short(), &report, req.dry_run, sandbox);
    Ok(Restored::new(outcome, &report, lines))
}

fn restore_logical(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    opts: &Options,
    target: PgConn,
) -> Result<Restored> {
    let lopts = logical::RestoreOptions {
        databases: opts.database.clone(),
        create: opts.create,
        clean: opts.clean,
        globals: opts.globals,
        replace_passwords: opts.replace_passwords,
        jobs: opts.jobs.unwrap_or(1) as usize,
        spool_dir: req.scratch.clone(),
        verify: req.verify,
        sample: req.sample,
        dry_run: req.dry_run,
        progress: req.progress.clone(),
    };
    let report = logical::restore(input.repo, input.snapshot, &target, &lopts)?;
    let secs: f64 = report.databases.iter().map(|d| d.duration_secs).sum();
    let verdict = (req.verify && !req.dry_run).then(|| table_verdict(&report));
    let outcome = RestoreOutcome {
        dry_run: req.dry_run,
        items: report.databases.len() as u64,
        bytes: report.databases.iter().map(|d| d.bytes).sum(),
        timings: Timings {
            total_secs: secs,
            transfer_secs: secs,
            ready_secs: None,
            verify_secs: None,
        },
        verdict,
        ..RestoreOutcome::of(input, target.describe(), "databases")
    };
    let lines = logical_lines(&report, &target.describe(), req.dry_run);
    Ok(Restored::new(outcome, &report, lines))
}

/// Each table whose rows or checksum differ from the backup's, or that is missing.
fn table_verdict(report: &RestoreReport) -> Verdict {
    let mut v = Verdict::default();
    for d in &report.databases {
        v.checked += d.tables_verified as u64;
        for m in &d.mismatches {
            v.mismatches.push(Mismatch::new(
                "table",
                format!("{}.{}", d.database, m.table),
                format!("backup {}, restored {}", show(&m.expected), show(&m.actual)),
            ));
        }
        v.checked += d.searches_verified as u64;
        v.mismatches.extend(d.search_mismatches.iter().map(|s| {
            Mismatch::new(
                "search",
                format!("{}.{}", d.database, s.table),
                search_problem(s),
            )
        }));
        if d.sampled {
            v.notes.push(format!(
                "{}: sampled verification: row counts without checksums, one search per vector column",
                d.database
            ));
        }
    }
    v
}

fn search_problem(s: &SearchCheck) -> String {
    format!(
        "nearest neighbours of row {} by {}: {:.0}% of the backup's top-{} found, missing {}",
        s.query_key,
        s.column,
        s.overlap * 100.0,
        neighbours::TOP_K,
        s.missing.join(", ")
    )
}

fn show(s: &Option<TableStats>) -> String {
    s.as_ref().map_or("missing".to_string(), |s| s.to_string())
}

fn logical_lines(report: &RestoreReport, target: &str, dry_run: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(skipped) = &report.globals_skipped {
        if let Some(role) = &skipped.connecting_role {
            out.push(format!("globals: kept the attributes and password of {role}, the role this restore connects as"));
        }
        if !skipped.kept_passwords.is_empty() {
            out.push(format!(
                "globals: roles already on the target kept their passwords (--replace-passwords to change them): {}",
                skipped.kept_passwords.join(", ")
            ));
        }
    }
    out.extend(
        report
            .globals_errors
            .iter()
            .map(|e| format!("  globals: {e}")),
    );
    let verb = if dry_run { "would restore" } else { "restored" };
    for d in &report.databases {
        out.push(format!(
            "{verb} database {} ({:?}, {}) to {target} in {:.1}s; {} table(s) verified, {} mismatch(es)",
            d.database,
            d.action,
            human_bytes(d.bytes),
            d.duration_secs,
            d.tables_verified,
            d.mismatches.len()
        ));
        for m in &d.mismatches {
            out.push(format!(
                "  MISMATCH {}: backup {}, restored {}",
                m.table,
                show(&m.expected),
                show(&m.actual)
            ));
        }
        if d.searches_verified > 0 {
            out.push(format!(
                "  {} vector search(es) asked again, {} mismatch(es)",
                d.searches_verified,
                d.search_mismatches.len()
            ));
        }
        for s in &d.search_mismatches {
            out.push(format!(
                "  MISMATCH search {}: {}",
                s.table,
                search_problem(s)
            ));
        }
    }
    out
}

fn pitr_lines(id: &str, report: &PitrReport, dry_run: bool, sandbox: bool) -> Vec<String> {
    let plan = &report.plan;
    let timelines: Vec<String> = plan
        .chain
        .path
        .iter()
        .map(|s| s.timeline.to_string())
        .collect();
    let mut out = vec![format!(
        "WAL chain: {} .. {} ({} segments, timeline {}){}",
        plan.chain.first_segment,
        plan.chain.last_segment,
        plan.chain.segments,
        timelines.join(" -> "),
        if plan.chain.complete() {
            ", all archived".to_string()
        } else {
            format!(
                "; MISSING {}",
                plan.chain
                    .missing
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    )];
    if let Some(seg) = &plan.stops_at_gap {
        out.push(format!(
            "replay can reach segment {seg} at most (--allow-gap)"
        ));
    }
    if dry_run {
        out.push(format!(
            "would lay out base backup {id} (started {}) in {}",
            report.base_backup_start,
            report.data_dir.display()
        ));
        return out;
    }
    out.push(format!(
        "base backup {id} (started {}) laid out in {}: {} files, {} in {:.1}s",
        report.base_backup_start,
        report.data_dir.display(),
        report.files,
        human_bytes(report.bytes),
        report.layout_secs
    ));
    match (report.recovery_secs, report.timeline, &report.replay_end) {
        (Some(secs), Some(tli), Some(end)) => out.push(format!(
            "recovered and promoted in {secs:.1}s: replay ended at {} on timeline {} ({}); the server {} on timeline {tli}",
            end.lsn, end.timeline, end.reason,
            if sandbox { "ran (now stopped and removed)" } else { "runs" }
        )),
        _ => out.push(format!(
            "recovery is configured; start the server (pg_ctl -D {} start) to replay the WAL",
            report.data_dir.display()
        )),
    }
    out
}
