//! Snapshot manifests: what was backed up, when, from which source, and how it went.
//! Writing the manifest is the commit point of a backup.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::connectors::Kind;
use crate::error::{Error, Result};
use crate::id::{ChunkId, SetId, SnapshotId};
use crate::repo::Repository;
use crate::store::ObjectKind;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceInfo {
    /// The source's name in bulwark.toml, or a name derived from ad-hoc arguments.
    pub name: String,
    /// The datastore kind's name (`files`, `postgres`, ...). Kept as text so that a kind
    /// this build does not know (written by a newer one) still lists; see [`Self::kind`].
    pub kind: String,
}

impl SourceInfo {
    pub fn new(name: &str, kind: Kind) -> Self {
        Self {
            name: name.to_string(),
            kind: kind.name().to_string(),
        }
    }

    /// The kind, or `Unsupported` for one this build does not know.
    pub fn kind(&self) -> Result<Kind> {
        Kind::parse(&self.kind)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    /// Logical bytes of all files in the snapshot.
    pub bytes: u64,
    /// Bytes read from the source in this run (unchanged files are not read).
    pub bytes_read: u64,
    /// Plaintext bytes of chunks this run added to the repository.
    pub data_added: u64,
    /// Sealed bytes this run added (packs), i.e. what the repository grew by.
    pub stored_added: u64,
    /// Bytes of packs an interrupted earlier backup had uploaded that this run verified and
    /// reused instead of uploading again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed_bytes: u64,
    pub duration_secs: f64,
    /// Some items could not be backed up; see `errors`.
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub time: jiff::Timestamp,
    pub hostname: String,
    pub username: String,
    pub source: SourceInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_id: Option<SetId>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// What was backed up, as the user named it (directories, a command, a database).
    #[serde(default)]
    pub paths: Vec<String>,
    /// The item stream's chunks.
    pub tree: Vec<ChunkId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// Set by `copy`: the snapshot this one was copied from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    pub summary: Summary,
    /// Facts a connector records for later verification (row counts, checksums).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, serde_json::Value>,
    pub program_version: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Snapshots with their ids, oldest first.
pub type Listing = Vec<(SnapshotId, Snapshot)>;

/// A snapshot manifest that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    /// The object's name; the snapshot's id when it is a well-formed one.
    pub name: String,
    pub id: Option<SnapshotId>,
    /// When the object was written, if the store says: a manifest is written once, when its
    /// backup finishes, so this bounds the snapshot's own time from above.
    pub written: Option<jiff::Timestamp>,
    pub error: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshots/{}: {}", self.name, self.error)
    }
}

/// Every readable snapshot, oldest first, and each manifest that could not be read. Listing
/// and backing up go on past a damaged manifest; deleting must not (see `list`), nor may
/// "latest" (see `catalog::Snapshots`).
pub fn list_readable(repo: &Repository) -> Result<(Listing, Vec<Unreadable>)> {
    let (mut out, mut unreadable) = (Vec::new(), Vec::new());
    for listed in repo.store().list(ObjectKind::Snapshot)? {
        let loaded = listed
            .name
            .parse()
            .and_then(|id| Ok((id, load(repo, &id)?)));
        match loaded {
            Ok(entry) => out.push(entry),
            // Forgotten (by another host) between listing and reading: simply gone.
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
            Err(e) => unreadable.push(Unreadable {
                written: repo
                    .store()
                    .modified(ObjectKind::Snapshot, &listed.name)
                    .ok()
                    .flatten(),
                id: listed.name.parse().ok(),
                name: listed.name,
                error: e.to_string(),
            }),
        }
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok((out, unreadable))
}

/// Every snapshot, oldest first; fails if any manifest cannot be read.
pub fn list(repo: &Repository) -> Result<Listing> {
    let (out, unreadable) = list_readable(repo)?;
    match unreadable.first() {
        None => Ok(out),
        Some(first) => Err(Error::corrupt(format!(
            "{first} ({} unreadable snapshot(s); `bulwark check` lists them)",
            unreadable.len()
        ))),
    }
}

pub fn load(repo: &Repository, id: &SnapshotId) -> Result<Snapshot> {
    repo.load_json(ObjectKind::Snapshot, &id.to_hex())
}

pub fn save(repo: &Repository, snap: &Snapshot) -> Result<SnapshotId> {
    repo.save_json(ObjectKind::Snapshot, snap)?.parse()
}
