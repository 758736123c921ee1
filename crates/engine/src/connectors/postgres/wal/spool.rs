//! `archive_command` and `restore_command`: batched pushes and read-ahead fetches, with a
//! local spool directory that lets most calls skip opening the repository.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    check_namespace, next_segment, object_name, parallel, segment_size, wal_kind, ArchiveMap,
    Pushed, WalArchive, WalKind,
};
use crate::error::{Error, Result, ResultExt};
use crate::store::{ObjectKind, Store};

/// Segments PostgreSQL has ready that one push also archives.
const PUSH_BATCH: usize = 32;
/// Segments a fetch reads ahead into the spool.
const FETCH_AHEAD: usize = 16;

/// Local bookkeeping for batched pushes and read-ahead fetches. Owned by the PostgreSQL user,
/// mode 0700: a marker here makes a later push of the same content a no-op.
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// `base/<hash of the repository URL>/<source>/`: markers of one repository never speak
    /// for another. (The URL, not the repository id: reading the id needs the key, and the
    /// cheap path must not derive it.)
    pub fn open(base: &Path, repo_url: &str, source: &str) -> Result<Self> {
        check_namespace(source)?;
        let repo = blake3::hash(repo_url.as_bytes()).to_hex();
        let dir = base.join(&repo[..16]).join(source);
        for sub in ["pushed", "fetched"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating spool directory {}", dir.display()))?;
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("securing spool directory {}", dir.display()))?;
        Ok(Self { dir })
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.join("pushed").join(name)
    }

    /// True if `content` under `name` was pushed by an earlier batch.
    pub fn was_pushed(&self, name: &str, content: &[u8]) -> bool {
        fs::read_to_string(self.marker(name))
            .map(|h| h.trim() == blake3::hash(content).to_hex().as_str())
            .unwrap_or(false)
    }

    fn mark_pushed(&self, name: &str, content: &[u8]) -> Result<()> {
        write_synced(
            &self.marker(name),
            blake3::hash(content).to_hex().as_bytes(),
        )
    }

    /// Forgets a marker once PostgreSQL has been told (it will not ask again).
    fn unmark(&self, name: &str) {
        let _ = fs::remove_file(self.marker(name));
    }

    fn fetched(&self, name: &str) -> PathBuf {
        self.dir.join("fetched").join(name)
    }
}

/// Writes a file and syncs it and its directory.
fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("bulwark-tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    pub file: String,
    pub outcome: Option<Pushed>,
    /// Other ready segments archived in the same run.
    pub also_pushed: Vec<String>,
}

/// `archive_command`: archive `path` (relative to PostgreSQL's data directory, the current
/// directory), then other segments marked ready. Returns only once `path` is durable.
pub fn push(archive: &WalArchive, spool: &Spool, path: &Path) -> Result<PushReport> {
    let name = file_name(path)?;
    let content = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let outcome = archive.push_file(&name, &content)?;
    spool.unmark(&name);
    let mut report = PushReport {
        file: name.clone(),
        outcome: Some(outcome),
        also_pushed: Vec::new(),
    };
    // Read ahead: segments PostgreSQL will ask for next. Failures here are harmless (it will
    // ask, and we will push them then), so they are only logged.
    let status_dir = path
        .parent()
        .unwrap_or(Path::new("."))
        .join("archive_status");
    let mut ready: Vec<String> = fs::read_dir(&status_dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".ready")
                        .map(String::from)
                })
                .filter(|n| *n != name && wal_kind(n) == Some(WalKind::Segment))
                .collect()
        })
        .unwrap_or_default();
    ready.sort();
    ready.truncate(PUSH_BATCH);
    let wal_dir = path.parent().unwrap_or(Path::new("."));
    let pushed = parallel(&ready, |n| {
        let content = fs::read(wal_dir.join(n)).ok()?;
        if spool.was_pushed(n, &content) {
            return None;
        }
        match archive
            .push_file(n, &content)
            .and_then(|_| spool.mark_pushed(n, &content))
        {
            Ok(()) => Some(n.clone()),
            Err(e) => {
                log::warn!("read-ahead push of {n} failed (it will be retried): {e}");
                None
            }
        }
    });
    report.also_pushed = pushed.into_iter().flatten().collect();
    Ok(report)
}

/// The cheap path of `archive_command`, without the key: true if an earlier batch archived
/// exactly this file and the archive still has it.
pub fn pushed_before(store: &Store, spool: &Spool, source: &str, path: &Path) -> Result<bool> {
    let name = file_name(path)?;
    let content = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if spool.was_pushed(&name, &content)
        && store.exists(ObjectKind::Log, &object_name(source, &name)?)?
    {
        spool.unmark(&name);
        return Ok(true);
    }
    Ok(false)
}

fn file_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("'{}' has no file name", path.display())))?;
    if wal_kind(name).is_none() {
        return Err(Error::invalid(format!("'{name}' is not a WAL file name")));
    }
    Ok(name.to_string())
}

/// `restore_command`: writes archived `name` to `dest`. Ok(false) when the archive does not
/// have it (PostgreSQL asks for files that may not exist; it then stops or switches source).
/// A segment missing while later ones of its timeline are archived is a gap, not the end of
/// the WAL: that is an error (recovery must not end there quietly) unless `allow_gap`.
pub fn fetch(
    archive: &WalArchive,
    spool: &Spool,
    name: &str,
    dest: &Path,
    allow_gap: bool,
) -> Result<bool> {
    if wal_kind(name).is_none() {
        return Err(Error::invalid(format!("'{name}' is not a WAL file name")));
    }
    let content = match take_prefetched(spool, name) {
        Some(c) => c,
        None => match archive.fetch_file(name)? {
            Some(c) => c,
            None if allow_gap || wal_kind(name) != Some(WalKind::Segment) => return Ok(false),
            None => {
                if let Some(later) = ArchiveMap::load(archive)?.archived_after(name) {
                    return Err(Error::corrupt(format!(
                        "WAL segment {name} is missing from the archive of '{}', but later segments of its timeline are archived (up to {later}): the archive has a gap, and recovery ending here would be short. Recovery was stopped; `bulwark wal status` shows the gap (to end recovery at the gap on purpose, pass --allow-gap to restore --pitr)",
                        archive.source()
                    )));
                }
                return Ok(false);
            }
        },
    };
    write_synced(dest, &content)?;
    prefetch(archive, spool, name, &content);
    Ok(true)
}

/// `restore_command` without the repository: serves `name` from the read-ahead spool while at
/// least half the read-ahead remains beyond it, so most fetches skip the key derivation.
/// False when the caller must fetch through the archive (which also reads further ahead).
pub fn fetch_read_ahead(spool: &Spool, name: &str, dest: &Path) -> Result<bool> {
    if wal_kind(name) != Some(WalKind::Segment) {
        return Ok(false);
    }
    let ahead = fs::read_dir(spool.dir.join("fetched"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n > name && wal_kind(n) == Some(WalKind::Segment))
                })
                .count()
        })
        .unwrap_or(0);
    if ahead < FETCH_AHEAD / 2 {
        return Ok(false);
    }
    match take_prefetched(spool, name) {
        Some(content) => write_synced(dest, &content).map(|()| true),
        None => Ok(false),
    }
}

/// A segment an earlier fetch read ahead (verified against its hash when it was read).
fn take_prefetched(spool: &Spool, name: &str) -> Option<Vec<u8>> {
    let path = spool.fetched(name);
    let content = fs::read(&path).ok()?;
    let _ = fs::remove_file(&path);
    Some(content)
}

/// Reads the next segments ahead into the spool; clears older ones PostgreSQL has moved past.
fn prefetch(archive: &WalArchive, spool: &Spool, name: &str, content: &[u8]) {
    if wal_kind(name) != Some(WalKind::Segment) {
        return;
    }
    if let Ok(entries) = fs::read_dir(spool.dir.join("fetched")) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n < name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let Some(seg_size) = segment_size(content) else {
        return;
    };
    let mut wanted = Vec::new();
    let mut next = name.to_string();
    for _ in 0..FETCH_AHEAD {
        match next_segment(&next, seg_size) {
            Some(n) => next = n,
            None => break,
        }
        if !spool.fetched(&next).exists() {
            wanted.push(next.clone());
        }
    }
    parallel(&wanted, |n| {
        if let Ok(Some(c)) = archive.fetch_file(n) {
            let _ = write_synced(&spool.fetched(n), &c);
        }
    });
}
