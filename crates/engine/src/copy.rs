//! Copy snapshots into another repository (local to S3, primary to offsite). Only chunks the
//! destination lacks are transferred; each is authenticated with the source key and sealed
//! again with the destination key. Both repositories must share the chunk-id key
//! (`bulwark init --copy-params-from`), so item streams carry over unchanged. A PostgreSQL base
//! backup is useless without its WAL, so the archived WAL it needs is copied with it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::codec;
use crate::connectors::interface::{log_archives, LogCopy};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::items::ItemReader;
use crate::lock::{LockGuard, LockKind};
use crate::pack::BlobKind;
use crate::pack_sink::PackSink;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot::{self, Snapshot};

#[derive(Debug, Serialize)]
pub struct CopyReport {
    pub snapshots: Vec<Copied>,
    /// Per log archive (`wal`): what recovering the copied snapshots reads that the
    /// destination lacked.
    #[serde(flatten)]
    pub logs: BTreeMap<&'static str, LogCopy>,
    /// Drill records the destination lacked.
    pub drills_copied: usize,
}

#[derive(Debug, Serialize)]
pub struct Copied {
    pub source_snapshot: SnapshotId,
    /// None when the destination already had it.
    pub copied_as: Option<SnapshotId>,
    pub chunks_copied: usize,
    pub bytes_copied: u64,
}

pub fn copy(
    src: &Repository,
    dst: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    lock_wait: std::time::Duration,
    progress: &Reporter,
) -> Result<CopyReport> {
    if src.config().id_key_fingerprint != dst.config().id_key_fingerprint {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "the destination uses a different chunk-id key; create it with `bulwark init --copy-params-from <source repository>`",
        ));
    }
    let _lock = LockGuard::acquire(dst, LockKind::Shared, "copy", lock_wait)?;
    let src_index = Arc::new(src.load_index()?);
    let dst_index = dst.load_index_for_writing()?;
    let already: HashSet<SnapshotId> = snapshot::list(dst)?
        .into_iter()
        .filter_map(|(_, s)| s.original)
        .collect();
    let mut out = Vec::new();
    let mut sent: HashSet<ChunkId> = HashSet::new();
    let mut encoder = codec::Encoder::new(dst.codec())?;
    for (id, snap) in snapshots {
        if already.contains(id) || snap.original.is_some_and(|o| already.contains(&o)) {
            out.push(Copied {
                source_snapshot: *id,
                copied_as: None,
                chunks_copied: 0,
                bytes_copied: 0,
            });
            continue;
        }
        progress.send(Progress::Phase(format!("copying {}", id.short())));
        let mut sink = PackSink::new(dst);
        let (mut chunks, mut bytes) = (0usize, 0u64);
        let mut transfer = |c: &ChunkId, kind: BlobKind, sink: &mut PackSink| -> Result<()> {
            if dst_index.contains(c) || !sent.insert(*c) {
                return Ok(());
            }
            let plain = src.read_blob(&src_index, c)?;
            sink.add(
                kind,
                *c,
                &encoder.encode(dst.key(), &plain),
                plain.len() as u32,
            )?;
            progress.send(Progress::Bytes(plain.len() as u64));
            chunks += 1;
            bytes += plain.len() as u64;
            Ok(())
        };
        for c in &snap.tree {
            transfer(c, BlobKind::Tree, &mut sink)?;
        }
        for item in ItemReader::new(src.clone(), src_index.clone(), snap.tree.clone()) {
            for c in &item?.chunks {
                transfer(c, BlobKind::Data, &mut sink)?;
            }
        }
        let written = sink.finish()?;
        if !written.is_empty() {
            dst.save_index(&written)?;
        }
        let mut copy = snap.clone();
        copy.original = Some(snap.original.unwrap_or(*id));
        let new_id = snapshot::save(dst, &copy)?;
        out.push(Copied {
            source_snapshot: *id,
            copied_as: Some(new_id),
            chunks_copied: chunks,
            bytes_copied: bytes,
        });
    }
    // Also for snapshots copied before: a copy interrupted during a log completes now.
    let mut logs = BTreeMap::new();
    for archive in log_archives() {
        progress.send(Progress::Phase(format!("copying {}", archive.name())));
        logs.insert(archive.name(), archive.copy(src, dst, snapshots)?);
    }
    Ok(CopyReport {
        snapshots: out,
        logs,
        drills_copied: crate::recovery::drill::copy_records(src, dst)?,
    })
}
