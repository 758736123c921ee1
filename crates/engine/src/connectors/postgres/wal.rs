//! The WAL archive: PostgreSQL's `archive_command` and `restore_command` land here.
//!
//! Each WAL file (segment, timeline history, backup label) is one object,
//! `wal/<source>/<timeline>/<file name>`, compressed and sealed like everything else. WAL does
//! not deduplicate, and one object per file makes a push a single durable write and a fetch a
//! single read. Inside the seal, a header names the file and carries its length and BLAKE3
//! hash, so a renamed or swapped object is caught on fetch.
//!
//! Opening the repository costs a key derivation (a deliberate fraction of a second), more than
//! pushing one 16 MiB segment. So a push also archives the other segments PostgreSQL has marked
//! ready, and records each in a spool directory; when PostgreSQL then asks for one of those, a
//! hash comparison with the spool is enough. A fetch likewise prefetches the next segments.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::PgFacts;
use crate::codec::{self, Encoder};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::store::{ObjectKind, Store};

const MAGIC: &[u8; 8] = b"BWWAL1\0\0";
/// Segments PostgreSQL has ready that one push also archives.
const PUSH_BATCH: usize = 32;
/// Segments a fetch reads ahead into the spool.
const FETCH_AHEAD: usize = 16;
/// Parallel storage writes/reads for batches.
const PARALLEL: usize = 4;

/// What kind of WAL file a name is; anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    Segment,
    Partial,
    History,
    BackupLabel,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
}

/// Classifies a WAL file name: `000000010000000000000003`, `...03.partial`, `00000002.history`,
/// `...03.00000028.backup`.
pub fn wal_kind(name: &str) -> Option<WalKind> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [seg] if seg.len() == 24 && is_hex(seg) => Some(WalKind::Segment),
        [seg, "partial"] if seg.len() == 24 && is_hex(seg) => Some(WalKind::Partial),
        [tli, "history"] if tli.len() == 8 && is_hex(tli) => Some(WalKind::History),
        [seg, off, "backup"] if seg.len() == 24 && is_hex(seg) && off.len() == 8 && is_hex(off) => {
            Some(WalKind::BackupLabel)
        }
        _ => None,
    }
}

/// Source names become a path component of the archive.
pub fn check_namespace(source: &str) -> Result<()> {
    let ok = !source.is_empty()
        && !source.starts_with('.')
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "source name '{source}' cannot name a WAL archive: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn object_name(source: &str, file: &str) -> Result<String> {
    if wal_kind(file).is_none() {
        return Err(Error::invalid(format!("'{file}' is not a WAL file name")));
    }
    Ok(format!("{source}/{}/{file}", &file[..8]))
}

/// The archive of one source in one repository.
pub struct WalArchive<'a> {
    repo: &'a Repository,
    source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pushed {
    Stored,
    /// Already archived with identical content (PostgreSQL retried).
    AlreadyArchived,
}

impl<'a> WalArchive<'a> {
    pub fn new(repo: &'a Repository, source: &str) -> Result<Self> {
        check_namespace(source)?;
        Ok(Self {
            repo,
            source: source.to_string(),
        })
    }

    fn seal(&self, name: &str, content: &[u8]) -> Result<Vec<u8>> {
        let mut plain = Vec::with_capacity(content.len() + 96);
        plain.extend_from_slice(MAGIC);
        plain.extend_from_slice(&(name.len() as u16).to_le_bytes());
        plain.extend_from_slice(name.as_bytes());
        plain.extend_from_slice(&(content.len() as u64).to_le_bytes());
        plain.extend_from_slice(blake3::hash(content).as_bytes());
        plain.extend_from_slice(content);
        Ok(Encoder::new(self.repo.codec())?.encode(self.repo.key(), &plain))
    }

    /// Decodes an archived object and checks that it is the file `name`, whole.
    fn unseal(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let plain = codec::decode(self.repo.key(), sealed, None)?;
        let bad = |why: &str| Error::corrupt(format!("archived WAL file {name}: {why}"));
        let rest = plain
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("bad header"))?;
        let name_len = u16::from_le_bytes(
            rest.get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("truncated"))?,
        ) as usize;
        let stored_name = rest.get(2..2 + name_len).ok_or_else(|| bad("truncated"))?;
        if stored_name != name.as_bytes() {
            return Err(bad(&format!(
                "the object holds {}",
                String::from_utf8_lossy(stored_name)
            )));
        }
        let rest = &rest[2 + name_len..];
        let len = u64::from_le_bytes(
            rest.get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("truncated"))?,
        ) as usize;
        let hash = rest.get(8..40).ok_or_else(|| bad("truncated"))?;
        let content = &rest[40..];
        if content.len() != len || blake3::hash(content).as_bytes() != hash {
            return Err(bad("content does not match its recorded hash"));
        }
        Ok(content.to_vec())
    }

    /// Archives one WAL file. Safe to repeat: identical content already archived is success,
    /// different content under the same name is an error (two clusters sharing a source name,
    /// or a damaged file), and nothing is overwritten.
    pub fn push_file(&self, name: &str, content: &[u8]) -> Result<Pushed> {
        let object = object_name(&self.source, name)?;
        match self.repo.store().read(ObjectKind::Wal, &object) {
            Ok(sealed) => {
                let archived = self.unseal(name, &sealed)?;
                if archived == content {
                    return Ok(Pushed::AlreadyArchived);
                }
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "WAL file {name} is already archived for source '{}' with different content; is another cluster archiving under the same source name?",
                        self.source
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sealed = self.seal(name, content)?;
        self.repo.store().write(ObjectKind::Wal, &object, &sealed)?;
        Ok(Pushed::Stored)
    }

    /// The content of an archived WAL file, or None if the archive does not have it.
    pub fn fetch_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let object = object_name(&self.source, name)?;
        match self.repo.store().read(ObjectKind::Wal, &object) {
            Ok(sealed) => self.unseal(name, &sealed).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every archived file name with its stored size, in name order.
    pub fn list(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .repo
            .store()
            .list_under(ObjectKind::Wal, &format!("{}/", self.source))?
            .into_iter()
            .filter(|l| wal_kind(&l.name).is_some())
            .map(|l| (l.name, l.size))
            .collect())
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        self.repo
            .store()
            .delete(ObjectKind::Wal, &object_name(&self.source, name)?)
    }

    pub fn modified(&self, name: &str) -> Result<Option<jiff::Timestamp>> {
        self.repo
            .store()
            .modified(ObjectKind::Wal, &object_name(&self.source, name)?)
    }
}

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
        && store.exists(ObjectKind::Wal, &object_name(source, &name)?)?
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

/// Runs `f` over `items` on a few threads, keeping order.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, R)>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                let r = f(item);
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_else(|p| p.into_inner());
    r.sort_by_key(|(i, _)| *i);
    r.into_iter().map(|(_, r)| r).collect()
}

/// A segment's position in the WAL (log and segment number combined), for `seg_size` segments.
fn segment_number(name: &str, seg_size: u64) -> Option<u64> {
    if wal_kind(name) != Some(WalKind::Segment) || seg_size == 0 {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some(log * (0x1_0000_0000u64 / seg_size) + seg)
}

fn segment_name(timeline: &str, number: u64, seg_size: u64) -> String {
    let per_log = 0x1_0000_0000u64 / seg_size;
    format!("{timeline}{:08X}{:08X}", number / per_log, number % per_log)
}

/// The segment after `name`, for segments of `seg_size` bytes.
pub fn next_segment(name: &str, seg_size: u64) -> Option<String> {
    let n = segment_number(name, seg_size)?;
    Some(segment_name(&name[..8], n + 1, seg_size))
}

/// The segment size a WAL segment declares in its first page's long header.
fn segment_size(content: &[u8]) -> Option<u64> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    let info = u16::from_le_bytes(content.get(2..4)?.try_into().ok()?);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    Some(u32::from_le_bytes(content.get(32..36)?.try_into().ok()?) as u64)
}

/// `restore_command`: writes archived `name` to `dest`. Ok(false) when the archive does not
/// have it (PostgreSQL asks for files that may not exist; it then stops or switches source).
pub fn fetch(archive: &WalArchive, spool: &Spool, name: &str, dest: &Path) -> Result<bool> {
    if wal_kind(name).is_none() {
        return Err(Error::invalid(format!("'{name}' is not a WAL file name")));
    }
    let content = match take_prefetched(spool, name) {
        Some(c) => c,
        None => match archive.fetch_file(name)? {
            Some(c) => c,
            None => return Ok(false),
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

/// Where a WAL file sits in the log (log and segment number, without the timeline), as a
/// string that sorts in log order. Timeline history files have no position: they are tiny and
/// every recovery across a timeline switch needs them, so they are always kept.
fn position(name: &str) -> Option<&str> {
    match wal_kind(name)? {
        WalKind::History => None,
        _ => Some(&name[8..24]),
    }
}

/// For each WAL source, the start segment of its oldest base backup in `snapshots`. Recovering
/// any of these base backups, to any point after it, reads only WAL at or after its start.
pub fn oldest_needed(snapshots: &[(SnapshotId, Snapshot)]) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (id, snap) in snapshots {
        if !snap.facts.contains_key(PgFacts::KEY) {
            continue;
        }
        // A manifest we cannot read could be the one needing the oldest WAL: stop.
        let facts = PgFacts::of(snap).with_context(|| format!("snapshot {}", id.short()))?;
        let Some(base) = facts.physical else { continue };
        let Some(start) = position(&base.start_wal) else {
            return Err(Error::corrupt(format!(
                "snapshot {} records '{}' as its first WAL segment",
                id.short(),
                base.start_wal
            )));
        };
        let oldest = out
            .entry(base.wal_source)
            .or_insert_with(|| start.to_string());
        if start < oldest.as_str() {
            *oldest = start.to_string();
        }
    }
    Ok(out)
}

/// What WAL retention removed (or would remove) from one source's archive.
#[derive(Debug, Clone, Serialize)]
pub struct WalExpiry {
    pub source: String,
    /// Files before this log position (log and segment number) went; all later ones stay.
    pub kept_from: String,
    pub files_deleted: usize,
    pub bytes_freed: u64,
}

/// WAL retention: for every source with a base backup among `kept`, deletes the archived WAL
/// older than the oldest such base backup. A source with no kept base backup keeps all of its
/// WAL: without a base nothing proves which WAL is unneeded. Oldest first, so an interruption
/// leaves a contiguous archive.
pub fn expire(
    repo: &Repository,
    kept: &[(SnapshotId, Snapshot)],
    dry_run: bool,
) -> Result<Vec<WalExpiry>> {
    let mut out = Vec::new();
    for (source, kept_from) in oldest_needed(kept)? {
        let archive = WalArchive::new(repo, &source)?;
        let old: Vec<(String, u64)> = archive
            .list()?
            .into_iter()
            .filter(|(name, _)| position(name).is_some_and(|p| p < kept_from.as_str()))
            .collect();
        if !dry_run {
            for (name, _) in &old {
                archive.delete(name)?;
            }
        }
        out.push(WalExpiry {
            source,
            kept_from,
            files_deleted: old.len(),
            bytes_freed: old.iter().map(|(_, size)| size).sum(),
        });
    }
    Ok(out)
}

/// Copies the WAL the base backups in `snapshots` need (from each one's start onwards, plus
/// every timeline history) into `dst`, sealed with its key. Files `dst` already has are
/// skipped, so a copy interrupted or repeated completes the archive. Returns files and bytes.
pub fn copy_needed(
    src: &Repository,
    dst: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
) -> Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for (source, from) in oldest_needed(snapshots)? {
        let (from_archive, to_archive) = (
            WalArchive::new(src, &source)?,
            WalArchive::new(dst, &source)?,
        );
        let present = to_archive.list()?;
        for name in from_archive.list()?.into_keys() {
            if present.contains_key(&name) || position(&name).is_some_and(|p| p < from.as_str()) {
                continue;
            }
            let content = from_archive.fetch_file(&name)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("WAL file {name} vanished from the source archive"),
                )
            })?;
            to_archive.push_file(&name, &content)?;
            files += 1;
            bytes += content.len() as u64;
        }
    }
    Ok((files, bytes))
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineStatus {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: usize,
    /// Missing ranges (first missing, last missing) between `first` and `last`.
    pub gaps: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveStatus {
    pub source: String,
    pub files: usize,
    pub stored_bytes: u64,
    pub segment_size: Option<u64>,
    pub timelines: Vec<TimelineStatus>,
    pub histories: Vec<String>,
    /// The newest segment and how long ago it was archived: the RPO if the server died now.
    pub newest: Option<String>,
    pub newest_archived: Option<jiff::Timestamp>,
    pub newest_age_secs: Option<f64>,
}

/// Ranges per timeline, gaps, and the age of the newest segment.
pub fn status(archive: &WalArchive) -> Result<ArchiveStatus> {
    let files = archive.list()?;
    let segments: Vec<&String> = files
        .keys()
        .filter(|n| wal_kind(n) == Some(WalKind::Segment))
        .collect();
    // The segment size is in every segment's first page; one read tells.
    let segment_size = match segments.first() {
        Some(first) => archive.fetch_file(first)?.and_then(|c| segment_size(&c)),
        None => None,
    };
    let mut timelines: BTreeMap<u32, Vec<&String>> = BTreeMap::new();
    for s in &segments {
        if let Ok(tli) = u32::from_str_radix(&s[..8], 16) {
            timelines.entry(tli).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for (tli, segs) in timelines {
        let mut gaps = Vec::new();
        if let Some(size) = segment_size {
            for pair in segs.windows(2) {
                if let (Some(a), Some(b)) =
                    (segment_number(pair[0], size), segment_number(pair[1], size))
                {
                    if b > a + 1 {
                        let tli = &pair[0][..8];
                        gaps.push((
                            segment_name(tli, a + 1, size),
                            segment_name(tli, b - 1, size),
                        ));
                    }
                }
            }
        }
        out.push(TimelineStatus {
            timeline: tli,
            first: segs.first().map(|s| s.to_string()).unwrap_or_default(),
            last: segs.last().map(|s| s.to_string()).unwrap_or_default(),
            segments: segs.len(),
            gaps,
        });
    }
    let newest = out.last().map(|t| t.last.clone());
    let newest_archived = match &newest {
        Some(n) => archive.modified(n)?,
        None => None,
    };
    Ok(ArchiveStatus {
        source: archive.source.clone(),
        files: files.len(),
        stored_bytes: files.values().sum(),
        segment_size,
        timelines: out,
        histories: files
            .keys()
            .filter(|n| wal_kind(n) == Some(WalKind::History))
            .cloned()
            .collect(),
        newest,
        newest_age_secs: newest_archived
            .map(|t| (jiff::Timestamp::now() - t).get_milliseconds() as f64 / 1000.0),
        newest_archived,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names() {
        assert_eq!(wal_kind("000000010000000000000003"), Some(WalKind::Segment));
        assert_eq!(
            wal_kind("000000010000000000000003.partial"),
            Some(WalKind::Partial)
        );
        assert_eq!(wal_kind("00000002.history"), Some(WalKind::History));
        assert_eq!(
            wal_kind("000000010000000000000003.00000028.backup"),
            Some(WalKind::BackupLabel)
        );
        for bad in [
            "",
            "../etc/passwd",
            "00000001000000000000000g",
            "0000000100000000000003",
            "00000002.histories",
            "000000010000000000000003/x",
        ] {
            assert_eq!(wal_kind(bad), None, "{bad}");
        }
        assert_eq!(
            next_segment("0000000100000000000000FF", 16 << 20).as_deref(),
            Some("000000010000000100000000")
        );
        assert_eq!(
            next_segment("000000020000000A00000003", 16 << 20).as_deref(),
            Some("000000020000000A00000004")
        );
        assert_eq!(
            next_segment("000000010000000000000003", 1 << 30).as_deref(),
            Some("000000010000000100000000")
        );
    }
}
