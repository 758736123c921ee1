//! Comparing item streams: `diff` between two snapshots and `history` of one path over many.
//! Both merge sorted streams, so memory does not grow with the size of the tree.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;
use crate::id::SnapshotId;
use crate::index::Index;
use crate::items::{path_cmp, Item, ItemReader, ParentCursor};
use crate::repo::Repository;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    /// Content changed.
    Modified,
    /// Only metadata (mode, owner, mtime) changed.
    Metadata,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
}

pub fn diff(
    repo: &Repository,
    index: &Arc<Index>,
    a: &Snapshot,
    b: &Snapshot,
    mut emit: impl FnMut(Change),
) -> Result<()> {
    let mut old = ItemReader::new(repo.clone(), index.clone(), a.tree.clone()).peekable();
    let mut new = ItemReader::new(repo.clone(), index.clone(), b.tree.clone()).peekable();
    loop {
        let ord = match (old.peek(), new.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Err(_)), _) | (_, Some(Err(_))) => Ordering::Equal,
            (Some(Ok(x)), Some(Ok(y))) => path_cmp(&x.path, &y.path),
        };
        match ord {
            Ordering::Less => {
                let x = next(&mut old)?;
                emit(Change {
                    kind: ChangeKind::Removed,
                    path: x.path,
                    old_size: Some(x.size),
                    new_size: None,
                });
            }
            Ordering::Greater => {
                let y = next(&mut new)?;
                emit(Change {
                    kind: ChangeKind::Added,
                    path: y.path,
                    old_size: None,
                    new_size: Some(y.size),
                });
            }
            Ordering::Equal => {
                let (x, y) = (next(&mut old)?, next(&mut new)?);
                let kind = if x.kind != y.kind || x.chunks != y.chunks || x.target != y.target {
                    Some(ChangeKind::Modified)
                } else if (x.mode, x.uid, x.gid, x.mtime_ns) != (y.mode, y.uid, y.gid, y.mtime_ns) {
                    Some(ChangeKind::Metadata)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    emit(Change {
                        kind,
                        path: y.path,
                        old_size: Some(x.size),
                        new_size: Some(y.size),
                    });
                }
            }
        }
    }
}

fn next(it: &mut std::iter::Peekable<ItemReader>) -> Result<Item> {
    match it.next() {
        Some(r) => r,
        None => Err(crate::error::Error::corrupt(
            "item stream ended unexpectedly",
        )),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// Snapshots holding this exact content, oldest first.
    pub snapshots: Vec<SnapshotId>,
    pub first_seen: jiff::Timestamp,
    pub last_seen: jiff::Timestamp,
    pub size: u64,
    pub mtime_ns: i64,
}

/// The distinct contents a path had across the given snapshots (oldest first).
pub fn history(
    repo: &Repository,
    index: &Arc<Index>,
    snapshots: &[(SnapshotId, Snapshot)],
    path: &str,
) -> Result<Vec<Version>> {
    let mut versions: Vec<(Vec<crate::id::ChunkId>, Version)> = Vec::new();
    let mut sorted: Vec<&(SnapshotId, Snapshot)> = snapshots.iter().collect();
    sorted.sort_by_key(|(_, s)| s.time);
    for (id, snap) in sorted {
        let mut cursor = ParentCursor::new(ItemReader::new(
            repo.clone(),
            index.clone(),
            snap.tree.clone(),
        ));
        let Some(item) = cursor.find(path)? else {
            continue;
        };
        match versions.iter_mut().find(|(c, _)| *c == item.chunks) {
            Some((_, v)) => {
                v.snapshots.push(*id);
                v.last_seen = snap.time;
            }
            None => versions.push((
                item.chunks.clone(),
                Version {
                    snapshots: vec![*id],
                    first_seen: snap.time,
                    last_seen: snap.time,
                    size: item.size,
                    mtime_ns: item.mtime_ns,
                },
            )),
        }
    }
    Ok(versions.into_iter().map(|(_, v)| v).collect())
}
