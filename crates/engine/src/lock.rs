//! Repository locks. Backups take shared locks (many may run at once: they only add objects
//! with unique names); prune, forget and key removal take an exclusive lock. A lock is a sealed
//! file under `locks/` that its holder refreshes; one not refreshed for `STALE_AFTER`, or held by
//! a dead process on this host, is stale and ignored.

use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::id::LockId;
use crate::repo::{hostname, Repository};
use crate::store::ObjectKind;

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: jiff::Timestamp,
    pub refreshed: jiff::Timestamp,
    pub hostname: String,
    pub pid: u32,
    pub exclusive: bool,
    pub operation: String,
}

impl LockInfo {
    pub fn is_stale(&self) -> bool {
        let age = jiff::Timestamp::now().duration_since(self.refreshed);
        if age.as_secs() > STALE_AFTER.as_secs() as i64 {
            return true;
        }
        self.hostname == hostname() && !process_alive(self.pid)
    }
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Held for the duration of an operation; dropping it removes the lock file.
pub struct LockGuard {
    repo: Repository,
    id: LockId,
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard {
    pub fn acquire(repo: &Repository, exclusive: bool, operation: &str) -> Result<Self> {
        let conflict = |own: Option<&LockId>| -> Result<Option<LockInfo>> {
            for (id, info) in list(repo)? {
                if Some(&id) == own || info.is_stale() {
                    continue;
                }
                if exclusive || info.exclusive {
                    return Ok(Some(info));
                }
            }
            Ok(None)
        };
        let locked = |info: LockInfo| {
            Error::new(
                ErrorKind::Locked,
                format!(
                    "repository is locked by '{}' (pid {} on {}, since {}); wait for it to finish, or run `bulwark unlock` if that process is gone",
                    info.operation, info.pid, info.hostname, info.time
                ),
            )
        };
        if let Some(info) = conflict(None)? {
            return Err(locked(info));
        }
        let now = jiff::Timestamp::now();
        let info = LockInfo {
            time: now,
            refreshed: now,
            hostname: hostname(),
            pid: std::process::id(),
            exclusive,
            operation: operation.to_string(),
        };
        let id = LockId::random();
        write(repo, &id, &info)?;
        // Someone may have taken a conflicting lock between our check and our write.
        if let Some(other) = conflict(Some(&id))? {
            let _ = repo.store().delete(ObjectKind::Lock, &id.to_hex());
            return Err(locked(other));
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
    let json = serde_json::to_vec(info).map_err(|e| Error::invalid(e.to_string()))?;
    repo.store().write(
        ObjectKind::Lock,
        &id.to_hex(),
        &crate::codec::encode_object(repo.key(), &json),
    )
}

/// Every lock file; ones that cannot be read are reported as stale-looking entries so that
/// `unlock` can remove them.
pub fn list(repo: &Repository) -> Result<Vec<(LockId, LockInfo)>> {
    let mut out = Vec::new();
    for listed in repo.store().list(ObjectKind::Lock)? {
        let id: LockId = listed.name.parse()?;
        match repo.load_json::<LockInfo>(ObjectKind::Lock, &listed.name) {
            Ok(info) => out.push((id, info)),
            // A lock removed while we listed is simply gone.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.context(format!("lock {}", listed.name))),
        }
    }
    Ok(out)
}

/// Removes stale locks (or all locks with `all`); returns how many were removed.
pub fn remove(repo: &Repository, all: bool) -> Result<usize> {
    let mut removed = 0;
    for (id, info) in list(repo)? {
        if all || info.is_stale() {
            repo.store().delete(ObjectKind::Lock, &id.to_hex())?;
            removed += 1;
        }
    }
    Ok(removed)
}
