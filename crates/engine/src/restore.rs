//! Restore: stream the snapshot's items, lay out directories and files, then fetch each needed
//! pack once (a single ranged read covering the blobs we need), verify every chunk against its
//! id and write it at its offsets. A damaged chunk fails the files that use it, loudly; the
//! other files restore. Files are written under a staging name and renamed into place once
//! complete, so no file with unwritten data ever stands under its real name (not after a
//! damaged chunk, a damaged item list, nor a kill).

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::backup::num_cpus;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::filter::PathFilter;
use crate::id::{ChunkId, PackId};
use crate::index::Index;
use crate::items::{path_cmp, Item, ItemKind, ItemReader};
use crate::pack::PackBuffers;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot::{Problem, Snapshot};
use crate::store::ObjectKind;

#[derive(Clone, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Only items matching one of these patterns (or under a matching directory).
    pub include: Vec<String>,
    /// Only items under this path, restored relative to it (a base backup's `physical/base`).
    pub subtree: Option<String>,
    pub dry_run: bool,
    pub threads: usize,
    pub progress: Reporter,
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub packs_read: u64,
    pub duration_secs: f64,
    pub errors: Vec<Problem>,
    /// Set when the item list itself could not be read to the end: the items after the
    /// damage are unknown, so the restore is incomplete beyond `errors`.
    pub item_list_damaged: Option<String>,
}

struct BlobUse {
    chunk: ChunkId,
    offset: u32,
    length: u32,
    raw_length: u32,
    file: usize,
    file_offset: u64,
}

struct FileTask {
    dest: PathBuf,
    /// Where the data is written until the file is complete.
    staging: PathBuf,
    /// Set once the staging file was made (by the first write), or why it could not be.
    created: std::sync::OnceLock<std::result::Result<(), String>>,
    /// Chunk uses not yet written (or failed); the decoder that takes this to zero moves the
    /// file into place, unless one of them failed.
    pending: AtomicUsize,
    item: Item,
}

impl FileTask {
    /// Gives the file its metadata and its real name.
    fn place(&self) -> Result<()> {
        apply_metadata(&self.staging, &self.item)?;
        fs::rename(&self.staging, &self.dest)
            .with_context(|| format!("moving {} into place", self.dest.display()))
    }
}

/// Staging files not yet moved into place. Dropping removes them, so a restore that fails
/// anywhere leaves none behind.
#[derive(Default)]
struct Staging(HashSet<PathBuf>);

impl Drop for Staging {
    fn drop(&mut self) {
        for path in self.0.drain() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A hidden name beside `dest`, unique to this process (`pid`) and file.
fn staging_name(dest: &Path, pid: u32, file_no: usize) -> PathBuf {
    dest.with_file_name(format!(".bulwark-restore-{pid}-{file_no}"))
}

pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    opts.progress.send(Progress::Phase("loading index".into()));
    restore_using(repo, Arc::new(repo.load_index()?), snap, opts)
}

/// [`restore`] with the index already loaded (a caller that goes on to read the snapshot
/// again loads it once).
pub fn restore_using(
    repo: &Repository,
    index: Arc<Index>,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let filter = PathFilter::new(&opts.include)?;
    let mut summary = RestoreSummary::default();
    let mut files: Vec<FileTask> = Vec::new();
    let mut dirs: Vec<(PathBuf, Item)> = Vec::new();
    let mut plan: HashMap<PackId, Vec<BlobUse>> = HashMap::new();
    let mut total_bytes = 0u64;
    // Symlinks restored so far: nothing may be restored through one, or a crafted snapshot
    // (link `d -> /etc`, then file `d/passwd`) could write outside the target.
    let mut links: HashSet<String> = HashSet::new();
    let mut staged = Staging::default();
    let (pid, mut made) = (std::process::id(), None::<PathBuf>);

    opts.progress.send(Progress::Phase("creating files".into()));
    let items = selected_items(
        repo,
        &index,
        &snap.tree,
        &opts.include,
        opts.subtree.as_deref(),
    );
    for item in items {
        // What the list holds past damage is unknown; what came before it is restored.
        let mut item = match item {
            Ok(item) => item,
            Err(e) => {
                summary.item_list_damaged = Some(e.to_string());
                summary.errors.push(Problem {
                    path: "<item list>".into(),
                    message: format!(
                        "the snapshot's item list is damaged past this point ({e}); the items it lists after that are unknown and were not restored"
                    ),
                });
                break;
            }
        };
        if let Some(root) = &opts.subtree {
            match item
                .path
                .strip_prefix(root.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(rest) => item.path = rest.to_string(),
                None => continue,
            }
        }
        if !filter.is_empty() && !filter.matches(&item.path) {
            continue;
        }
        let dest = safe_join(&opts.target, &item.path)?;
        if ancestors(&item.path).any(|a| links.contains(a)) {
            return Err(Error::corrupt(format!(
                "refusing to restore '{}' through a symlink",
                item.path
            )));
        }
        match item.kind {
            ItemKind::Dir => {
                summary.dirs += 1;
                if !opts.dry_run {
                    fs::create_dir_all(&dest)
                        .with_context(|| format!("creating {}", dest.display()))?;
                }
                made = Some(dest.clone());
                dirs.push((dest, item));
            }
            ItemKind::Symlink => {
                summary.symlinks += 1;
                links.insert(item.path.clone());
                if !opts.dry_run {
                    restore_symlink(&dest, &item)?;
                }
            }
            ItemKind::File => {
                summary.files += 1;
                total_bytes += item.size;
                let file_no = files.len();
                let mut offset = 0u64;
                let mut missing = None;
                for chunk in &item.chunks {
                    match index.get(chunk) {
                        Some(loc) => {
                            plan.entry(loc.pack).or_default().push(BlobUse {
                                chunk: *chunk,
                                offset: loc.offset,
                                length: loc.length,
                                raw_length: loc.raw_length,
                                file: file_no,
                                file_offset: offset,
                            });
                            offset += loc.raw_length as u64;
                        }
                        None => missing = Some(*chunk),
                    }
                }
                if let Some(chunk) = missing {
                    let hint = match index.damaged_files.is_empty() {
                        true => "",
                        false => " (an index file is damaged: `bulwark repair index` may find it)",
                    };
                    summary.errors.push(Problem {
                        path: item.path.clone(),
                        message: format!(
                            "chunk {chunk} is missing from the repository{hint}; file not restored"
                        ),
                    });
                    continue;
                }
                let staging = staging_name(&dest, pid, file_no);
                if !opts.dry_run {
                    // Directories come before what they hold: the parent is most often the
                    // one made last.
                    if let Some(parent) = dest.parent().filter(|p| Some(*p) != made.as_deref()) {
                        fs::create_dir_all(parent)
                            .with_context(|| format!("creating {}", parent.display()))?;
                        made = Some(parent.to_path_buf());
                    }
                    // Created by its first write (`restore_pack`), or when moved into place
                    // if it has no data.
                    staged.0.insert(staging.clone());
                }
                files.push(FileTask {
                    dest,
                    staging,
                    created: Default::default(),
                    pending: AtomicUsize::new(item.chunks.len()),
                    item,
                });
            }
        }
    }
    opts.progress.send(Progress::Total {
        items: files.len() as u64,
        bytes: total_bytes,
    });
    if opts.dry_run {
        summary.bytes = total_bytes;
        summary.duration_secs = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    opts.progress.send(Progress::Phase("restoring data".into()));
    let failed: Mutex<HashMap<usize, String>> = Mutex::new(HashMap::new());
    // The first file that could not be moved into place (its metadata or rename failed).
    let unplaced: Mutex<Option<Error>> = Mutex::new(None);
    let mut packs: Vec<(PackId, Vec<BlobUse>)> = plan.into_iter().collect();
    packs.sort_by_key(|(p, _)| *p);
    for (_, uses) in packs.iter_mut() {
        uses.sort_by_key(|u| (u.offset, u.file, u.file_offset));
    }
    summary.packs_read = packs.len() as u64;
    // Reads run ahead of decoding: several packs in flight (many on object storage), one
    // decoder per core writing into the files.
    let decoders = if opts.threads == 0 {
        num_cpus()
    } else {
        opts.threads
    };
    let files_ref = &files;
    let states = (0..decoders)
        .map(|_| Ok((PackBuffers::new()?, HashMap::new())))
        .collect::<Result<Vec<_>>>()?;
    crate::prefetch::run(
        packs,
        crate::prefetch::fetchers(repo.store().is_local()),
        |(pack, uses), buf| {
            repo.store()
                .read_range_into(ObjectKind::Pack, &pack.to_hex(), span_of(uses), buf)
        },
        states,
        |(buffers, open), (pack, uses), span| {
            let failures = match span {
                Ok(span) => restore_pack(
                    repo,
                    pack,
                    &uses,
                    span,
                    files_ref,
                    open,
                    buffers,
                    &opts.progress,
                ),
                Err(e) => uses
                    .iter()
                    .map(|u| (u.file, format!("cannot read pack {pack}: {e}")))
                    .collect(),
            };
            if !failures.is_empty() {
                let mut failed = failed.lock().unwrap_or_else(|p| p.into_inner());
                for (file, msg) in failures {
                    failed.entry(file).or_insert(msg);
                }
            }
            // A file whose last chunk this was goes into place now, on this thread, rather
            // than in a serial pass at the end (a million small files are a million renames).
            for u in &uses {
                let task = &files_ref[u.file];
                if task.pending.fetch_sub(1, AtomicOrdering::AcqRel) != 1 {
                    continue;
                }
                open.remove(&u.file);
                // A file with holes must not pass for a restored file: it stays staged, and
                // its staging file goes at the end.
                let holed = failed.lock().unwrap_or_else(|p| p.into_inner());
                if holed.contains_key(&u.file) {
                    continue;
                }
                drop(holed);
                if let Err(e) = task.place() {
                    unplaced
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            }
        },
    );
    if let Some(e) = unplaced.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }

    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    for (n, task) in files.iter().enumerate() {
        if let Some(msg) = failed.get(&n) {
            summary.errors.push(Problem {
                path: task.item.path.clone(),
                message: format!("{msg}; file not restored"),
            });
            continue;
        }
        summary.bytes += task.item.size;
        if task.item.chunks.is_empty() {
            File::create(&task.staging)
                .with_context(|| format!("creating {}", task.staging.display()))?;
            task.place()?;
        }
        staged.0.remove(&task.staging);
    }
    for (dest, item) in dirs.iter().rev() {
        apply_metadata(dest, item)?;
    }
    summary.errors.sort_by(|a, b| a.path.cmp(&b.path));
    summary.duration_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The items a restore (or its verification) looks at, in order: all of them, or, when it
/// asks only for literal paths (and what is under them) or a subtree, just those, each found
/// by a seek instead of a read of the whole item list (one file out of a million costs a few
/// tree chunks). A seek that meets damage falls back to reading the list from the start, so
/// damage elsewhere in the list costs time, not the file.
pub fn selected_items(
    repo: &Repository,
    index: &Arc<Index>,
    tree: &[ChunkId],
    include: &[String],
    subtree: Option<&str>,
) -> Box<dyn Iterator<Item = Result<Item>>> {
    let Some(targets) = literal_targets(include, subtree) else {
        return Box::new(ItemReader::new(repo.clone(), index.clone(), tree.to_vec()));
    };
    let (repo, index, tree) = (repo.clone(), index.clone(), tree.to_vec());
    Box::new(targets.into_iter().flat_map(move |t| {
        let reader = ItemReader::seek(repo.clone(), index.clone(), tree.clone(), &t)
            .unwrap_or_else(|_| ItemReader::new(repo.clone(), index.clone(), tree.clone()));
        reader
            .skip_while({
                let t = t.clone();
                move |i| {
                    i.as_ref()
                        .is_ok_and(|i| path_cmp(&i.path, &t) == Ordering::Less)
                }
            })
            .take_while(move |i| i.as_ref().map_or(true, |i| within(&i.path, &t)))
    }))
}

/// The stored paths to seek to, in order, none under another: the subtree, or for each
/// include pattern with a directory part the path it names (a literal pattern) or the
/// directory its literal start names (`srv/app/*.log` → `srv/app`: every match is under it).
/// None when a pattern can match anywhere (a bare name like `*.log`, or `*/x`): then the
/// whole list is read. The patterns themselves are still applied to what the seeks find.
fn literal_targets(include: &[String], subtree: Option<&str>) -> Option<Vec<String>> {
    if include.is_empty() {
        return subtree.map(|root| vec![root.to_string()]);
    }
    let mut targets = Vec::new();
    for pattern in include {
        let p = pattern.trim_start_matches('/');
        let target = match p.find(['*', '?', '[', ']', '{', '}', '\\']) {
            None if p.trim_end_matches('/').contains('/') => p.trim_end_matches('/'),
            None => return None,
            Some(glob) => &p[..p[..glob].rfind('/')?],
        };
        targets.push(match subtree {
            Some(root) => format!("{root}/{target}"),
            None => target.to_string(),
        });
    }
    targets.sort_by(|a, b| path_cmp(a, b));
    targets.dedup_by(|later, kept| within(later, kept));
    Some(targets)
}

/// Whether `path` is `root` or under it.
fn within(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The bytes of a pack that `uses` need: from the first blob's start to the last one's end.
fn span_of(uses: &[BlobUse]) -> std::ops::Range<u64> {
    let start = uses.iter().map(|u| u.offset as u64).min().unwrap_or(0);
    let end = uses
        .iter()
        .map(|u| u.offset as u64 + u.length as u64)
        .max()
        .unwrap_or(0);
    start..end
}

/// Decodes the blobs of one pack from `span` (its bytes `span_of(uses)`) and writes them
/// where they go. Returns the files that could not be completed, and why.
#[allow(clippy::too_many_arguments)]
fn restore_pack(
    repo: &Repository,
    pack: PackId,
    uses: &[BlobUse],
    span: &mut [u8],
    files: &[FileTask],
    open: &mut HashMap<usize, File>,
    buffers: &mut PackBuffers,
    progress: &Reporter,
) -> Vec<(usize, String)> {
    let start = span_of(uses).start;
    let PackBuffers { plain, decoder } = buffers;
    // Uses arrive grouped by chunk (the plan is sorted by offset): decode each chunk once,
    // write it everywhere it goes, then go on to the next, so a thread holds one span and
    // one chunk.
    let mut failures = Vec::new();
    let mut current: Option<(ChunkId, std::result::Result<(), String>)> = None;
    for u in uses {
        if current.as_ref().is_none_or(|(id, _)| *id != u.chunk) {
            let s = (u.offset as u64 - start) as usize;
            let sealed = &mut span[s..s + u.length as usize];
            let decoded = repo
                .decode_blob_into(decoder, &u.chunk, sealed, u.raw_length, plain)
                .map_err(|e| format!("damaged data in pack {pack}: {e}"));
            current = Some((u.chunk, decoded));
        }
        let data = match current.as_ref().map(|(_, d)| d) {
            Some(Ok(())) => &plain[..],
            Some(Err(msg)) => {
                failures.push((u.file, msg.clone()));
                continue;
            }
            None => continue,
        };
        let task = &files[u.file];
        let file = match open.entry(u.file) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => match open_staging(task) {
                Ok(f) => v.insert(f),
                Err(e) => {
                    failures.push((
                        u.file,
                        format!("cannot open {}: {e}", task.staging.display()),
                    ));
                    continue;
                }
            },
        };
        if let Err(e) = file.write_all_at(data, u.file_offset) {
            failures.push((u.file, format!("cannot write {}: {e}", task.dest.display())));
            continue;
        }
        progress.send(Progress::Bytes(data.len() as u64));
        // Keep few descriptors open: packs are visited in id order, not file order.
        if open.len() > 64 {
            open.clear();
        }
    }
    failures
}

/// Opens a file's staging file for writing. The first write creates it (truncating anything
/// under that name) at its full size; decoders on other threads wait for that, then open it.
fn open_staging(task: &FileTask) -> std::io::Result<File> {
    let mut created = None;
    let creation = task.created.get_or_init(|| {
        let file = File::create(&task.staging).and_then(|f| f.set_len(task.item.size).map(|()| f));
        file.map(|f| created = Some(f)).map_err(|e| e.to_string())
    });
    match (created, creation) {
        (Some(f), _) => Ok(f),
        (None, Ok(())) => OpenOptions::new().write(true).open(&task.staging),
        (None, Err(e)) => Err(std::io::Error::other(e.clone())),
    }
}

/// Refuses a target directory that exists and has anything in it: restores that lay out a
/// server's files (a data directory, an RDB) never mix with what is there.
pub fn ensure_empty_dir(dir: &Path, what: &str) -> Result<()> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| Error::from(e).context(format!("reading {}", dir.display())))?
            .next()
            .is_some()
    {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} is not empty; {what} goes into a new or empty directory",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// "a/b/c" -> "a", "a/b".
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

fn safe_join(target: &Path, stored: &str) -> Result<PathBuf> {
    let rel = Path::new(stored);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::corrupt(format!(
            "refusing to restore unsafe path '{stored}'"
        )));
    }
    Ok(target.join(rel))
}

fn restore_symlink(dest: &Path, item: &Item) -> Result<()> {
    let target = item
        .target
        .as_deref()
        .ok_or_else(|| Error::corrupt(format!("symlink {} has no target", item.path)))?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if fs::symlink_metadata(dest).is_ok() {
        fs::remove_file(dest).with_context(|| format!("replacing {}", dest.display()))?;
    }
    std::os::unix::fs::symlink(target, dest)
        .with_context(|| format!("creating symlink {}", dest.display()))?;
    // The link's own time; a file system that cannot set it loses nothing that matters.
    let _ = set_mtime(dest, item.mtime_ns, libc::AT_SYMLINK_NOFOLLOW);
    Ok(())
}

fn apply_metadata(dest: &Path, item: &Item) -> Result<()> {
    if item.mode != 0 {
        fs::set_permissions(dest, fs::Permissions::from_mode(item.mode & 0o7777))
            .with_context(|| format!("setting mode of {}", dest.display()))?;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let _ = std::os::unix::fs::lchown(dest, Some(item.uid), Some(item.gid));
    }
    set_mtime(dest, item.mtime_ns, 0).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("setting mtime of {}", dest.display()),
        )
        .with_source(e)
    })
}

/// Sets the modification time of `path` and leaves its access time, in one system call
/// (`filetime::set_file_mtime` opened the file to do it: three calls per restored file).
/// `flags` is 0, or `AT_SYMLINK_NOFOLLOW` for a symbolic link's own time.
fn set_mtime(path: &Path, mtime_ns: i64, flags: libc::c_int) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let mtime = libc::timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as libc::c_long,
    };
    let times = [omit, mtime];
    // SAFETY: `path` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    match unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), flags) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::literal_targets;

    fn targets(include: &[&str], subtree: Option<&str>) -> Option<Vec<String>> {
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        literal_targets(&include, subtree)
    }

    #[test]
    fn seeks_only_where_every_match_shares_a_directory() {
        assert_eq!(
            targets(&["/srv/app/x.yaml", "srv/app/*.log", "srv/data/"], None),
            Some(vec!["srv/app".into(), "srv/data".into()]),
            "a literal path under a glob's directory is covered by it"
        );
        assert_eq!(targets(&["srv/ap*"], None), Some(vec!["srv".into()]));
        assert_eq!(
            targets(&["base/16384"], Some("physical/base")),
            Some(vec!["physical/base/base/16384".into()])
        );
        assert_eq!(
            targets(&[], Some("physical")),
            Some(vec!["physical".into()])
        );
        assert_eq!(targets(&[], None), None, "everything: the whole list");
        for anywhere in ["*.log", "app", "*/x", "{srv}/app", "[s]rv/app"] {
            assert_eq!(targets(&["srv/app/x", anywhere], None), None, "{anywhere}");
        }
    }
}
