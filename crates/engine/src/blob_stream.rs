//! A sequence of blobs (a snapshot's item stream) read in order, ahead of its use. Blobs that
//! lie next to each other in a pack come in one ranged read, and several reads are in flight
//! on threads of their own, which also decode. One request per tree chunk, one after another,
//! cost a round trip each: tens of milliseconds on object storage (about 44 ms against Garage,
//! whose small writes wait for the reader's delayed acknowledgement), seconds before a restore
//! of a large snapshot could start.

use std::collections::VecDeque;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::codec::Decoder;
use crate::error::{Error, Result, ResultExt};
use crate::id::{ChunkId, PackId};
use crate::index::Index;
use crate::repo::Repository;
use crate::store::ObjectKind;

/// The most plaintext one read brings: with `depth` reads in flight, memory stays within a
/// few MiB whatever the stream's length.
const READ_RAW_BYTES: u64 = 2 * 1024 * 1024;

/// Blobs read together: a span of one pack and where each blob lies in it.
struct Read {
    pack: PackId,
    start: u64,
    end: u64,
    blobs: Vec<(ChunkId, u64, u64, u32)>,
}

/// What one position of the sequence holds: a read, or a chunk the index does not know.
enum Step {
    Read(Read),
    Unknown(ChunkId),
}

/// One read's outcome: the plaintext of its blobs in order, up to the first that could not be
/// read, and why that one could not.
type Done = (Vec<Vec<u8>>, Option<Error>);

pub struct BlobStream {
    repo: Repository,
    steps: std::vec::IntoIter<Step>,
    /// Reads sent to the workers, oldest first.
    in_flight: VecDeque<Receiver<Done>>,
    /// Plaintext of the oldest finished read not yet handed out, and its failure, if any,
    /// which comes after it.
    ready: VecDeque<Vec<u8>>,
    failed: Option<Error>,
    /// Started at the first read: a stream nobody reads costs no thread.
    workers: Option<Sender<(Read, Sender<Done>)>>,
    depth: usize,
}

impl BlobStream {
    pub fn new(repo: Repository, index: &Index, chunks: &[ChunkId]) -> Self {
        let depth = crate::prefetch::fetchers(repo.store().is_local());
        Self {
            steps: plan(index, chunks).into_iter(),
            repo,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            failed: None,
            workers: None,
            depth,
        }
    }

    /// Sends reads to the workers until `depth` are in flight; a chunk the index lacks is
    /// reported in its place, once the reads before it were handed out.
    fn fill(&mut self) -> Result<()> {
        while self.in_flight.len() < self.depth {
            let unknown_next = matches!(self.steps.as_slice().first(), Some(Step::Unknown(_)));
            if unknown_next && !self.in_flight.is_empty() {
                break;
            }
            let read = match self.steps.next() {
                None => break,
                Some(Step::Unknown(id)) => {
                    return Err(Error::corrupt(format!("chunk {id} is not in the index")))
                }
                Some(Step::Read(read)) => read,
            };
            let (tx, rx) = bounded(1);
            let (repo, depth) = (&self.repo, self.depth);
            let workers = self
                .workers
                .get_or_insert_with(|| start(repo.clone(), depth));
            if workers.send((read, tx)).is_err() {
                return Err(Error::corrupt("the blob readers stopped"));
            }
            self.in_flight.push_back(rx);
        }
        Ok(())
    }
}

impl Iterator for BlobStream {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        loop {
            if let Some(blob) = self.ready.pop_front() {
                return Some(Ok(blob));
            }
            if let Some(e) = self.failed.take() {
                return Some(Err(e));
            }
            if let Err(e) = self.fill() {
                return Some(Err(e));
            }
            let rx = self.in_flight.pop_front()?;
            let (blobs, failed) = rx
                .recv()
                .unwrap_or_else(|_| (Vec::new(), Some(Error::corrupt("a blob reader stopped"))));
            self.ready = blobs.into();
            self.failed = failed;
        }
    }
}

/// Groups `chunks` into reads: consecutive blobs that follow each other in one pack, up to
/// [`READ_RAW_BYTES`] of plaintext per read.
fn plan(index: &Index, chunks: &[ChunkId]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut raw = 0u64;
    for id in chunks {
        let Some(loc) = index.get(id) else {
            steps.push(Step::Unknown(*id));
            continue;
        };
        let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
        match steps.last_mut() {
            Some(Step::Read(r))
                if r.pack == loc.pack
                    && r.end == start
                    && raw + loc.raw_length as u64 <= READ_RAW_BYTES =>
            {
                r.blobs
                    .push((*id, start - r.start, end - r.start, loc.raw_length));
                r.end = end;
                raw += loc.raw_length as u64;
            }
            _ => {
                steps.push(Step::Read(Read {
                    pack: loc.pack,
                    start,
                    end,
                    blobs: vec![(*id, 0, end - start, loc.raw_length)],
                }));
                raw = loc.raw_length as u64;
            }
        }
    }
    steps
}

/// `count` threads that read and decode what they are sent, until the sender is dropped.
fn start(repo: Repository, count: usize) -> Sender<(Read, Sender<Done>)> {
    let (tx, rx) = unbounded::<(Read, Sender<Done>)>();
    for _ in 0..count {
        let (rx, repo) = (rx.clone(), repo.clone());
        std::thread::spawn(move || {
            let mut decoder = None;
            for (read, done) in rx {
                let _ = done.send(fetch(&repo, &mut decoder, read));
            }
        });
    }
    tx
}

fn fetch(repo: &Repository, decoder: &mut Option<Decoder>, read: Read) -> Done {
    let mut plain = Vec::new();
    let failed = read_into(repo, decoder, &read, &mut plain).err();
    (plain, failed)
}

/// Reads `read`'s span and decodes its blobs into `plain`, up to the first that fails.
fn read_into(
    repo: &Repository,
    decoder: &mut Option<Decoder>,
    read: &Read,
    plain: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let mut span =
        repo.store()
            .read_range(ObjectKind::Pack, &read.pack.to_hex(), read.start..read.end)?;
    let decoder = match decoder {
        Some(d) => d,
        None => decoder.insert(Decoder::new()?),
    };
    for (id, from, to, raw_length) in &read.blobs {
        let mut blob = Vec::new();
        repo.decode_blob_into(
            decoder,
            id,
            &mut span[*from as usize..*to as usize],
            *raw_length,
            &mut blob,
        )
        .with_context(|| format!("pack {}", read.pack))?;
        plain.push(blob);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoder;
    use crate::pack::BlobKind;
    use crate::pack_sink::PackSink;
    use crate::repo::InitOptions;
    use crate::store::{StorageOptions, Store};

    /// A repository holding `count` tree blobs of a few to 40 KiB each, in order in its packs.
    fn repo_with_blobs(
        dir: &std::path::Path,
        count: usize,
    ) -> (Repository, Vec<(ChunkId, Vec<u8>)>) {
        let store =
            Store::create(&dir.display().to_string(), &StorageOptions::default()).expect("store");
        let opts = InitOptions {
            kdf: crate::crypto::KdfParams::with_cost(256, 1),
            ..Default::default()
        };
        let repo = Repository::init(store, "pw", opts).expect("init");
        let mut encoder = Encoder::new(repo.codec()).expect("encoder");
        let mut sink = PackSink::new(&repo);
        let blobs: Vec<(ChunkId, Vec<u8>)> = (0..count)
            .map(|i| {
                let plain: Vec<u8> = format!("item {i}\n")
                    .repeat(1 + (i * 7919) % 5000)
                    .into_bytes();
                let id = repo.key().chunk_id(&plain);
                let sealed = encoder.encode(repo.key(), &plain);
                sink.add(BlobKind::Tree, id, &sealed, plain.len() as u32)
                    .expect("add");
                (id, plain)
            })
            .collect();
        let packs = sink.finish().expect("finish");
        repo.save_index(&packs).expect("index");
        (repo, blobs)
    }

    #[test]
    fn blobs_come_in_order_with_neighbours_read_together() {
        let dir = tempfile::tempdir().expect("tmp");
        let (repo, blobs) = repo_with_blobs(dir.path(), 400);
        let index = repo.load_index().expect("index");
        // In pack order, then backwards (no neighbours), then with repeats.
        let mut order: Vec<usize> = (0..blobs.len()).collect();
        order.extend((0..blobs.len()).rev());
        order.extend([5, 5, 6, 0, 399, 398]);
        let ids: Vec<ChunkId> = order.iter().map(|&i| blobs[i].0).collect();
        let got: Vec<Vec<u8>> = BlobStream::new(repo.clone(), &index, &ids)
            .collect::<Result<_>>()
            .expect("every blob");
        assert_eq!(got.len(), order.len());
        for (n, &i) in order.iter().enumerate() {
            assert!(got[n] == blobs[i].1, "position {n}: blob {i}");
        }
        let steps = plan(&index, &ids[..blobs.len()]);
        assert!(
            steps.len() * 4 < blobs.len(),
            "{} reads for {} blobs",
            steps.len(),
            blobs.len()
        );
        for step in &steps {
            let Step::Read(r) = step else {
                panic!("every chunk is known")
            };
            let raw: u64 = r.blobs.iter().map(|b| b.3 as u64).sum();
            assert!(raw <= READ_RAW_BYTES || r.blobs.len() == 1, "{raw}");
        }
        let backwards = plan(&index, &ids[blobs.len()..2 * blobs.len()]);
        assert_eq!(backwards.len(), blobs.len(), "no neighbours backwards");
    }

    #[test]
    fn a_chunk_the_index_lacks_fails_after_the_blobs_before_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let (repo, blobs) = repo_with_blobs(dir.path(), 50);
        let index = repo.load_index().expect("index");
        let mut ids: Vec<ChunkId> = blobs.iter().map(|b| b.0).collect();
        ids.insert(30, repo.key().chunk_id(b"not stored"));
        let mut stream = BlobStream::new(repo.clone(), &index, &ids);
        for (i, (_, plain)) in blobs.iter().enumerate().take(30) {
            assert!(
                &stream.next().expect("a blob").expect("readable") == plain,
                "{i}"
            );
        }
        let err = stream.next().expect("an error").expect_err("unknown chunk");
        assert!(err.to_string().contains("not in the index"), "{err}");
    }

    #[test]
    fn a_damaged_blob_fails_in_its_place() {
        let dir = tempfile::tempdir().expect("tmp");
        let (repo, blobs) = repo_with_blobs(dir.path(), 50);
        let index = repo.load_index().expect("index");
        let loc = index.get(&blobs[20].0).expect("located");
        let path = dir
            .path()
            .join("data")
            .join(&loc.pack.to_hex()[..2])
            .join(loc.pack.to_hex());
        let mut bytes = std::fs::read(&path).expect("pack");
        bytes[loc.offset as usize + 3] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let ids: Vec<ChunkId> = blobs.iter().map(|b| b.0).collect();
        let got: Vec<Result<Vec<u8>>> = BlobStream::new(repo.clone(), &index, &ids)
            .take(21)
            .collect();
        for (i, r) in got.iter().enumerate().take(20) {
            assert!(r.as_ref().is_ok_and(|p| *p == blobs[i].1), "{i}");
        }
        assert!(got[20].is_err(), "the damaged blob is not handed out");
    }
}
