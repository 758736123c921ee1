//! The record of one backup set: for each source its snapshot (or why it has none) and its
//! consistency point (a PostgreSQL restore point and LSN, a Redis replication offset, Qdrant's
//! counts around the capture), and the state of the system it ran on. Stored under `sets/`;
//! sets from before the record existed are read back from their snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backup_set::SetReport;
use crate::catalog::Snapshots;
use crate::connectors::interface::{started, Kind};
use crate::error::Result;
use crate::id::{SetId, SnapshotId};
use crate::repo::Repository;
use crate::store::ObjectKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetManifest {
    pub version: u32,
    pub set_id: SetId,
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    /// Every source has a complete snapshot.
    pub complete: bool,
    pub sources: Vec<SetSource>,
    pub system: SystemState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetSource {
    pub name: String,
    /// The kind's name (text, as in snapshot manifests).
    pub kind: String,
    pub snapshot: Option<SnapshotId>,
    /// Why the source has no snapshot in this set.
    pub error: Option<String>,
    pub partial: bool,
    pub bytes: u64,
    /// The moment the snapshot's data is from (its backup's start).
    pub point_time: Option<jiff::Timestamp>,
    /// The kind's own consistency point (restore point and LSN, replication offset, counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<serde_json::Value>,
}

/// What the backup ran on, for whoever rebuilds it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemState {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub bulwark_version: String,
    /// Free bytes of the filesystems that matter (the repository's, when local, and `/`).
    pub free_bytes: BTreeMap<String, u64>,
    /// BLAKE3 of each configuration file the run read.
    pub config_files: BTreeMap<String, String>,
}

impl SystemState {
    /// This machine now; `config_files`: the configuration files the run read.
    pub fn now(repo: &Repository, config_files: &[std::path::PathBuf]) -> Self {
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        let mut free_bytes = BTreeMap::new();
        let mut places = vec![std::path::PathBuf::from("/")];
        if let Some(root) = repo.store().local_root() {
            places.push(root.to_path_buf());
        }
        for p in places {
            if let Some((avail, _)) = crate::connectors::files::connector::free_space(&p) {
                free_bytes.insert(p.display().to_string(), avail);
            }
        }
        Self {
            hostname: crate::repo::hostname(),
            os,
            kernel: kernel(),
            bulwark_version: env!("CARGO_PKG_VERSION").to_string(),
            free_bytes,
            config_files: config_files
                .iter()
                .filter_map(|p| {
                    let bytes = std::fs::read(p).ok()?;
                    Some((
                        p.display().to_string(),
                        blake3::hash(&bytes).to_hex().to_string(),
                    ))
                })
                .collect(),
        }
    }
}

fn kernel() -> String {
    // SAFETY: utsname is arrays of chars; all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own and pass by pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {}", field(&u.sysname), field(&u.release))
}

/// The record of a finished set run.
pub fn of_report(
    report: &SetReport,
    started_at: jiff::Timestamp,
    system: SystemState,
) -> SetManifest {
    let sources: Vec<SetSource> = report
        .results
        .iter()
        .map(|r| {
            let kind = r.kind.clone();
            match (&r.saved, r.snapshot) {
                (Some(snap), Some(id)) => SetSource {
                    name: r.source.clone(),
                    kind,
                    snapshot: Some(id),
                    error: None,
                    partial: snap.summary.partial,
                    bytes: snap.summary.bytes,
                    point_time: Some(started(snap)),
                    point: Kind::parse(&snap.source.kind)
                        .ok()
                        .and_then(|k| k.connector().consistency_point(snap)),
                },
                _ => SetSource {
                    name: r.source.clone(),
                    kind,
                    snapshot: None,
                    error: r.error.clone(),
                    partial: false,
                    bytes: 0,
                    point_time: None,
                    point: None,
                },
            }
        })
        .collect();
    SetManifest {
        version: 1,
        set_id: report.set_id,
        started: started_at,
        finished: jiff::Timestamp::now(),
        complete: sources.iter().all(|s| s.snapshot.is_some() && !s.partial),
        sources,
        system,
    }
}

pub fn save(repo: &Repository, manifest: &SetManifest) -> Result<String> {
    repo.save_json(ObjectKind::Set, manifest)
}

/// Every set: the recorded ones, and those of older snapshots that have no record (rebuilt
/// from their snapshots, without failures or system state). Newest first.
pub fn list(repo: &Repository, snapshots: &Snapshots) -> Result<(Vec<SetManifest>, Vec<String>)> {
    let mut sets: BTreeMap<SetId, SetManifest> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for listed in repo.store().list(ObjectKind::Set)? {
        match repo.load_json::<SetManifest>(ObjectKind::Set, &listed.name) {
            Ok(m) => {
                sets.insert(m.set_id, m);
            }
            Err(e) => unreadable.push(format!("{}: {e}", listed.name)),
        }
    }
    let recorded: std::collections::BTreeSet<SetId> = sets.keys().copied().collect();
    for (id, snap) in &snapshots.list {
        let Some(set) = snap.set_id.filter(|s| !recorded.contains(s)) else {
            continue;
        };
        let m = sets.entry(set).or_insert_with(|| SetManifest {
            version: 1,
            set_id: set,
            started: started(snap),
            finished: snap.time,
            complete: true,
            sources: Vec::new(),
            system: SystemState::default(),
        });
        m.started = m.started.min(started(snap));
        m.finished = m.finished.max(snap.time);
        m.complete &= !snap.summary.partial;
        m.sources.push(SetSource {
            name: snap.source.name.clone(),
            kind: snap.source.kind.clone(),
            snapshot: Some(*id),
            error: None,
            partial: snap.summary.partial,
            bytes: snap.summary.bytes,
            point_time: Some(started(snap)),
            point: None,
        });
    }
    let mut out: Vec<SetManifest> = sets.into_values().collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.started));
    Ok((out, unreadable))
}
