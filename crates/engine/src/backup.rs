//! Backup: the snapshot writer that every source pushes items into, and the pipeline behind it.
//!
//! ```text
//! source thread: read + chunk ──jobs──▶ N workers: hash, dedup, zstd, seal ──blobs──▶ packer
//!        │                                   │ (reply per chunk)                      │ packs
//!        └──items, chunk replies in order──▶ assembler: item stream ─tree blobs─▶    uploaders
//! ```
//! Every channel is bounded, so memory stays bounded whatever the input. Packs are uploaded
//! first, then index files, then the snapshot: a crash at any point leaves only unreferenced
//! packs, which `check` tolerates and `prune` removes.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::buffers::BufferPool;
use crate::chunker::{Chunker, Splitter};
use crate::codec::{Codec, Encoder};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{ChunkId, SetId, SnapshotId};
use crate::index::{Index, IndexPacks};
use crate::items::{Item, ItemKind, ItemReader, ItemWriter, ParentCursor};
use crate::lock::LockGuard;
use crate::pack::{BlobKind, FinishedPack, PackBuilder};
use crate::progress::{Progress, Reporter};
use crate::repo::{hostname, username, Repository, FORMAT_VERSION};
use crate::snapshot::{self, Problem, Snapshot, SourceInfo, Summary};
use crate::store::ObjectKind;

/// Index files are written every this many packs, so a crash loses little dedup work.
const INDEX_FLUSH_PACKS: usize = 64;
/// Concurrent pack writes on local disk. With `O_DIRECT` one writer keeps up (it writes a pack
/// in less time than the workers take to fill the next), and each write in flight holds a pack
/// in memory. S3 uploads wait on round trips: 4 run at once there.
const UPLOADS_LOCAL: usize = 1;
/// Room in a pack buffer beyond the pack size: the last blob and the header.
const PACK_SLACK: usize = 1 << 20;

#[derive(Clone, Default)]
pub struct BackupOptions {
    pub tags: Vec<String>,
    pub set_id: Option<SetId>,
    /// Snapshot whose unchanged files are reused without reading them.
    pub parent: Option<SnapshotId>,
    /// Worker threads for hashing/compression/encryption (0: one per core).
    pub threads: usize,
    /// Concurrent pack uploads (0: 4).
    pub uploads: usize,
    /// How long to wait for an exclusive lock (a running prune) to go away.
    pub lock_wait: std::time::Duration,
    pub progress: Reporter,
}

/// What a source produces; one snapshot per source per run.
pub trait Source {
    fn info(&self) -> SourceInfo;
    /// What is being backed up, as shown in listings.
    fn paths(&self) -> Vec<String>;
    fn run(&mut self, writer: &mut SnapshotWriter) -> Result<()>;
}

/// Backs up one source into one snapshot under a shared lock.
pub fn run(
    repo: &Repository,
    source: &mut dyn Source,
    opts: BackupOptions,
) -> Result<(SnapshotId, Snapshot)> {
    let _lock = LockGuard::acquire(repo, false, "backup", opts.lock_wait)?;
    let mut writer = SnapshotWriter::new(repo, source.info(), source.paths(), opts)?;
    source.run(&mut writer)?;
    writer.finish()
}

struct Blob {
    kind: BlobKind,
    id: ChunkId,
    sealed: Vec<u8>,
    raw_len: u32,
}

struct Job {
    data: Vec<u8>,
    reply: Sender<Result<ChunkId>>,
}

/// Where a chunk's id arrives once a worker has hashed (and maybe stored) it.
type ChunkReply = Receiver<Result<ChunkId>>;

enum AsmMsg {
    Begin(Item),
    Chunk(ChunkReply),
    End(u64),
    Abort,
    Whole(Item),
}

struct Shared {
    repo: Repository,
    index: Arc<Index>,
    pending: Mutex<HashSet<ChunkId>>,
    failure: Mutex<Option<Error>>,
    failed: AtomicBool,
    data_added: AtomicU64,
    stored_added: AtomicU64,
    written: Mutex<IndexPacks>,
    /// Chunk buffers, from the splitter to the workers and back.
    chunk_buffers: BufferPool,
    /// Sealed blobs, from the workers to the packer and back.
    sealed_buffers: BufferPool,
}

impl Shared {
    fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first failure, for every stage that stops because of it: whichever stage reports
    /// last, the user sees the cause ("No space left on device"), not a symptom.
    fn first_failure(&self) -> Error {
        let f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.as_ref()
            .map(Error::duplicate)
            .unwrap_or_else(|| Error::new(ErrorKind::Io, "backup pipeline stopped"))
    }

    /// True if this chunk must be stored (not in the index, not already claimed by this run).
    fn claim(&self, id: ChunkId) -> bool {
        if self.index.contains(&id) {
            return false;
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
    }

    /// Hashes a chunk and, if it is new, compresses and seals it. A known chunk comes back
    /// with empty `sealed`: nothing to store, but the caller still needs its id.
    fn encode_blob(&self, enc: &mut Encoder, kind: BlobKind, data: &[u8]) -> Blob {
        let id = self.repo.key().chunk_id(data);
        let raw_len = data.len() as u32;
        if !self.claim(id) {
            return Blob {
                kind,
                id,
                sealed: Vec::new(),
                raw_len,
            };
        }
        self.data_added
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut sealed = self.sealed_buffers.take();
        enc.encode_into(self.repo.key(), data, &mut sealed);
        Blob {
            kind,
            id,
            sealed,
            raw_len,
        }
    }

    fn flush_index(&self, all: bool) -> Result<()> {
        let batch = {
            let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
            if w.is_empty() || (!all && w.len() < INDEX_FLUSH_PACKS) {
                return Ok(());
            }
            std::mem::take(&mut *w)
        };
        self.repo.save_index(&batch).map(|_| ())
    }
}

pub struct SnapshotWriter {
    shared: Arc<Shared>,
    info: SourceInfo,
    paths: Vec<String>,
    opts: BackupOptions,
    parent: Option<ParentCursor>,
    /// The calling thread's stream sink; its job sender keeps the workers alive.
    sink: Option<StreamSink>,
    asm: Option<Sender<AsmMsg>>,
    assembler: Option<JoinHandle<Result<Vec<ChunkId>>>>,
    threads: Vec<JoinHandle<()>>,
    summary: Summary,
    started: Instant,
    facts: std::collections::BTreeMap<String, serde_json::Value>,
    /// Items read out of path order (a tar stream, concurrent dumps), recorded sorted later.
    deferred: Vec<Deferred>,
}

/// An item whose data is already chunked, waiting to be recorded in path order.
struct Deferred {
    item: Item,
    chunks: Vec<ChunkReply>,
    size: u64,
}

impl SnapshotWriter {
    pub fn new(
        repo: &Repository,
        info: SourceInfo,
        paths: Vec<String>,
        opts: BackupOptions,
    ) -> Result<Self> {
        opts.progress.send(Progress::Phase("loading index".into()));
        let mut index = repo.load_index()?;
        let resumed = crate::resume::adopt_unindexed_packs(repo, &mut index, &opts.progress)?;
        let index = Arc::new(index);
        let parent = match opts.parent {
            Some(id) => {
                let snap = snapshot::load(repo, &id)?;
                Some(ParentCursor::new(ItemReader::new(
                    repo.clone(),
                    index.clone(),
                    snap.tree,
                )))
            }
            None => None,
        };
        let workers = if opts.threads == 0 {
            num_cpus()
        } else {
            opts.threads
        };
        // Each upload holds one pack in memory; on S3 several hide the round trips.
        let uploads = match opts.uploads {
            0 if repo.store().is_local() => UPLOADS_LOCAL,
            0 => 4,
            n => n,
        };
        // One queued chunk per worker is enough to keep the workers busy; deeper queues only
        // hold more memory. The pools hold as many buffers as can be in flight at once (queued;
        // per worker, one in hand and one waiting on a full queue; one being filled or packed),
        // so a steady pipeline allocates none. Each keeps twice the average chunk size, as
        // larger chunks are rare.
        let queue = workers;
        let in_flight = queue + 2 * workers + 1;
        let chunk_keep = 2 * repo.data_chunker().params().avg_size as usize;
        let pack_size = repo.config().pack_size as usize;
        let shared = Arc::new(Shared {
            repo: repo.clone(),
            index,
            pending: Mutex::new(HashSet::new()),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            data_added: AtomicU64::new(0),
            stored_added: AtomicU64::new(0),
            written: Mutex::new(Vec::new()),
            chunk_buffers: BufferPool::new(in_flight, chunk_keep),
            sealed_buffers: BufferPool::new(in_flight, chunk_keep),
        });
        let pack_buffers = BufferPool::new(uploads + 1, pack_size + PACK_SLACK);
        let codec = repo.codec();
        let (job_tx, job_rx) = bounded::<Job>(queue);
        let (blob_tx, blob_rx) = bounded::<Blob>(queue);
        // Rendezvous: a finished pack waits in the packer, not in a queue, bounding packs in memory
        // to the one being built plus one per uploader.
        let (pack_tx, pack_rx) = bounded::<FinishedPack>(0);
        let (asm_tx, asm_rx) = bounded::<AsmMsg>(256);
        let mut threads = Vec::new();
        for n in 0..workers {
            let (shared, jobs, blobs) = (shared.clone(), job_rx.clone(), blob_tx.clone());
            threads.push(spawn(&format!("bulwark-work{n}"), move || {
                worker(shared, jobs, blobs, codec)
            })?);
        }
        {
            let (shared, buffers) = (shared.clone(), pack_buffers.clone());
            threads.push(spawn("bulwark-pack", move || {
                packer(shared, blob_rx, pack_tx, buffers, pack_size)
            })?);
        }
        for n in 0..uploads {
            let (shared, packs, buffers) = (shared.clone(), pack_rx.clone(), pack_buffers.clone());
            threads.push(spawn(&format!("bulwark-up{n}"), move || {
                uploader(shared, packs, buffers)
            })?);
        }
        let assembler = {
            let (shared, chunker) = (shared.clone(), repo.tree_chunker());
            spawn("bulwark-items", move || {
                assembler(shared, asm_rx, blob_tx, chunker, codec)
            })?
        };
        let sink = StreamSink::new(
            shared.clone(),
            job_tx,
            opts.progress.clone(),
            repo.data_chunker(),
        );
        Ok(Self {
            shared,
            info,
            paths,
            sink: Some(sink),
            opts,
            parent,
            asm: Some(asm_tx),
            assembler: Some(assembler),
            threads,
            summary: Summary {
                resumed_bytes: resumed.bytes,
                ..Default::default()
            },
            started: Instant::now(),
            facts: Default::default(),
            deferred: Vec::new(),
        })
    }

    fn check(&self) -> Result<()> {
        if self.shared.failed() {
            return Err(self.shared.first_failure());
        }
        Ok(())
    }

    fn send(&self, msg: AsmMsg) -> Result<()> {
        let asm = self
            .asm
            .as_ref()
            .ok_or_else(|| Error::invalid("snapshot writer already finished"))?;
        asm.send(msg).map_err(|_| self.shared.first_failure())
    }

    /// Records a directory.
    pub fn put_dir(&mut self, item: Item) -> Result<()> {
        self.check()?;
        self.summary.dirs += 1;
        self.send(AsmMsg::Whole(item))
    }

    /// Records a symlink (its target in `item.target`).
    pub fn put_symlink(&mut self, item: Item) -> Result<()> {
        self.check()?;
        self.send(AsmMsg::Whole(item))
    }

    /// Records a file. If the parent snapshot has the same file unchanged (size, mtime, ctime,
    /// inode), its chunks are reused and `open` is never called. A read error is recorded
    /// against the item (the snapshot becomes partial); an `Err` means the backup itself cannot
    /// go on.
    pub fn put_file<R: Read>(
        &mut self,
        mut item: Item,
        open: impl FnOnce() -> std::io::Result<R>,
    ) -> Result<()> {
        self.check()?;
        let prev = match self.parent.as_mut() {
            Some(cursor) => cursor.find(&item.path).unwrap_or_else(|e| {
                log::warn!("parent snapshot unreadable, reading all files: {e}");
                self.parent = None;
                None
            }),
            None => None,
        };
        if let Some(prev) = &prev {
            if item.unchanged_since(prev)
                && prev.chunks.iter().all(|c| self.shared.index.contains(c))
            {
                item.chunks = prev.chunks.clone();
                self.summary.files += 1;
                self.summary.files_unchanged += 1;
                self.summary.bytes += item.size;
                self.send(AsmMsg::Whole(item))?;
                return Ok(());
            }
        }
        let path = item.path.clone();
        let reader = match open() {
            Ok(r) => r,
            Err(e) => {
                self.item_error(&path, format!("cannot open: {e}"));
                return Ok(());
            }
        };
        match self.put_data(item, reader) {
            Ok(size) => {
                self.summary.files += 1;
                self.summary.bytes += size;
                if prev.is_some() {
                    self.summary.files_changed += 1;
                } else {
                    self.summary.files_new += 1;
                }
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Io | ErrorKind::Source | ErrorKind::NotFound
                ) && !self.shared.failed() =>
            {
                self.item_error(&path, format!("read failed: {e}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Records a stream (stdin, a dump command). Any read error fails the backup: a stream cut
    /// short must never become a snapshot.
    pub fn put_stream<R: Read>(&mut self, item: Item, reader: R) -> Result<u64> {
        self.check()?;
        let size = self.put_data(item, reader)?;
        self.summary.files += 1;
        self.summary.files_new += 1;
        self.summary.bytes += size;
        Ok(size)
    }

    fn put_data<R: Read>(&mut self, item: Item, reader: R) -> Result<u64> {
        self.opts.progress.send(Progress::Item(item.path.clone()));
        let path = item.path.clone();
        self.send(AsmMsg::Begin(item))?;
        let (Some(sink), Some(asm)) = (self.sink.as_mut(), self.asm.as_ref()) else {
            return Err(Error::invalid("snapshot writer already finished"));
        };
        let shared = &self.shared;
        let result = sink.split(reader, |rx| {
            asm.send(AsmMsg::Chunk(rx))
                .map_err(|_| shared.first_failure())
        });
        match result {
            Ok(size) => {
                self.summary.bytes_read += size;
                self.send(AsmMsg::End(size))?;
                Ok(size)
            }
            Err(e) => {
                self.send(AsmMsg::Abort)?;
                Err(e.context(path))
            }
        }
    }

    /// Another sink feeding the same workers (for a stream read on another thread, or cut
    /// with other chunk sizes).
    fn new_sink(&self, chunker: Chunker) -> Result<StreamSink> {
        let sink = self
            .sink
            .as_ref()
            .ok_or_else(|| Error::invalid("snapshot writer already finished"))?;
        Ok(StreamSink::new(
            self.shared.clone(),
            sink.jobs.clone(),
            self.opts.progress.clone(),
            chunker,
        ))
    }

    /// Records several streams produced concurrently (one dump per database, say), at most
    /// `parallel` at a time. `produce` gets each task and a sink to copy its stream into; any
    /// error fails the whole call, as with `put_stream`. The items are recorded in path order
    /// once every stream has finished.
    pub fn put_streams<T: Send>(
        &mut self,
        tasks: Vec<(Item, T)>,
        parallel: usize,
        produce: impl Fn(T, &mut StreamSink) -> Result<()> + Sync,
    ) -> Result<()> {
        self.check()?;
        let queue = Mutex::new(tasks.into_iter().collect::<std::collections::VecDeque<_>>());
        let done: Mutex<Vec<Deferred>> = Mutex::new(Vec::new());
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let lanes = parallel.max(1);
        let sinks = (0..lanes)
            .map(|_| self.new_sink(self.shared.repo.data_chunker()))
            .collect::<Result<Vec<_>>>()?;
        std::thread::scope(|scope| {
            for mut sink in sinks {
                let (queue, done, first_error, produce) = (&queue, &done, &first_error, &produce);
                scope.spawn(move || loop {
                    if first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some()
                    {
                        return;
                    }
                    let Some((item, task)) =
                        queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
                    else {
                        return;
                    };
                    sink.progress.send(Progress::Item(item.path.clone()));
                    let path = item.path.clone();
                    match produce(task, &mut sink) {
                        Ok(()) => {
                            let (chunks, size) = sink.take();
                            done.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Deferred { item, chunks, size });
                        }
                        Err(e) => {
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e.context(path));
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        self.deferred
            .extend(done.into_inner().unwrap_or_else(|p| p.into_inner()));
        self.record_deferred()
    }

    /// Chunks an item's data now but records the item later, in path order, when
    /// `record_deferred` (or `finish`) runs: for sources that cannot produce sorted paths.
    /// Directories and symlinks pass `None` for the data. Any read error fails the backup.
    pub fn put_deferred<R: Read>(&mut self, item: Item, data: Option<R>) -> Result<()> {
        self.check()?;
        let (chunks, size) = match data {
            Some(reader) => {
                let sink = self
                    .sink
                    .as_mut()
                    .ok_or_else(|| Error::invalid("snapshot writer already finished"))?;
                chunk_all(sink, &item, reader)?
            }
            None => (Vec::new(), 0),
        };
        self.deferred.push(Deferred { item, chunks, size });
        Ok(())
    }

    /// `put_deferred` for a stream of small records that change independently (vector points):
    /// cut into the small chunks of the item stream, so one changed record re-stores tens of
    /// kilobytes rather than a megabyte.
    pub fn put_deferred_records<R: Read>(&mut self, item: Item, reader: R) -> Result<()> {
        self.check()?;
        let mut sink = self.new_sink(self.shared.repo.tree_chunker())?;
        let (chunks, size) = chunk_all(&mut sink, &item, reader)?;
        self.deferred.push(Deferred { item, chunks, size });
        Ok(())
    }

    /// Records the deferred items, sorted by path.
    pub fn record_deferred(&mut self) -> Result<()> {
        let mut deferred = std::mem::take(&mut self.deferred);
        deferred.sort_by(|a, b| crate::items::path_cmp(&a.item.path, &b.item.path));
        for d in deferred {
            if d.item.kind != ItemKind::File {
                if d.item.kind == ItemKind::Dir {
                    self.summary.dirs += 1;
                }
                self.send(AsmMsg::Whole(d.item))?;
                continue;
            }
            self.send(AsmMsg::Begin(d.item))?;
            for rx in d.chunks {
                self.send(AsmMsg::Chunk(rx))?;
            }
            self.send(AsmMsg::End(d.size))?;
            self.summary.files += 1;
            self.summary.files_new += 1;
            self.summary.bytes += d.size;
            self.summary.bytes_read += d.size;
        }
        Ok(())
    }

    /// A warning: the item is stored, but the user should look at it.
    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        let p = self.report(path, message.into());
        self.summary.warnings.push(p);
    }

    /// An item that could not be backed up: the snapshot becomes partial.
    pub fn item_error(&mut self, path: &str, message: impl Into<String>) {
        let p = self.report(path, message.into());
        self.summary.partial = true;
        self.summary.errors.push(p);
    }

    fn report(&self, path: &str, message: String) -> Problem {
        self.opts.progress.send(Progress::Warning {
            path: path.to_string(),
            message: message.clone(),
        });
        Problem {
            path: path.to_string(),
            message,
        }
    }

    /// Tells the user what the source is doing (e.g. waiting for a server).
    pub fn phase(&self, text: impl Into<String>) {
        self.opts.progress.send(Progress::Phase(text.into()));
    }

    /// Records a fact for later verification (e.g. row counts at dump time).
    pub fn fact(&mut self, key: &str, value: serde_json::Value) {
        self.facts.insert(key.to_string(), value);
    }

    /// Waits for everything to be stored, writes the index and then the snapshot.
    pub fn finish(mut self) -> Result<(SnapshotId, Snapshot)> {
        self.opts.progress.send(Progress::Phase("finishing".into()));
        self.record_deferred()?;
        let tree = self.shutdown()?;
        self.shared.flush_index(true)?;
        let mut summary = std::mem::take(&mut self.summary);
        summary.data_added = self.shared.data_added.load(Ordering::Relaxed);
        summary.stored_added = self.shared.stored_added.load(Ordering::Relaxed);
        summary.duration_secs = self.started.elapsed().as_secs_f64();
        let snap = Snapshot {
            version: FORMAT_VERSION,
            time: jiff::Timestamp::now(),
            hostname: hostname(),
            username: username(),
            source: self.info.clone(),
            set_id: self.opts.set_id,
            tags: self.opts.tags.clone(),
            paths: self.paths.clone(),
            tree,
            parent: self.opts.parent,
            original: None,
            summary,
            facts: std::mem::take(&mut self.facts),
            program_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let id = snapshot::save(&self.shared.repo, &snap)?;
        Ok((id, snap))
    }

    /// Closes the channels and joins every thread; returns the item stream's chunks.
    fn shutdown(&mut self) -> Result<Vec<ChunkId>> {
        self.sink = None;
        self.asm = None;
        let tree = match self.assembler.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Io, "item assembler panicked"))),
            None => Err(Error::invalid("snapshot writer already finished")),
        };
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        if self.shared.failed() {
            return Err(self.shared.first_failure());
        }
        tree
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // On an error path: stop the threads before the process moves on; nothing is committed.
        if self.assembler.is_some() {
            self.shared
                .fail(Error::new(ErrorKind::Io, "backup abandoned"));
            let _ = self.shutdown();
        }
    }
}

/// Where one stream's chunks go: split here, then hashed, compressed and stored by the workers.
pub struct StreamSink {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    progress: Reporter,
    splitter: Splitter,
    chunks: Vec<ChunkReply>,
    size: u64,
}

impl StreamSink {
    fn new(shared: Arc<Shared>, jobs: Sender<Job>, progress: Reporter, chunker: Chunker) -> Self {
        let splitter = Splitter::new(chunker, shared.chunk_buffers.clone());
        Self {
            shared,
            jobs,
            progress,
            splitter,
            chunks: Vec::new(),
            size: 0,
        }
    }

    /// Copies `reader` to its end into the current stream; returns the bytes read.
    pub fn copy_from<R: Read>(&mut self, reader: R) -> Result<u64> {
        let mut chunks = std::mem::take(&mut self.chunks);
        let result = self.split(reader, |rx| {
            chunks.push(rx);
            Ok(())
        });
        self.chunks = chunks;
        let n = result?;
        self.size += n;
        Ok(n)
    }

    fn split<R: Read>(
        &mut self,
        reader: R,
        mut on_chunk: impl FnMut(ChunkReply) -> Result<()>,
    ) -> Result<u64> {
        let (shared, jobs, progress) = (&self.shared, &self.jobs, &self.progress);
        self.splitter.split(reader, |data| {
            progress.send(Progress::Bytes(data.len() as u64));
            let (tx, rx) = bounded(1);
            jobs.send(Job { data, reply: tx })
                .map_err(|_| shared.first_failure())?;
            on_chunk(rx)
        })
    }

    fn take(&mut self) -> (Vec<ChunkReply>, u64) {
        (
            std::mem::take(&mut self.chunks),
            std::mem::take(&mut self.size),
        )
    }
}

/// Chunks a whole stream into `sink`; its chunks and size.
fn chunk_all<R: Read>(
    sink: &mut StreamSink,
    item: &Item,
    reader: R,
) -> Result<(Vec<ChunkReply>, u64)> {
    sink.progress.send(Progress::Item(item.path.clone()));
    sink.copy_from(reader)
        .map_err(|e| e.context(item.path.clone()))?;
    Ok(sink.take())
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| Error::new(ErrorKind::Io, "cannot start thread").with_source(e))
}

pub(crate) fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn worker(shared: Arc<Shared>, jobs: Receiver<Job>, blobs: Sender<Blob>, codec: Codec) {
    let mut enc = match Encoder::new(codec) {
        Ok(e) => e,
        Err(e) => return shared.fail(e),
    };
    for job in jobs {
        if shared.failed() {
            let _ = job.reply.send(Err(shared.first_failure()));
            continue;
        }
        let blob = shared.encode_blob(&mut enc, BlobKind::Data, &job.data);
        shared.chunk_buffers.give(job.data);
        let id = blob.id;
        let reply = if blob.sealed.is_empty() {
            Ok(id)
        } else {
            blobs
                .send(blob)
                .map(|_| id)
                .map_err(|_| Error::new(ErrorKind::Io, "packer stopped"))
        };
        let _ = job.reply.send(reply);
    }
}

fn assembler(
    shared: Arc<Shared>,
    msgs: Receiver<AsmMsg>,
    blobs: Sender<Blob>,
    chunker: crate::chunker::Chunker,
    codec: Codec,
) -> Result<Vec<ChunkId>> {
    let result = (|| -> Result<Vec<ChunkId>> {
        let mut enc = Encoder::new(codec)?;
        let mut writer = ItemWriter::new(chunker);
        let mut tree = Vec::new();
        let mut emit = |data: Vec<u8>| -> Result<()> {
            let blob = shared.encode_blob(&mut enc, BlobKind::Tree, &data);
            tree.push(blob.id);
            if blob.sealed.is_empty() {
                shared.sealed_buffers.give(blob.sealed);
            } else {
                blobs
                    .send(blob)
                    .map_err(|_| Error::new(ErrorKind::Io, "packer stopped"))?;
            }
            Ok(())
        };
        let mut current: Option<Item> = None;
        for msg in msgs {
            match msg {
                AsmMsg::Begin(item) => current = Some(item),
                AsmMsg::Chunk(rx) => {
                    let id = rx
                        .recv()
                        .map_err(|_| Error::new(ErrorKind::Io, "worker stopped"))??;
                    if let Some(item) = current.as_mut() {
                        item.chunks.push(id);
                    }
                }
                AsmMsg::End(size) => {
                    if let Some(mut item) = current.take() {
                        item.size = size;
                        writer.push(&item, &mut emit)?;
                    }
                }
                AsmMsg::Abort => current = None,
                AsmMsg::Whole(item) => {
                    debug_assert!(
                        item.kind != ItemKind::File || item.size == 0 || !item.chunks.is_empty()
                    );
                    writer.push(&item, &mut emit)?;
                }
            }
        }
        writer.finish(&mut emit)?;
        Ok(tree)
    })();
    if let Err(e) = &result {
        shared.fail(Error::new(e.kind(), e.to_string()));
    }
    result
}

fn packer(
    shared: Arc<Shared>,
    blobs: Receiver<Blob>,
    packs: Sender<FinishedPack>,
    buffers: BufferPool,
    pack_size: usize,
) {
    let key = shared.repo.key();
    let fresh = || {
        let mut buf = buffers.take();
        buf.reserve(pack_size + PACK_SLACK);
        PackBuilder::new(buf)
    };
    let mut data = fresh();
    // Item-stream packs stay small in most backups: this one grows as needed.
    let mut tree = PackBuilder::default();
    for blob in blobs {
        let builder = if blob.kind == BlobKind::Data {
            &mut data
        } else {
            &mut tree
        };
        builder.add(blob.kind, blob.id, &blob.sealed, blob.raw_len);
        shared.sealed_buffers.give(blob.sealed);
        if builder.len() >= pack_size {
            // Hand the full pack on before taking a buffer for the next one: while every
            // uploader is busy, the buffer it frees is the one the next pack gets.
            let full = std::mem::take(builder).finish(key);
            if packs.send(full).is_err() {
                return;
            }
            *builder = fresh();
        }
    }
    for builder in [data, tree] {
        if !builder.is_empty() && packs.send(builder.finish(key)).is_err() {
            return;
        }
    }
}

fn uploader(shared: Arc<Shared>, packs: Receiver<FinishedPack>, buffers: BufferPool) {
    for pack in packs {
        if shared.failed() {
            continue;
        }
        let len = pack.bytes.len() as u64;
        let written = shared
            .repo
            .store()
            .write(ObjectKind::Pack, &pack.id.to_hex(), &pack.bytes);
        buffers.give(pack.bytes);
        match written {
            Ok(()) => {
                shared.stored_added.fetch_add(len, Ordering::Relaxed);
                shared
                    .written
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((pack.id, pack.entries));
                if let Err(e) = shared.flush_index(false) {
                    shared.fail(e);
                }
            }
            Err(e) => shared.fail(e.context("uploading pack")),
        }
    }
}
