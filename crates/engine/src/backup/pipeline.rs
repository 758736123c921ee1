//! The threads behind a snapshot writer, and the bounded channels between them.
//!
//! ```text
//! source thread: read + chunk ──jobs──▶ N workers: hash, dedup, zstd, seal ──blobs──▶ packer
//!        │                                   │ (reply per chunk)                      │ packs
//!        └──items, chunk replies in order──▶ assembler: item stream ─tree blobs─▶    uploaders
//! ```
//! Every channel is bounded, so memory stays bounded whatever the input.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::BackupOptions;
use crate::buffers::BufferPool;
use crate::chunker::{Chunker, Splitter};
use crate::codec::{Codec, Encoder};
use crate::error::{Error, ErrorKind, Result};
use crate::id::ChunkId;
use crate::index::{Index, IndexPacks};
use crate::items::{Item, ItemKind, ItemWriter};
use crate::pack::{BlobKind, FinishedPack, PackBuilder};
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::store::ObjectKind;

/// Index files are written every this many packs, so a crash loses little dedup work.
const INDEX_FLUSH_PACKS: usize = 64;
/// Concurrent pack writes on local disk. With `O_DIRECT` one writer keeps up (it writes a pack
/// in less time than the workers take to fill the next), and each write in flight holds a pack
/// in memory. S3 uploads wait on round trips: 4 run at once there.
const UPLOADS_LOCAL: usize = 1;
/// Room in a pack buffer beyond the pack size: the last blob and the header.
const PACK_SLACK: usize = 1 << 20;

pub(super) struct Blob {
    pub(super) kind: BlobKind,
    pub(super) id: ChunkId,
    pub(super) sealed: Vec<u8>,
    pub(super) raw_len: u32,
}

pub(super) struct Job {
    pub(super) data: Vec<u8>,
    pub(super) reply: Sender<Result<ChunkId>>,
}

/// Where a chunk's id arrives once a worker has hashed (and maybe stored) it.
pub(super) type ChunkReply = Receiver<Result<ChunkId>>;

pub(super) enum AsmMsg {
    Begin(Item),
    Chunk(ChunkReply),
    End(u64),
    Abort,
    Whole(Item),
}

pub(super) struct Shared {
    pub(super) repo: Repository,
    pub(super) index: Arc<Index>,
    pub(super) pending: Mutex<HashSet<ChunkId>>,
    pub(super) failure: Mutex<Option<Error>>,
    pub(super) failed: AtomicBool,
    pub(super) data_added: AtomicU64,
    pub(super) stored_added: AtomicU64,
    pub(super) written: Mutex<IndexPacks>,
    /// Chunk buffers, from the splitter to the workers and back.
    pub(super) chunk_buffers: BufferPool,
    /// Sealed blobs, from the workers to the packer and back.
    pub(super) sealed_buffers: BufferPool,
}

impl Shared {
    pub(super) fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first failure, for every stage that stops because of it: whichever stage reports
    /// last, the user sees the cause ("No space left on device"), not a symptom.
    pub(super) fn first_failure(&self) -> Error {
        let f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.as_ref()
            .map(Error::duplicate)
            .unwrap_or_else(|| Error::new(ErrorKind::Io, "backup pipeline stopped"))
    }

    /// True if this chunk must be stored (not in the index, not already claimed by this run).
    pub(super) fn claim(&self, id: ChunkId) -> bool {
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
    pub(super) fn encode_blob(&self, enc: &mut Encoder, kind: BlobKind, data: &[u8]) -> Blob {
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

    pub(super) fn flush_index(&self, all: bool) -> Result<()> {
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

/// The running pipeline a snapshot writer feeds.
pub(super) struct Pipeline {
    pub(super) shared: Arc<Shared>,
    pub(super) sink: StreamSink,
    pub(super) asm: Sender<AsmMsg>,
    pub(super) assembler: JoinHandle<Result<Vec<ChunkId>>>,
    pub(super) threads: Vec<JoinHandle<()>>,
}

/// Starts the workers, packer, uploaders and item assembler.
pub(super) fn start(
    repo: &Repository,
    index: Arc<Index>,
    opts: &BackupOptions,
) -> Result<Pipeline> {
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
    Ok(Pipeline {
        shared,
        sink,
        asm: asm_tx,
        assembler,
        threads,
    })
}

/// Where one stream's chunks go: split here, then hashed, compressed and stored by the workers.
pub struct StreamSink {
    pub(super) shared: Arc<Shared>,
    pub(super) jobs: Sender<Job>,
    pub(super) progress: Reporter,
    pub(super) splitter: Splitter,
    pub(super) chunks: Vec<ChunkReply>,
    pub(super) size: u64,
}

impl StreamSink {
    pub(super) fn new(
        shared: Arc<Shared>,
        jobs: Sender<Job>,
        progress: Reporter,
        chunker: Chunker,
    ) -> Self {
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

    pub(super) fn split<R: Read>(
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

    pub(super) fn take(&mut self) -> (Vec<ChunkReply>, u64) {
        (
            std::mem::take(&mut self.chunks),
            std::mem::take(&mut self.size),
        )
    }
}

/// Chunks a whole stream into `sink`; its chunks and size.
pub(super) fn chunk_all<R: Read>(
    sink: &mut StreamSink,
    item: &Item,
    reader: R,
) -> Result<(Vec<ChunkReply>, u64)> {
    sink.progress.send(Progress::Item(item.path.clone()));
    sink.copy_from(reader)
        .map_err(|e| e.context(item.path.clone()))?;
    Ok(sink.take())
}

pub(super) fn spawn<T: Send + 'static>(
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

pub(super) fn worker(shared: Arc<Shared>, jobs: Receiver<Job>, blobs: Sender<Blob>, codec: Codec) {
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

pub(super) fn assembler(
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

pub(super) fn packer(
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

pub(super) fn uploader(shared: Arc<Shared>, packs: Receiver<FinishedPack>, buffers: BufferPool) {
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
