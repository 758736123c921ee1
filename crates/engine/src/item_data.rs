//! Stored items read back for connectors: one file's data as a verified stream with read-ahead
//! (a dump fed to pg_restore, an RDB, a database file), and items found by path.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::index::Index;
use crate::items::{Item, ItemReader};
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot::Snapshot;

/// Chunks fetched ahead of the reader by each prefetch thread.
const PREFETCH_DEPTH: usize = 2;

/// One stored file read back in order as a stream (a dump fed to pg_restore, a WAL segment),
/// every chunk verified; fetches run ahead on a few threads to hide storage latency.
pub struct ItemStream {
    lanes: Vec<crossbeam_channel::Receiver<Result<Vec<u8>>>>,
    next: usize,
    remaining: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl ItemStream {
    pub fn open(repo: &Repository, index: Arc<Index>, item: &Item, progress: Reporter) -> Self {
        let lanes_n = if repo.store().is_local() { 2 } else { 6 };
        let mut lanes = Vec::new();
        for lane in 0..lanes_n {
            let (tx, rx) = crossbeam_channel::bounded(PREFETCH_DEPTH);
            let chunks: Vec<ChunkId> = item
                .chunks
                .iter()
                .skip(lane)
                .step_by(lanes_n)
                .copied()
                .collect();
            let (repo, index, progress) = (repo.clone(), index.clone(), progress.clone());
            std::thread::spawn(move || {
                for c in chunks {
                    let data = repo.read_blob(&index, &c);
                    if let Ok(d) = &data {
                        progress.send(Progress::Bytes(d.len() as u64));
                    }
                    if tx.send(data).is_err() {
                        return;
                    }
                }
            });
            lanes.push(rx);
        }
        Self {
            lanes,
            next: 0,
            remaining: item.chunks.len(),
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl std::io::Read for ItemStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            let lane = &self.lanes[self.next % self.lanes.len()];
            let chunk = lane
                .recv()
                .map_err(|_| std::io::Error::other("chunk reader stopped"))?
                .map_err(std::io::Error::other)?;
            self.next += 1;
            self.remaining -= 1;
            self.buf = chunk;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The items at `paths` in a snapshot, found in one pass over its item stream; each one
/// missing is an error naming it.
pub fn find_items(
    repo: &Repository,
    index: Arc<Index>,
    snap: &Snapshot,
    paths: &[&str],
) -> Result<HashMap<String, Item>> {
    let mut found = HashMap::new();
    for item in ItemReader::new(repo.clone(), index, snap.tree.clone()) {
        let item = item?;
        if paths.contains(&item.path.as_str()) {
            found.insert(item.path.clone(), item);
            if found.len() == paths.len() {
                break;
            }
        }
    }
    if let Some(missing) = paths.iter().find(|p| !found.contains_key(**p)) {
        return Err(Error::corrupt(format!("the snapshot lacks {missing}")));
    }
    Ok(found)
}
