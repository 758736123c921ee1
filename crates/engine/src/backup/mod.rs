//! Backup: the snapshot writer every source pushes items into; its threads are in `pipeline`.
//! Packs are uploaded first, then index files, then the snapshot: a crash at any point leaves
//! only unreferenced packs, which `check` tolerates and `prune` removes.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::chunker::Chunker;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{ChunkId, SetId, SnapshotId};
use crate::items::{Item, ItemKind, ItemReader, ParentCursor};
use crate::lock::{LockGuard, LockKind};
use crate::progress::{Progress, Reporter};
use crate::repo::{hostname, username, Repository, FORMAT_VERSION};
use crate::snapshot::{self, Problem, Snapshot, SourceInfo, Summary};

mod pipeline;

pub(crate) use pipeline::num_cpus;
pub use pipeline::StreamSink;
use pipeline::{chunk_all, AsmMsg, ChunkReply, Shared};

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
    let _lock = LockGuard::acquire(repo, LockKind::Shared, "backup", opts.lock_wait)?;
    let mut writer = SnapshotWriter::new(repo, source.info(), source.paths(), opts)?;
    source.run(&mut writer)?;
    writer.finish()
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
        let mut index = repo.load_index_for_writing()?;
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
        let pipeline = pipeline::start(repo, index, &opts)?;
        Ok(Self {
            shared: pipeline.shared,
            info,
            paths,
            sink: Some(pipeline.sink),
            opts,
            parent,
            asm: Some(pipeline.asm),
            assembler: Some(pipeline.assembler),
            threads: pipeline.threads,
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
    /// The backup set this snapshot belongs to.
    pub fn set_id(&self) -> Option<SetId> {
        self.opts.set_id
    }

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
