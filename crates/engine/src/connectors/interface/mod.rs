//! The one interface every datastore implements, so that restore, sandboxes, verification and
//! (later) assessment and drills work the same way for all of them. A [`Connector`] is the
//! kind-level entry point (registered in `registry`); a [`Datastore`] is one configured source
//! of that kind.

mod fields;
mod health;
mod log_archive;
mod outcome;
mod point;
mod secret;
mod tier;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fields::fields_of;
pub use health::{newest_snapshot, oldest_snapshot, parse_time, started, Health, RecoveryPoint};
pub use log_archive::{log_archives, LogArchive, LogCheck, LogCopy, LogExpiry, LogSourceCheck};
pub use outcome::{top_k_overlap, Mismatch, RestoreOutcome, Restored, Timings, Verdict};
pub use point::Point;
pub use secret::read_secret;
pub use tier::Tier;

use crate::backup::Source;
use crate::catalog::Snapshots;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::lock::LockGuard;
use crate::progress::Reporter;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

pub use super::registry::Kind;

/// A kind of datastore: how its configuration reads and how its snapshots come back.
pub trait Connector: Sync {
    fn kind(&self) -> Kind;

    /// Which part of the stack this kind holds: its place in a full recovery and the
    /// built-in scenario it belongs to.
    fn tier(&self) -> Tier;

    /// The restore options (flags) this kind takes, by name.
    fn restore_options(&self) -> &'static [&'static str];

    /// The keys a `[sources.NAME]` section of this kind takes, besides `kind` and `tags`.
    fn config_keys(&self) -> &'static [&'static str];

    /// One configured source from its section (keys already checked against `config_keys`).
    fn configure(&self, name: &str, section: &Section) -> Result<Box<dyn Datastore>, ConfigError>;

    /// Restores a snapshot of this kind into the target the request names, then (unless told
    /// not to) compares what arrived with the figures recorded at backup time.
    fn restore(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored>;

    /// Restores into something throwaway it creates itself, verifies it, and removes it
    /// again whatever happens (error, failed verification, Ctrl-C).
    fn sandbox(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored>;

    /// The restore options that bring `snapshot` back to `point` when a log archive reaches
    /// further than the snapshot itself (PostgreSQL: replay the WAL to its end, to a moment,
    /// or to the backup set's named point). None: the snapshot is restored as it is.
    fn replay_options(
        &self,
        _snapshot: &Snapshot,
        _point: &Point,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        None
    }

    /// The kind's own consistency point of a snapshot, for the backup set's record: what a
    /// recovery of the set reaches (a restore point and LSN, a replication offset, counts
    /// around the capture) and the server's version.
    fn consistency_point(&self, _snapshot: &Snapshot) -> Option<serde_json::Value> {
        None
    }

    /// The log archive this kind keeps beside its snapshots, if any.
    fn log_archive(&self) -> Option<&'static dyn LogArchive> {
        None
    }

    /// The newest moment `source` can be recovered to from this repository: by default its
    /// newest complete snapshot; a kind with a log archive reaches further.
    fn recovery_point(
        &self,
        _repo: &Repository,
        snapshots: &Snapshots,
        source: &str,
    ) -> Result<Option<RecoveryPoint>> {
        Ok(newest_snapshot(snapshots, source))
    }
}

/// One configured source.
pub trait Datastore: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> Kind;
    /// What a backup run reads from; a new one per run.
    fn source(&self) -> Result<Box<dyn Source>>;
    /// Probes the datastore now: reachable, version, role, and what needs attention.
    fn health(&self) -> Health;
    /// How `snapshot` of this source goes back into the source itself in a recovery to
    /// `point` (its server, its paths, its data directory), and what is there now that it
    /// would replace. `replace`: the user allows replacing what is there.
    fn recovery(&self, snapshot: &Snapshot, point: &Point, replace: bool) -> Result<Recovery>;
    /// True when a log archive moves its recovery point on between backups (PostgreSQL
    /// with WAL archiving): its default RPO is minutes, not the backup interval.
    fn archives_continuously(&self) -> bool {
        false
    }
}

/// A configured source's recovery into itself, as a restore request will carry it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Recovery {
    /// What a restore names as its target: the server URL (without credentials), a path, a
    /// data directory.
    pub target: String,
    /// The restore options that say how (`pitr`, `flush`, `clean`, ...).
    pub options: serde_json::Map<String, serde_json::Value>,
    /// The target's password or API key, read from the source's configuration.
    #[serde(skip)]
    pub secret: Option<String>,
    /// Start the restored server (a PostgreSQL data directory recovered by PITR).
    pub start: bool,
    /// How, for the plan: "logical restore into …", "point-in-time recovery into …".
    pub method: String,
    /// What is there now that the recovery would replace (it needs the user's leave); None
    /// when there is nothing.
    pub occupied: Option<String>,
    /// Why this recovery cannot go ahead as things are, whatever the user allows.
    pub blocked: Option<String>,
    /// The target is a server that must answer before anything is touched.
    pub needs_server: bool,
    /// Nothing to restore into automatically (a command's output): `method` says what to do.
    pub manual: bool,
}

/// A `[sources.NAME]` section as written, with the directory relative paths start from.
#[derive(Debug, Clone)]
pub struct Section {
    pub table: toml::Table,
    pub base: PathBuf,
}

impl Section {
    /// The section as the connector's own settings type (which declares its keys once).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = toml::Value::Table(self.table.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = match e.path().iter().next() {
                Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
                _ => String::new(),
            };
            ConfigError {
                key,
                message: e.inner().to_string(),
            }
        })
    }

    /// A path from the section, relative to the config file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }
}

/// What is wrong with a config section, and under which key (for the file and line).
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// The snapshot being restored, and the listing it came from (a point-in-time restore may
/// choose another base).
pub struct RestoreInput<'a> {
    pub repo: &'a Repository,
    pub kind: Kind,
    pub snapshots: &'a Snapshots,
    pub id: SnapshotId,
    pub snapshot: &'a Snapshot,
    /// The user asked for the newest snapshot, not this one by id.
    pub latest: bool,
}

/// What the user asked of a restore. What every kind shares is a field; what is particular
/// to one kind travels in `options` and is read by that kind's connector alone.
pub struct RestoreRequest {
    /// A server URL or a directory, as given (None for a sandbox).
    pub target: Option<String>,
    /// Kind-specific options by name (`database`, `flush`, `collection`, ...): only the
    /// options the user set. A connector refuses those it does not take.
    pub options: serde_json::Map<String, serde_json::Value>,
    pub dry_run: bool,
    pub verify: bool,
    /// With `verify`: bound its cost by sampling where a kind can (PostgreSQL: row counts
    /// instead of checksums, one search per vector column); other kinds verify in full.
    pub sample: bool,
    /// Start a server on restored files.
    pub start: bool,
    pub port: Option<u16>,
    /// Scratch space for spooled dumps and sandboxes.
    pub scratch: PathBuf,
    /// The snapshot's source section in the config file, if it is configured here.
    pub configured: Option<Section>,
    /// This program's command line with the repository arguments, for a restored server
    /// that must call back (PostgreSQL's restore_command); or why there is none.
    pub callback: std::result::Result<String, String>,
    /// The target's password or API key when the caller has it (a recovery into a configured
    /// source); without it the tools' own environment variables apply.
    pub secret: Option<String>,
    /// How long to wait for an exclusive lock to go away before refusing.
    pub lock_wait: Duration,
    pub progress: Reporter,
}

impl RestoreRequest {
    /// The options as the connector's own type; a set option that type does not declare is
    /// refused by its flag name.
    pub fn options_as<T: serde::de::DeserializeOwned>(&self, kind: Kind) -> Result<T> {
        let known = fields_of::<T>();
        let flag = |k: &str| format!("--{}", k.replace('_', "-"));
        if let Some(k) = self.options.keys().find(|k| !known.contains(&k.as_str())) {
            let takes: Vec<String> = known.iter().map(|k| flag(k)).collect();
            return Err(Error::invalid(format!(
                "{} does not apply to a {kind} snapshot{}",
                flag(k),
                if takes.is_empty() {
                    String::new()
                } else {
                    format!(" (it takes {})", takes.join(", "))
                }
            )));
        }
        serde_json::from_value(serde_json::Value::Object(self.options.clone()))
            .map_err(|e| Error::invalid(format!("restore options: {e}")))
    }

    /// The target, which every restore but a sandbox needs.
    pub fn target(&self) -> Result<&str> {
        self.target
            .as_deref()
            .ok_or_else(|| Error::invalid("--target is required"))
    }

    /// Refuses request fields this kind of restore does not use, by flag name.
    pub fn refuse(&self, kind: Kind, flags: &[(&str, bool)]) -> Result<()> {
        match flags.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(Error::invalid(format!(
                "{flag} does not apply to this restore of a {kind} snapshot"
            ))),
            None => Ok(()),
        }
    }
}

impl<'a> RestoreInput<'a> {
    pub fn new(
        repo: &'a Repository,
        snapshots: &'a Snapshots,
        (id, snapshot): &'a (SnapshotId, Snapshot),
        latest: bool,
    ) -> Result<Self> {
        Ok(Self {
            repo,
            kind: snapshot.source.kind()?,
            snapshots,
            id: *id,
            snapshot,
            latest,
        })
    }
}

/// With no source named, the one source whose kind takes every option given (`--pitr` names
/// the PostgreSQL source): which source's "latest" such a restore means. None without
/// options, or when that is not exactly one source.
pub fn source_for_options(
    snapshots: &Snapshots,
    options: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    if options.is_empty() {
        return None;
    }
    let mut names: std::collections::BTreeSet<&str> = snapshots
        .list
        .iter()
        .filter(|(_, s)| {
            s.source.kind().is_ok_and(|k| {
                let takes = k.connector().restore_options();
                options.keys().all(|o| takes.contains(&o.as_str()))
            })
        })
        .map(|(_, s)| s.source.name.as_str())
        .collect();
    match (names.pop_first(), names.is_empty()) {
        (Some(only), true) => Some(only.to_string()),
        _ => None,
    }
}

/// Restores one snapshot through its kind's connector, under a shared lock where the
/// repository can take one.
pub fn restore(input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
    let _lock = LockGuard::for_reading(input.repo, "restore", req.lock_wait)?;
    input.kind.connector().restore(input, req)
}

/// Restores one snapshot into a throwaway through its kind's connector, under a shared lock
/// where the repository can take one.
pub fn sandbox(input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
    let _lock = LockGuard::for_reading(input.repo, "sandbox restore", req.lock_wait)?;
    input.kind.connector().sandbox(input, req)
}
