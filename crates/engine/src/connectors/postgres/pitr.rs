//! Point-in-time recovery: prove the WAL chain (`pitr_check`), lay out a base backup as a data
//! directory, point PostgreSQL's `restore_command` at the WAL archive, set the recovery
//! target, and optionally start the server, wait until recovery has finished and it has
//! promoted, and check that replay reached the target.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::conn::debian_bin_dir;
use super::pitr_check::{self, RecoveryPlan, ReplayEnd};
use super::server::{append_conf, as_owner, quote_conf, stop};
use super::PgFacts;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::restore::{ensure_empty_dir, restore, RestoreOptions};
use crate::snapshot::Snapshot;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryTarget {
    /// Replay every archived segment.
    Latest,
    Time(String),
    Lsn(String),
    Xid(String),
    Name(String),
}

#[derive(Clone, Default)]
pub struct PitrOptions {
    pub target_dir: PathBuf,
    pub target: Option<RecoveryTarget>,
    /// The full `restore_command` (bulwark wal-fetch ... %f %p) the server will run.
    pub restore_command: String,
    /// Turn archiving off in the restored server (a drill must not archive into production's
    /// WAL namespace).
    pub no_archive: bool,
    /// Start the server, wait for recovery and promotion.
    pub start: bool,
    /// Recover although the WAL chain has a gap, up to the gap (stated in the report).
    pub allow_gap: bool,
    /// The timeline to follow; None: the newest descending from the base backup's.
    pub timeline: Option<u32>,
    /// Clear the target directory first when it holds an unfinished recovery by Bulwark.
    pub clear_unfinished: bool,
    /// Prove the chain and report the plan; write nothing.
    pub dry_run: bool,
    pub port: Option<u16>,
    pub bin_dir: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub progress: Reporter,
}

#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    pub data_dir: PathBuf,
    pub target: RecoveryTarget,
    pub plan: RecoveryPlan,
    pub base_backup_start: String,
    pub files: u64,
    pub bytes: u64,
    pub layout_secs: f64,
    /// Set when the server was started: seconds from start until it was promoted.
    pub recovery_secs: Option<f64>,
    pub timeline: Option<u32>,
    /// Where replay ended (set when the server was started), checked against the plan.
    pub replay_end: Option<ReplayEnd>,
}

impl PitrReport {
    /// True if the recovery ends, by request, at a gap instead of the newest WAL.
    pub fn short_by_request(&self) -> bool {
        self.plan.short_by_request(&self.target)
    }
}

/// Restores the base backup of `snap` into `opts.target_dir` and configures recovery.
pub fn restore_pitr(repo: &Repository, snap: &Snapshot, opts: &PitrOptions) -> Result<PitrReport> {
    let facts = PgFacts::of(snap)?;
    let base = facts.physical.as_ref().ok_or_else(|| {
        Error::invalid("this snapshot holds no base backup (its source has no \"physical\" mode)")
    })?;
    let dir = &opts.target_dir;
    let unfinished = dir.join(UNFINISHED);
    if unfinished.exists() {
        if !opts.clear_unfinished {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} holds a point-in-time recovery by Bulwark that did not finish: clear it and begin again with --clear-unfinished (recover: --replace)",
                    dir.display()
                ),
            ));
        }
        if !opts.dry_run {
            clear(dir, opts.bin_dir.as_deref())?;
        }
    } else {
        ensure_empty_dir(dir, "point-in-time recovery")?;
    }
    let target = opts.target.clone().unwrap_or(RecoveryTarget::Latest);
    opts.progress
        .send(Progress::Phase("checking the WAL chain".into()));
    let plan = pitr_check::plan(
        repo,
        base,
        snap.time,
        &target,
        opts.timeline,
        opts.allow_gap,
    )?;
    let mut report = PitrReport {
        data_dir: dir.clone(),
        target: target.clone(),
        plan,
        base_backup_start: base.start_time.clone(),
        files: 0,
        bytes: 0,
        layout_secs: 0.0,
        recovery_secs: None,
        timeline: None,
        replay_end: None,
    };
    if opts.dry_run {
        return Ok(report);
    }
    let started = Instant::now();
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(&unfinished, UNFINISHED_TEXT)
        .with_context(|| format!("marking {} as a recovery under way", dir.display()))?;
    let summary = restore(
        repo,
        snap,
        &RestoreOptions {
            target: dir.clone(),
            subtree: Some(super::physical::BASE.to_string()),
            progress: opts.progress.clone(),
            ..Default::default()
        },
    )?;
    if !summary.errors.is_empty() {
        return Err(Error::corrupt(format!(
            "{} file(s) of the base backup could not be restored, e.g. {}: {}",
            summary.errors.len(),
            summary.errors[0].path,
            summary.errors[0].message
        )));
    }
    let owner = fs::metadata(dir.join("PG_VERSION"))
        .with_context(|| format!("{} has no PG_VERSION", dir.display()))?;
    for sub in ["pg_wal", "pg_wal/archive_status"] {
        fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {sub}"))?;
        let _ = std::os::unix::fs::chown(dir.join(sub), Some(owner.uid()), Some(owner.gid()));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("securing {}", dir.display()))?;
    let _ = std::os::unix::fs::chown(dir, Some(owner.uid()), Some(owner.gid()));

    let mut conf = String::from("\n# Added by bulwark restore --pitr\n");
    conf.push_str(&format!(
        "restore_command = {}\n",
        quote_conf(&opts.restore_command)
    ));
    match &target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(t) => {
            conf.push_str(&format!("recovery_target_time = {}\n", quote_conf(t)))
        }
        RecoveryTarget::Lsn(l) => {
            conf.push_str(&format!("recovery_target_lsn = {}\n", quote_conf(l)))
        }
        RecoveryTarget::Xid(x) => {
            conf.push_str(&format!("recovery_target_xid = {}\n", quote_conf(x)))
        }
        RecoveryTarget::Name(n) => {
            conf.push_str(&format!("recovery_target_name = {}\n", quote_conf(n)))
        }
    }
    conf.push_str(&format!(
        "recovery_target_action = 'promote'\nrecovery_target_timeline = '{}'\n",
        report.plan.timeline
    ));
    if opts.no_archive {
        conf.push_str("archive_mode = off\n");
    }
    if let Some(p) = opts.port {
        conf.push_str(&format!("port = {p}\n"));
    }
    append_conf(&dir.join("postgresql.auto.conf"), &conf)?;
    fs::write(dir.join("recovery.signal"), b"").with_context(|| "writing recovery.signal")?;
    for f in ["postgresql.auto.conf", "recovery.signal"] {
        let _ = std::os::unix::fs::chown(dir.join(f), Some(owner.uid()), Some(owner.gid()));
    }
    report.files = summary.files;
    report.bytes = summary.bytes;
    report.layout_secs = started.elapsed().as_secs_f64();
    if opts.start {
        let bin = opts
            .bin_dir
            .clone()
            .or_else(|| debian_bin_dir(facts.server_version_num / 10000));
        let recovery = Instant::now();
        opts.progress.send(Progress::Phase("recovering".into()));
        let timeline = start_and_wait(dir, bin.as_deref(), &owner, opts)?;
        report.recovery_secs = Some(recovery.elapsed().as_secs_f64());
        report.timeline = Some(timeline);
        let checked = pitr_check::replay_end(dir, timeline).and_then(|end| {
            pitr_check::verify(&report.plan, &target, &end)?;
            Ok(end)
        });
        match checked {
            Ok(end) => report.replay_end = Some(end),
            Err(e) => {
                // Nothing may go on using a state that is not the one asked for.
                stop(dir, bin.as_deref());
                return Err(e);
            }
        }
    }
    fs::remove_file(&unfinished).with_context(|| format!("removing {}", unfinished.display()))?;
    Ok(report)
}

/// Left in a data directory while a point-in-time recovery lays it out and replays: a
/// directory holding it is a recovery by Bulwark that did not finish, which may be cleared
/// and begun again (and nothing else may be: a recovery never writes over a data directory).
pub const UNFINISHED: &str = "bulwark-recovery-unfinished";
const UNFINISHED_TEXT: &str = "A point-in-time recovery by bulwark is under way here, or stopped before it finished.\n\
    `bulwark restore --pitr --clear-unfinished` or `bulwark recover --replace` clears this directory and begins again.\n";

/// Stops a server that an unfinished recovery may have left running on `dir`, and empties it.
fn clear(dir: &Path, bin: Option<&Path>) -> Result<()> {
    stop(dir, bin);
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let removed = match path.is_dir() && !path.is_symlink() {
            true => fs::remove_dir_all(&path),
            false => fs::remove_file(&path),
        };
        removed.with_context(|| format!("clearing {}", path.display()))?;
    }
    Ok(())
}

/// Starts the server and waits until the control file says it is in production (recovery
/// done, promoted). Returns the new timeline.
fn start_and_wait(
    dir: &Path,
    bin: Option<&Path>,
    owner: &fs::Metadata,
    opts: &PitrOptions,
) -> Result<u32> {
    let log = dir.join("bulwark-recovery.log");
    let out = as_owner(bin, "pg_ctl", owner)
        .arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .args(["-t", "3600", "start"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::new(ErrorKind::Source, "cannot run pg_ctl").with_source(e))?;
    let log_tail = || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    };
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Source,
            format!(
                "the restored server did not start: {}\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log_tail()
            ),
        ));
    }
    let deadline = Instant::now() + opts.timeout.unwrap_or(Duration::from_secs(24 * 3600));
    loop {
        let control = as_owner(bin, "pg_controldata", owner)
            .arg("-D")
            .arg(dir)
            .output()
            .map_err(|e| {
                Error::new(ErrorKind::Source, "cannot run pg_controldata").with_source(e)
            })?;
        let text = String::from_utf8_lossy(&control.stdout);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        if field("Database cluster state:").as_deref() == Some("in production") {
            return Ok(field("Latest checkpoint's TimeLineID:")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0));
        }
        let running = as_owner(bin, "pg_ctl", owner)
            .arg("-D")
            .arg(dir)
            .arg("status")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !running {
            return Err(Error::new(
                ErrorKind::Source,
                format!(
                    "recovery failed; the server stopped. Its log ends with:\n{}",
                    log_tail()
                ),
            ));
        }
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorKind::Source,
                "recovery did not finish in time",
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
