//! Repository locks. Backups, copies and forget take shared locks (many may run at once: they
//! only add objects with unique names, or remove snapshots), and so do restores where the
//! repository can be written (`for_reading`); prune takes a maintenance lock,
//! which keeps other maintenance out but not backups (it deletes in two phases, see `prune`);
//! key changes, repairs and `prune --exclusive` take an exclusive lock. A lock is a sealed
//! file under `locks/` that its holder refreshes; one not refreshed for `STALE_AFTER`, or held by
//! a dead process on this host, is stale and ignored (and removed by the next lock taken on
//! that host, when its process is dead). "Not refreshed" needs both clocks that can tell to
//! agree: the holder's (the time written inside) and the storage's (when the file was last
//! written), so a holder whose clock runs slow does not lose its lock to the others. A file in
//! `locks/` that cannot be read (damaged, empty, foreign) is judged by the storage's time
//! alone: while young it counts as an exclusive lock, since nobody can tell what it holds;
//! `unlock` removes it.

use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::id::LockId;
use crate::repo::{hostname, Repository};
use crate::store::ObjectKind;

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// How often a waiting operation looks at the locks again.
const LOCK_POLL: Duration = Duration::from_secs(2);

/// What a lock keeps out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Backups, copies, forget: any number at once, beside one maintenance run.
    Shared,
    /// Prune: one at a time, beside any number of shared holders.
    Maintenance,
    /// Nothing else at all.
    Exclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: jiff::Timestamp,
    pub refreshed: jiff::Timestamp,
    pub hostname: String,
    pub pid: u32,
    pub exclusive: bool,
    /// A maintenance lock (added later: older writers' locks lack it, and older readers see
    /// a maintenance lock as shared, so their backups go on and their prune waits).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
    pub operation: String,
}

impl LockInfo {
    pub fn kind(&self) -> LockKind {
        match (self.exclusive, self.maintenance) {
            (true, _) => LockKind::Exclusive,
            (false, true) => LockKind::Maintenance,
            (false, false) => LockKind::Shared,
        }
    }
}

/// True if `t` is more than `STALE_AFTER` ago by this host's clock.
fn aged(t: jiff::Timestamp) -> bool {
    jiff::Timestamp::now().duration_since(t).as_secs() > STALE_AFTER.as_secs() as i64
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A file in `locks/`: a lock we can read, or one we cannot.
#[derive(Debug, Clone)]
pub struct LockEntry {
    pub name: String,
    /// None when the file cannot be read; `error` says why.
    pub info: Option<LockInfo>,
    pub error: Option<String>,
    /// When the storage says the file was last written (None where it cannot say).
    pub written: Option<jiff::Timestamp>,
}

impl LockEntry {
    /// Held by a process of this host that is gone, or not refreshed for `STALE_AFTER` by
    /// every clock that can tell (the holder's and the storage's).
    pub fn is_stale(&self) -> bool {
        if self.holder_dead() {
            return true;
        }
        match (self.info.as_ref().map(|i| i.refreshed), self.written) {
            (None, None) => false,
            (refreshed, written) => refreshed.is_none_or(aged) && written.is_none_or(aged),
        }
    }

    /// True if this lock keeps an operation of kind `wanted` from starting. An unreadable
    /// lock counts as exclusive: nobody can tell what it holds.
    fn conflicts(&self, wanted: LockKind) -> bool {
        let held = self
            .info
            .as_ref()
            .map_or(LockKind::Exclusive, LockInfo::kind);
        !self.is_stale()
            && matches!(
                (held, wanted),
                (LockKind::Exclusive, _)
                    | (_, LockKind::Exclusive)
                    | (LockKind::Maintenance, LockKind::Maintenance)
            )
    }

    /// True if its holder is known to be gone: a process of this host that no longer runs.
    fn holder_dead(&self) -> bool {
        self.info
            .as_ref()
            .is_some_and(|i| i.hostname == hostname() && !process_alive(i.pid))
    }

    fn locked_error(&self) -> Error {
        let message = match (&self.info, &self.error) {
            (Some(info), _) => format!(
                "repository is locked by '{}' (pid {} on {}, since {}); wait for it to finish (--retry-lock), or run `bulwark unlock` if that process is gone",
                info.operation, info.pid, info.hostname, info.time
            ),
            (None, why) => format!(
                "repository has an unreadable lock file locks/{} ({}; written {}); it counts as a lock until it is {} minutes old. If no Bulwark process is running, `bulwark unlock --remove-all` removes it",
                self.name,
                why.as_deref().unwrap_or("unreadable"),
                self.written.map_or("at an unknown time".to_string(), |w| w.to_string()),
                STALE_AFTER.as_secs() / 60
            ),
        };
        Error::new(ErrorKind::Locked, message)
    }
}

/// Held for the duration of an operation; dropping it removes the lock file.
pub struct LockGuard {
    repo: Repository,
    id: LockId,
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard {
    /// Takes the lock, waiting up to `wait` for a conflicting one to go away.
    pub fn acquire(
        repo: &Repository,
        kind: LockKind,
        operation: &str,
        wait: Duration,
    ) -> Result<Self> {
        let deadline = std::time::Instant::now() + wait;
        let mut told = false;
        loop {
            match Self::try_acquire(repo, kind, operation) {
                Err(e) if e.kind() == ErrorKind::Locked && std::time::Instant::now() < deadline => {
                    if !told {
                        log::warn!("waiting up to {}s for the lock: {e}", wait.as_secs());
                        told = true;
                    }
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    std::thread::sleep(left.min(LOCK_POLL));
                }
                other => return other,
            }
        }
    }

    fn try_acquire(repo: &Repository, kind: LockKind, operation: &str) -> Result<Self> {
        let conflict = |own: Option<&str>| -> Result<Option<LockEntry>> {
            for entry in list(repo)? {
                if Some(entry.name.as_str()) == own {
                    continue;
                }
                if entry.holder_dead() {
                    // Left by a killed process of this host: nobody will remove it otherwise.
                    let _ = repo.store().delete(ObjectKind::Lock, &entry.name);
                    continue;
                }
                if entry.conflicts(kind) {
                    return Ok(Some(entry));
                }
            }
            Ok(None)
        };
        if let Some(entry) = conflict(None)? {
            return Err(entry.locked_error());
        }
        let now = jiff::Timestamp::now();
        let info = LockInfo {
            time: now,
            refreshed: now,
            hostname: hostname(),
            pid: std::process::id(),
            exclusive: kind == LockKind::Exclusive,
            maintenance: kind == LockKind::Maintenance,
            operation: operation.to_string(),
        };
        let id = LockId::random();
        write(repo, &id, &info)?;
        // Someone may have taken a conflicting lock between our check and our write.
        if let Some(other) = conflict(Some(&id.to_hex()))? {
            let _ = repo.store().delete(ObjectKind::Lock, &id.to_hex());
            return Err(other.locked_error());
        }
        // Dropping the guard drops `stop`, which wakes the refresher at once (a sleeping
        // refresher would hold every command's exit back).
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let refresher = {
            let (repo, mut info) = (repo.clone(), info);
            std::thread::Builder::new()
                .name("bulwark-lock".into())
                .spawn(move || {
                    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(REFRESH_EVERY)
                    {
                        info.refreshed = jiff::Timestamp::now();
                        if let Err(e) = write(&repo, &id, &info) {
                            log::warn!("cannot refresh repository lock: {e}");
                        }
                    }
                })
                .map_err(|e| {
                    Error::new(ErrorKind::Io, "cannot start lock refresher").with_source(e)
                })?
        };
        Ok(Self {
            repo: repo.clone(),
            id,
            stop: Some(stop),
            refresher: Some(refresher),
        })
    }
}

impl LockGuard {
    /// A shared lock for an operation that only reads (a restore, a drill), so that an
    /// exclusive operation (`prune --exclusive`, which deletes at once) waits for it and prune's
    /// marks stay pending while it runs. A repository that cannot be written (read-only
    /// credentials or mount, as a copy kept for disasters may be) is read without one, with a
    /// warning: refusing would cost the restore itself.
    pub fn for_reading(repo: &Repository, operation: &str, wait: Duration) -> Result<Option<Self>> {
        match Self::acquire(repo, LockKind::Shared, operation, wait) {
            Ok(guard) => Ok(Some(guard)),
            Err(e) if e.kind() == ErrorKind::Locked => Err(e),
            Err(e) => {
                log::warn!(
                    "{operation} goes on without a lock ({e}): an exclusive prune started meanwhile could delete what it reads"
                );
                Ok(None)
            }
        }
    }

    /// The lock file's name under `locks/`.
    pub fn name(&self) -> String {
        self.id.to_hex()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        if let Err(e) = self
            .repo
            .store()
            .delete(ObjectKind::Lock, &self.id.to_hex())
        {
            log::warn!("cannot remove repository lock {}: {e}", self.id);
        }
    }
}

fn write(repo: &Repository, id: &LockId, info: &LockInfo) -> Result<()> {
    repo.save_json_as(ObjectKind::Lock, &id.to_hex(), info)
}

/// Every file in `locks/`, readable or not.
pub fn list(repo: &Repository) -> Result<Vec<LockEntry>> {
    let mut out = Vec::new();
    for listed in repo.store().list(ObjectKind::Lock)? {
        let loaded = listed
            .name
            .parse::<LockId>()
            .and_then(|_| repo.load_json::<LockInfo>(ObjectKind::Lock, &listed.name));
        let (info, error) = match loaded {
            Ok(info) => (Some(info), None),
            // A lock removed while we listed is simply gone.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => (None, Some(e.to_string())),
        };
        let written = match listed.modified {
            Some(t) => Some(t),
            None => repo
                .store()
                .modified(ObjectKind::Lock, &listed.name)
                .ok()
                .flatten(),
        };
        out.push(LockEntry {
            name: listed.name,
            info,
            error,
            written,
        });
    }
    Ok(out)
}

/// Removes stale locks (or all locks with `all`, unreadable ones included); returns how many
/// were removed.
pub fn remove(repo: &Repository, all: bool) -> Result<usize> {
    let mut removed = 0;
    for entry in list(repo)? {
        if all || entry.is_stale() {
            repo.store().delete(ObjectKind::Lock, &entry.name)?;
            removed += 1;
        }
    }
    Ok(removed)
}
