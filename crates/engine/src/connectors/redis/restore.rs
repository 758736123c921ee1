//! Restoring a Redis snapshot three ways: as files in a directory (optionally started), key by
//! key into a running server with pipelined RESTOREs (TTLs kept as absolute expiries), or into
//! a throwaway sandbox server; each checked against the backup afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::rdb::{Entry, RdbReader, Record};
use super::resp::{Conn, RedisUrl, Reply};
use super::server::RedisServer;
use super::verify::{verify, Expected, Sampler, VerifyReport};
use super::{Census, RedisFacts, RDB_PATH};
use crate::connectors::free_port;
use crate::connectors::sandbox::Throwaway;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::item_data::{find_items, ItemStream};
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::restore::{ensure_empty_dir, restore, RestoreOptions};
use crate::snapshot::Snapshot;

/// What to do with keys the target already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Existing {
    /// Refuse to start when a database being restored is not empty.
    Refuse,
    /// Empty the databases being restored first.
    Flush,
    /// Overwrite keys that exist.
    Replace,
    /// Leave keys that exist alone.
    Skip,
}

#[derive(Clone)]
pub struct LiveOptions {
    pub existing: Existing,
    pub dry_run: bool,
    pub verify: bool,
    /// Keys compared value by value afterwards.
    pub sample: u64,
    pub progress: Reporter,
}

#[derive(Debug, Serialize, Default)]
pub struct LiveReport {
    pub target: String,
    pub dry_run: bool,
    pub restored: u64,
    /// Keys whose expiry passed before the restore reached them.
    pub expired: u64,
    /// Keys left alone because the target had them (--skip-existing).
    pub kept_existing: u64,
    /// Module values (the target would need the module; not restored).
    pub skipped_modules: u64,
    pub functions: u64,
    pub failed: u64,
    /// The first few failures, with their reasons.
    pub failures: Vec<String>,
    pub duration_secs: f64,
    pub keys_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

/// Commands in flight before their replies are read.
const PIPELINE_KEYS: usize = 1024;
const PIPELINE_BYTES: usize = 8 << 20;
const FAILURES_SHOWN: usize = 20;

/// The RDB version a server reads, from its version string.
fn rdb_version_read_by(redis_version: &str) -> u32 {
    let mut parts = redis_version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) {
        (m, _) if m >= 8 => 12,
        (7, n) if n >= 4 => 12,
        (7, n) if n >= 2 => 11,
        (7, _) => 10,
        (6, _) => 9,
        (5, _) => 9,
        _ => 8,
    }
}

fn open_rdb(repo: &Repository, snap: &Snapshot, progress: &Reporter) -> Result<ItemStream> {
    let index = Arc::new(repo.load_index()?);
    let items = find_items(repo, index.clone(), snap, &[RDB_PATH])?;
    let item = &items[RDB_PATH];
    progress.send(Progress::Total {
        items: 1,
        bytes: item.size,
    });
    Ok(ItemStream::open(repo, index, item, progress.clone()))
}

enum Pending {
    Select,
    Key(Vec<u8>),
    Function,
}

/// Restores into a running server.
pub fn restore_live(
    repo: &Repository,
    snap: &Snapshot,
    target: &RedisUrl,
    opts: &LiveOptions,
) -> Result<LiveReport> {
    let facts = RedisFacts::of(snap)?;
    let mut conn = Conn::open(target)?;
    let version = conn
        .info_field("server", "redis_version")?
        .unwrap_or_default();
    let readable = rdb_version_read_by(&version);
    if facts.rdb_version > readable {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the backup comes from Redis {} (RDB version {}); {} runs Redis {version}, which reads up to version {readable}: restore into Redis {} or newer, or restore the RDB as a file",
                facts.server_version, facts.rdb_version, target.describe(), facts.server_version
            ),
        ));
    }
    let mut report = LiveReport {
        target: target.describe(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut busy = Vec::new();
    for db in facts.census.databases.keys() {
        conn.cmd(&["SELECT", &db.to_string()])?;
        let n = conn.cmd(&["DBSIZE"])?.int().unwrap_or(0);
        if n > 0 {
            busy.push(format!("db {db} has {n} key(s)"));
        }
    }
    if !busy.is_empty() && opts.existing == Existing::Refuse {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} is not empty ({}); choose --flush (empty those databases first), --replace (overwrite keys) or --skip-existing (keep its keys)",
                target.describe(),
                busy.join(", ")
            ),
        ));
    }
    if opts.dry_run {
        report.restored = facts.census.keys();
        report.functions = facts.census.functions;
        return Ok(report);
    }
    if opts.existing == Existing::Flush {
        for db in facts.census.databases.keys() {
            conn.cmd(&["SELECT", &db.to_string()])?;
            conn.cmd(&["FLUSHDB"])?;
        }
    }
    let started = Instant::now();
    opts.progress.send(Progress::Phase(format!(
        "restoring keys into {}",
        target.describe()
    )));
    let sampler = Sampler::new(opts.sample, facts.census.keys());
    let mut expected = Expected::default();
    let reader = RdbReader::new(open_rdb(repo, snap, &opts.progress)?, true)?;
    let rdb_version = reader.version();
    let mut pending: Vec<Pending> = Vec::new();
    let mut pending_bytes = 0;
    let mut db = None;
    let replace = opts.existing == Existing::Replace;
    let census = Census::take(reader, |rec| {
        match rec {
            Record::Entry(e) => {
                if e.module.is_some() {
                    report.skipped_modules += 1;
                    return Ok(());
                }
                let now = jiff::Timestamp::now().as_millisecond();
                if e.expire_ms.is_some_and(|t| t <= now) {
                    report.expired += 1;
                    return Ok(());
                }
                if db != Some(e.db) {
                    conn.send(&[b"SELECT", e.db.to_string().as_bytes()])?;
                    pending.push(Pending::Select);
                    db = Some(e.db);
                }
                pending_bytes += send_restore(&mut conn, e, rdb_version, replace)?;
                pending.push(Pending::Key(e.key.clone()));
                if opts.verify {
                    expected.observe(e, &sampler)?;
                }
            }
            Record::Function(code) => {
                let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
                if replace {
                    args.push(b"REPLACE");
                }
                args.push(code);
                conn.send(&args)?;
                pending.push(Pending::Function);
            }
            _ => {}
        }
        if pending.len() >= PIPELINE_KEYS || pending_bytes >= PIPELINE_BYTES {
            drain(&mut conn, &mut pending, &mut report)?;
            pending_bytes = 0;
        }
        Ok(())
    })?;
    drain(&mut conn, &mut pending, &mut report)?;
    if let Some(why) = &census.unreadable {
        report.failed += 1;
        report
            .failures
            .push(format!("the rest of the RDB could not be read: {why}"));
    }
    report.duration_secs = started.elapsed().as_secs_f64();
    report.keys_per_sec = report.restored as f64 / report.duration_secs.max(1e-9);
    if opts.verify {
        opts.progress
            .send(Progress::Phase("comparing with the backup".into()));
        let exact = busy.is_empty() || opts.existing == Existing::Flush;
        let mut checked = verify(&mut conn, &expected, exact)?;
        checked.census_mismatch = census.differs_from(&facts.census);
        report.verify = Some(checked);
    }
    Ok(report)
}

/// Queues `RESTORE key ttl payload [REPLACE] [ABSTTL]`; returns the bytes queued.
fn send_restore(conn: &mut Conn, e: &Entry, version: u32, replace: bool) -> Result<usize> {
    let payload = e.dump_payload(version);
    let ttl = e.expire_ms.unwrap_or(0).to_string();
    let mut args: Vec<&[u8]> = vec![b"RESTORE", &e.key, ttl.as_bytes(), &payload];
    if replace {
        args.push(b"REPLACE");
    }
    if e.expire_ms.is_some() {
        args.push(b"ABSTTL");
    }
    conn.send(&args)?;
    Ok(payload.len() + e.key.len())
}

/// Sends what is queued and reads one reply per command.
fn drain(conn: &mut Conn, pending: &mut Vec<Pending>, report: &mut LiveReport) -> Result<()> {
    conn.flush()?;
    for p in pending.drain(..) {
        let reply = conn.reply()?;
        match (p, reply) {
            (Pending::Select, Reply::Error(e)) => {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!("{} cannot select a database: {e}", conn.describe()),
                ))
            }
            (Pending::Select, _) => {}
            (Pending::Key(_), Reply::Error(e)) if e.starts_with("BUSYKEY") => {
                report.kept_existing += 1
            }
            (Pending::Function, Reply::Error(e)) if e.contains("already exists") => {}
            (Pending::Key(k), Reply::Error(e)) => {
                report.failed += 1;
                if report.failures.len() < FAILURES_SHOWN {
                    report
                        .failures
                        .push(format!("{}: {e}", String::from_utf8_lossy(&k)));
                }
            }
            (Pending::Function, Reply::Error(e)) => {
                report.failed += 1;
                report.failures.push(format!("function library: {e}"));
            }
            (Pending::Key(_), _) => report.restored += 1,
            (Pending::Function, _) => report.functions += 1,
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct DirOptions {
    pub target: PathBuf,
    /// Start a redis-server on the restored files (daemonized, left running).
    pub start: bool,
    pub port: Option<u16>,
    pub verify: bool,
    pub sample: u64,
    pub progress: Reporter,
}

#[derive(Debug, Serialize)]
pub struct DirReport {
    pub target: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub layout_secs: f64,
    /// Set when the server was started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

/// Lays the RDB (and AOF files) out in an empty directory; with `start`, starts a server on
/// them, waits until it has loaded, and compares it with the backup.
pub fn restore_dir(repo: &Repository, snap: &Snapshot, opts: &DirOptions) -> Result<DirReport> {
    let facts = RedisFacts::of(snap)?;
    ensure_empty_dir(&opts.target, "a Redis restore")?;
    let started = Instant::now();
    let summary = restore(
        repo,
        snap,
        &RestoreOptions {
            target: opts.target.clone(),
            subtree: Some("redis".into()),
            progress: opts.progress.clone(),
            ..Default::default()
        },
    )?;
    if let Some(e) = summary.errors.first() {
        return Err(Error::corrupt(format!(
            "{} file(s) could not be restored, e.g. {}: {}",
            summary.errors.len(),
            e.path,
            e.message
        )));
    }
    let mut report = DirReport {
        target: opts.target.clone(),
        files: summary.files,
        bytes: summary.bytes,
        layout_secs: started.elapsed().as_secs_f64(),
        port: None,
        load_secs: None,
        verify: None,
    };
    if opts.start {
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let loading = Instant::now();
        opts.progress.send(Progress::Phase(format!(
            "starting redis-server on port {port}"
        )));
        let server = RedisServer::start(&opts.target, port, &[], true)?;
        report.port = Some(server.port);
        report.load_secs = Some(loading.elapsed().as_secs_f64());
        if opts.verify {
            report.verify = Some(check_loaded(&server, &opts.target, &facts, opts)?);
        }
    }
    Ok(report)
}

/// Compares a server that loaded `dir/dump.rdb` with that file.
fn check_loaded(
    server: &RedisServer,
    dir: &Path,
    facts: &RedisFacts,
    opts: &DirOptions,
) -> Result<VerifyReport> {
    opts.progress
        .send(Progress::Phase("comparing with the backup".into()));
    let rdb = dir.join("dump.rdb");
    let file = std::fs::File::open(&rdb).with_context(|| rdb.display().to_string())?;
    let sampler = Sampler::new(opts.sample, facts.census.keys());
    let mut expected = Expected::default();
    let census = Census::take(RdbReader::new(file, true)?, |rec| match rec {
        Record::Entry(e) if e.module.is_none() => expected.observe(e, &sampler),
        _ => Ok(()),
    })?;
    let mut conn = Conn::open(&server.url())?;
    let mut checked = verify(&mut conn, &expected, true)?;
    checked.census_mismatch = census.differs_from(&facts.census);
    Ok(checked)
}

#[derive(Debug, Serialize)]
pub struct SandboxReport {
    pub keys: u64,
    pub bytes: u64,
    pub layout_secs: f64,
    pub load_secs: f64,
    /// From the start of the restore until the server answered with the data loaded.
    pub ready_secs: f64,
    pub verify: VerifyReport,
}

/// Restores into a throwaway server in a temporary directory under `work`, checks it
/// against the backup, then stops it and removes everything.
pub fn sandbox(
    repo: &Repository,
    snap: &Snapshot,
    work: &Path,
    sample: u64,
    progress: &Reporter,
) -> Result<SandboxReport> {
    let facts = RedisFacts::of(snap)?;
    let dir = tempfile::Builder::new()
        .prefix("bulwark-redis-sandbox-")
        .tempdir_in(work)
        .with_context(|| format!("creating a sandbox directory in {}", work.display()))?;
    let _removed = Throwaway::dir(dir.path());
    let started = Instant::now();
    let opts = DirOptions {
        target: dir.path().to_path_buf(),
        start: false,
        port: None,
        verify: true,
        sample,
        progress: progress.clone(),
    };
    let laid = restore_dir(repo, snap, &opts)?;
    let loading = Instant::now();
    progress.send(Progress::Phase("starting the sandbox server".into()));
    // Registered before it loads: an interrupt while it loads stops it too.
    let mut server = RedisServer::spawn(dir.path(), free_port()?, &[])?;
    let stopped = server.pid().map(Throwaway::process);
    server.wait_ready(Duration::from_secs(600))?;
    let load_secs = loading.elapsed().as_secs_f64();
    let ready_secs = started.elapsed().as_secs_f64();
    let verify = check_loaded(&server, dir.path(), &facts, &opts)?;
    if let Some(s) = stopped {
        s.disarm();
    }
    drop(server);
    Ok(SandboxReport {
        keys: facts.census.keys(),
        bytes: laid.bytes,
        layout_secs: laid.layout_secs,
        load_secs,
        ready_secs,
        verify,
    })
}
