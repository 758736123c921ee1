//! Who maintains a repository, and how: the one host that prunes (the maintenance owner), the
//! grace period of prune's two-phase deletion, and the check that this host's clock agrees with
//! the object store's, whose timestamps decide when a mark is old enough.
//!
//! The settings live in the repository (`maintenance`, sealed JSON, rewritten when changed), so
//! every host sees the same owner. A repository without them is claimed by the first host that
//! prunes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::lock::LockGuard;
use crate::repo::{hostname, Repository};
use crate::store::ObjectKind;

/// How long a marked pack stays before it may be deleted, unless the settings say otherwise:
/// longer than a day's backup, so that a daily prune frees what the previous one marked.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(20 * 3600);

/// Maintenance refuses to run when this host's clock and the store's differ by more.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// The host name (`BULWARK_HOSTNAME`, else the system's) that runs prune.
    pub owner: String,
    pub grace_secs: u64,
    pub changed: jiff::Timestamp,
    pub changed_by: String,
}

impl Settings {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }
}

pub fn load(repo: &Repository) -> Result<Option<Settings>> {
    match repo.load_json(ObjectKind::Maintenance, "") {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets the owner and/or grace period, keeping what is not given; returns the new settings.
pub fn set(repo: &Repository, owner: Option<&str>, grace: Option<Duration>) -> Result<Settings> {
    let old = load(repo)?;
    let owner = match (owner, &old) {
        (Some(o), _) => o.trim().to_string(),
        (None, Some(old)) => old.owner.clone(),
        (None, None) => hostname(),
    };
    if owner.is_empty() {
        return Err(Error::invalid("the maintenance owner cannot be empty"));
    }
    let settings = Settings {
        owner,
        grace_secs: grace
            .or(old.as_ref().map(Settings::grace))
            .unwrap_or(DEFAULT_GRACE)
            .as_secs(),
        changed: jiff::Timestamp::now(),
        changed_by: hostname(),
    };
    repo.save_json_as(ObjectKind::Maintenance, "", &settings)?;
    Ok(settings)
}

/// The settings, if this host may maintain the repository; a repository nobody owns yet is
/// claimed for this host (unless `dry_run`).
pub fn authorise(repo: &Repository, dry_run: bool) -> Result<Settings> {
    let me = hostname();
    match load(repo)? {
        Some(s) if s.owner == me => Ok(s),
        Some(s) => Err(Error::new(
            ErrorKind::Locked,
            format!(
                "maintenance of this repository belongs to host '{}' (set by {} at {}); prune there, or make this host the owner with `bulwark maintenance --owner {me}`",
                s.owner, s.changed_by, s.changed
            ),
        )),
        None if dry_run => Ok(Settings {
            owner: me.clone(),
            grace_secs: DEFAULT_GRACE.as_secs(),
            changed: jiff::Timestamp::now(),
            changed_by: me,
        }),
        None => {
            let s = set(repo, Some(&me), None)?;
            log::info!("this host ({me}) is now the repository's maintenance owner");
            Ok(s)
        }
    }
}

/// The store's time now, read from the lock just written; fails when it differs from this
/// host's clock by more than `MAX_CLOCK_SKEW`. Backends that keep no times (memory) give the
/// local clock.
pub fn store_now(repo: &Repository, lock: &LockGuard) -> Result<jiff::Timestamp> {
    let local = jiff::Timestamp::now();
    let Some(store) = repo.store().modified(ObjectKind::Lock, &lock.name())? else {
        return Ok(local);
    };
    // The lock was written just before `local` was read; S3 keeps whole seconds.
    let skew = local.duration_since(store).as_secs().abs();
    if skew > MAX_CLOCK_SKEW.as_secs() as i64 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "this host's clock ({local}) and the repository storage's ({store}) differ by {skew} s, more than {} s; maintenance decides by the storage's clock and refuses to run. Fix the clock (NTP) and run it again",
                MAX_CLOCK_SKEW.as_secs()
            ),
        ));
    }
    Ok(store)
}

/// A deletion mark as `bulwark maintenance` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingMark {
    pub name: String,
    /// When it was written, by the store's clock (the marking host's if the store keeps none).
    pub marked: jiff::Timestamp,
    pub hostname: String,
    pub packs: usize,
    /// Stored bytes of its packs still in storage.
    pub bytes: u64,
    /// Locks, present when it was marked, that are still held: prune waits for them.
    pub waiting_for_locks: usize,
    /// From when a prune may delete its packs, if no lock holds it back.
    pub due: jiff::Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub settings: Option<Settings>,
    pub grace_secs: u64,
    pub marks: Vec<PendingMark>,
}

/// The settings and the data waiting to be deleted.
pub fn status(repo: &Repository) -> Result<Status> {
    let settings = load(repo)?;
    let grace = settings.as_ref().map_or(DEFAULT_GRACE, Settings::grace);
    let marks = crate::marks::load_all(repo)?;
    let sizes = match marks.is_empty() {
        true => Default::default(),
        false => repo.pack_sizes()?,
    };
    let held: std::collections::HashSet<String> = crate::lock::list(repo)?
        .into_iter()
        .filter(|l| !l.is_stale())
        .map(|l| l.name)
        .collect();
    let mut out = Vec::new();
    for m in marks {
        let marked = repo
            .store()
            .modified(ObjectKind::Mark, &m.name)?
            .unwrap_or(m.meta.time);
        let waiting = m
            .meta
            .locks
            .as_ref()
            .map_or(0, |l| l.iter().filter(|n| held.contains(*n)).count());
        out.push(PendingMark {
            name: m.name,
            marked,
            hostname: m.meta.hostname,
            packs: m.packs.len(),
            bytes: m.packs.iter().filter_map(|(p, _)| sizes.get(p)).sum(),
            waiting_for_locks: waiting,
            due: marked
                .checked_add(jiff::SignedDuration::from_secs(grace.as_secs() as i64))
                .unwrap_or(marked),
        });
    }
    out.sort_by_key(|m| m.marked);
    Ok(Status {
        settings,
        grace_secs: grace.as_secs(),
        marks: out,
    })
}
