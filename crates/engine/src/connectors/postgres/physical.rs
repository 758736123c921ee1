//! Physical base backups: `pg_basebackup` streams a tar of the data directory over the
//! replication protocol to our stdin; every file becomes an item under `physical/base/`,
//! chunked as it arrives (no local copy), so data files that did not change since the last
//! base backup deduplicate against it. The WAL a base backup needs comes from the archive
//! (`wal-push`): pg_basebackup waits until the last segment is archived before it returns.

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{PgConn, PgSettings, ServerInfo};
use crate::backup::SnapshotWriter;
use crate::connectors::process::Child;
use crate::error::{Error, ErrorKind, Result};
use crate::items::{Item, ItemKind};

pub const BASE: &str = "physical/base";

/// What a base backup needs to be restored to a point in time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BaseBackupFacts {
    pub timeline: u32,
    pub start_lsn: String,
    /// The WAL segment recovery starts from.
    pub start_wal: String,
    /// As the backup label has it (`2026-11-21 23:07:00 UTC`, in the server's log time zone).
    pub start_time: String,
    /// The same instant, read by the server itself (older snapshots lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    pub system_identifier: String,
    /// The WAL source name in the repository's archive.
    pub wal_source: String,
    /// The named restore point made for the backup set right after this backup, so that a
    /// recovery can stop exactly at the set (absent when the role may not create one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_point: Option<SetPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetPoint {
    pub name: String,
    pub lsn: String,
}

impl BaseBackupFacts {
    /// When the base backup started: as recorded by the server, else read from the label when
    /// its zone is UTC (snapshots from before `started_at` was recorded).
    pub fn started(&self) -> Option<jiff::Timestamp> {
        self.started_at.or_else(|| {
            let civil = self
                .start_time
                .strip_suffix(" UTC")
                .or_else(|| self.start_time.strip_suffix(" GMT"))?;
            let dt: jiff::civil::DateTime = civil.parse().ok()?;
            dt.to_zoned(jiff::tz::TimeZone::UTC)
                .ok()
                .map(|z| z.timestamp())
        })
    }
}

/// Settings a physical backup needs, each with the exact change to make.
pub fn preflight(settings: &PgSettings, server: &ServerInfo, source: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Settings {
        wal_level: String,
        archive_mode: String,
        archive_command: String,
        max_wal_senders: i64,
        replication: bool,
    }
    let conn = &settings.conn;
    let s: Settings = conn.query(
        &conn.maintenance_db,
        "SELECT json_build_object('wal_level', current_setting('wal_level'), \
         'archive_mode', current_setting('archive_mode'), \
         'archive_command', current_setting('archive_command'), \
         'max_wal_senders', current_setting('max_wal_senders')::int, \
         'replication', (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user))",
    )?;
    let mut problems = Vec::new();
    if s.wal_level == "minimal" {
        problems.push(
            "wal_level is minimal: set wal_level = replica in postgresql.conf and restart"
                .to_string(),
        );
    }
    if s.archive_mode == "off" {
        problems.push(format!(
            "archive_mode is off: set archive_mode = on and archive_command = 'bulwark wal-push --source {source} %p' in postgresql.conf and restart"
        ));
    } else if !s.archive_command.contains("wal-push") {
        problems.push(format!(
            "archive_command is '{}': set it to 'bulwark wal-push --source {source} %p' (and reload) so the WAL lands in this repository",
            s.archive_command
        ));
    }
    if s.max_wal_senders < 1 {
        problems.push("max_wal_senders is 0: set it to at least 2 and restart".to_string());
    }
    if !s.replication {
        problems.push(format!(
            "role {} may not replicate: ALTER ROLE {} REPLICATION; and allow it in pg_hba.conf (host replication {} ...)",
            server.user, server.user, server.user
        ));
    }
    Ok(problems)
}

/// Streams a base backup into the snapshot.
pub fn backup(
    settings: &PgSettings,
    w: &mut SnapshotWriter,
    source: &str,
) -> Result<BaseBackupFacts> {
    let conn = &settings.conn;
    let mut cmd = conn.tool("pg_basebackup");
    cmd.args([
        "-D",
        "-",
        "-F",
        "t",
        "-X",
        "none",
        "--checkpoint=fast",
        "--label",
    ])
    .arg(format!("bulwark {source}"))
    .arg("-d")
    .arg(conn.conninfo(&conn.maintenance_db))
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    let started: String = conn.query(&conn.maintenance_db, "SELECT to_json(now()::text)")?;
    let mut child = Child::spawn(cmd, "pg_basebackup")?;
    let stdout = child.take_stdout()?;
    let (pid, patience) = (child.id(), settings.archive_wait);
    let (stop, stopped) = mpsc::channel::<()>();
    let (streamed, abandoned) = std::thread::scope(|s| {
        let watch = s.spawn(|| watch_archiver(conn, &started, patience, pid, stopped));
        let streamed = stream_tar(w, stdout);
        drop(stop);
        (streamed, watch.join().ok().flatten())
    });
    // pg_basebackup is not reaped yet, so the watcher's signal reached the right process.
    if let Some(reason) = abandoned {
        let _ = child.finish(streamed);
        return Err(reason);
    }
    let label = child
        .finish(streamed)
        .map_err(|e| conn.explain(e))?
        .ok_or_else(|| Error::new(ErrorKind::Source, "pg_basebackup sent no backup_label"))?;
    let mut facts = parse_label(&label)?;
    facts.wal_source = source.to_string();
    // The label's time zone is an abbreviation only the server can be trusted to read.
    let epoch: i64 = conn.query(
        &conn.maintenance_db,
        &format!(
            "SELECT to_json(extract(epoch FROM '{}'::timestamptz)::bigint)",
            facts.start_time.replace('\'', "")
        ),
    )?;
    facts.started_at = jiff::Timestamp::from_second(epoch).ok();
    facts.system_identifier = conn.query(
        &conn.maintenance_db,
        "SELECT to_json(system_identifier::text) FROM pg_control_system()",
    )?;
    Ok(facts)
}

#[derive(Deserialize)]
struct Archiver {
    failing: bool,
    failed_wal: Option<String>,
    failed_at: Option<String>,
}

/// Runs beside a base backup until `stopped`. The server holds a base backup open until the
/// WAL it needs is archived, which with broken archiving is forever; a backup without its WAL
/// restores nothing. So when archiving has failed since the backup began and nothing was
/// archived for `patience`, this terminates pg_basebackup (`pid`) and says why.
fn watch_archiver(
    conn: &PgConn,
    started: &str,
    patience: Duration,
    pid: u32,
    stopped: mpsc::Receiver<()>,
) -> Option<Error> {
    let sql = format!(
        "SELECT json_build_object('failing', coalesce(last_failed_time > '{}'::timestamptz \
         AND last_failed_time > coalesce(last_archived_time, '-infinity'), false), \
         'failed_wal', last_failed_wal, 'failed_at', last_failed_time::text) FROM pg_stat_archiver",
        started.replace('\'', "")
    );
    let mut failing_since: Option<Instant> = None;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(1)) {
        // A failed query proves nothing; pg_basebackup reports a lost server itself.
        let Ok(a) = conn.query::<Archiver>(&conn.maintenance_db, &sql) else {
            continue;
        };
        if !a.failing {
            failing_since = None;
            continue;
        }
        if failing_since.get_or_insert_with(Instant::now).elapsed() < patience {
            continue;
        }
        // SAFETY: kill(2) with a pid we own and have not reaped; no memory is involved.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        return Some(Error::new(
            ErrorKind::Source,
            format!(
                "PostgreSQL cannot archive WAL: archive_command failed for {} (last at {}) and nothing was archived for {}s; a base backup is unusable without its WAL, so this one was abandoned. The server log says why; `bulwark wal status` shows the archive",
                a.failed_wal.as_deref().unwrap_or("a segment"),
                a.failed_at.as_deref().unwrap_or("?"),
                patience.as_secs()
            ),
        ));
    }
    None
}

/// Records each tar entry; returns the backup_label's text.
fn stream_tar(w: &mut SnapshotWriter, input: impl Read) -> Result<Option<String>> {
    let tar_err = |e: std::io::Error| {
        Error::new(ErrorKind::Source, "reading pg_basebackup's tar stream").with_source(e)
    };
    let mut archive = tar::Archive::new(input);
    let mut label = None;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let header = entry.header();
        let rel = String::from_utf8_lossy(&entry.path_bytes())
            .trim_end_matches('/')
            .trim_start_matches("./")
            .to_string();
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(Error::new(
                ErrorKind::Source,
                format!("unexpected path '{rel}' in the base backup"),
            ));
        }
        let kind = match header.entry_type() {
            tar::EntryType::Directory => ItemKind::Dir,
            tar::EntryType::Symlink => ItemKind::Symlink,
            tar::EntryType::Regular | tar::EntryType::Continuous => ItemKind::File,
            other => {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!("unexpected entry type {other:?} for '{rel}' in the base backup"),
                ))
            }
        };
        let mut item = Item::new(format!("{BASE}/{rel}"), kind);
        item.mode = header.mode().unwrap_or(0o600);
        item.uid = header.uid().unwrap_or(0) as u32;
        item.gid = header.gid().unwrap_or(0) as u32;
        item.mtime_ns = header.mtime().unwrap_or(0) as i64 * 1_000_000_000;
        match kind {
            ItemKind::Symlink => {
                item.target = entry
                    .link_name()
                    .map_err(tar_err)?
                    .map(|p| p.to_string_lossy().into_owned());
                w.put_deferred(item, None::<std::io::Empty>)?;
            }
            ItemKind::Dir => w.put_deferred(item, None::<std::io::Empty>)?,
            ItemKind::File if rel == "backup_label" => {
                let mut text = String::new();
                entry.read_to_string(&mut text).map_err(tar_err)?;
                w.put_deferred(item, Some(text.as_bytes()))?;
                label = Some(text);
            }
            ItemKind::File => w.put_deferred(item, Some(&mut entry))?,
        }
    }
    // The tar reader stops at the first end-of-archive block; pg_basebackup may still be
    // writing the rest of it. Read to the end, or it dies of SIGPIPE.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(tar_err)?;
    Ok(label)
}

/// `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`, `START TIME: ...`,
/// `START TIMELINE: 1`.
fn parse_label(label: &str) -> Result<BaseBackupFacts> {
    let field = |key: &str| {
        label
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let bad = || {
        Error::new(
            ErrorKind::Source,
            format!("cannot read backup_label:\n{label}"),
        )
    };
    let location = field("START WAL LOCATION:").ok_or_else(bad)?;
    let (lsn, file) = location
        .split_once(" (file ")
        .map(|(l, f)| {
            (
                l.trim().to_string(),
                f.trim_end_matches(')').trim().to_string(),
            )
        })
        .ok_or_else(bad)?;
    Ok(BaseBackupFacts {
        timeline: field("START TIMELINE:")
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?,
        start_lsn: lsn,
        start_wal: file,
        start_time: field("START TIME:").unwrap_or_default(),
        ..Default::default()
    })
}

/// Marks the backup set's moment in the WAL with a named restore point, and has the segment
/// holding it archived now, so that the set can be recovered exactly at once.
pub fn mark_set(conn: &super::PgConn, name: &str) -> Result<SetPoint> {
    let lsn: String = conn.query(
        &conn.maintenance_db,
        &format!(
            "SELECT to_json(pg_create_restore_point('{}')::text)",
            name.replace('\'', "''")
        ),
    )?;
    // Without the switch the point is archived with its segment later (archive_timeout); a
    // role that may not switch still gets the point.
    let _ = conn.execute(&conn.maintenance_db, "SELECT pg_switch_wal()");
    Ok(SetPoint {
        name: name.to_string(),
        lsn,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn backup_label_fields() {
        let f = super::parse_label(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
             CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
             START TIME: 2026-11-21 23:07:00 UTC\nLABEL: bulwark pg\nSTART TIMELINE: 1\n",
        )
        .expect("parses");
        assert_eq!(f.timeline, 1);
        assert_eq!(f.start_lsn, "0/2000028");
        assert_eq!(f.start_wal, "000000010000000000000002");
        assert!(super::parse_label("nonsense").is_err());
        assert_eq!(
            f.started().map(|t| t.to_string()).as_deref(),
            Some("2026-11-21T23:07:00Z")
        );
        let cet = super::BaseBackupFacts {
            start_time: "2026-11-21 23:07:00 CET".into(),
            ..Default::default()
        };
        assert_eq!(cet.started(), None);
    }
}
