//! Sizes: what the snapshots hold (logical), what that is after dedup (unique), and what it
//! costs on storage (stored, after compression and encryption).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;
use crate::id::{ChunkId, SnapshotId};
use crate::index::Index;
use crate::items::ItemReader;
use crate::repo::Repository;
use crate::snapshot::Snapshot;

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub snapshots: usize,
    pub files: u64,
    /// Sum of file sizes over the snapshots counted.
    pub logical_bytes: u64,
    pub unique_chunks: usize,
    /// Plaintext bytes of the distinct chunks those snapshots use.
    pub unique_bytes: u64,
    /// Sealed (compressed, encrypted) bytes of those chunks.
    pub stored_bytes: u64,
    /// All packs in the repository, used or not.
    pub repository_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / stored.
    pub compression_ratio: f64,
}

pub fn stats(
    repo: &Repository,
    index: &Arc<Index>,
    snapshots: &[(SnapshotId, Snapshot)],
) -> Result<Stats> {
    let mut st = Stats {
        snapshots: snapshots.len(),
        ..Default::default()
    };
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut count = |id: &ChunkId, st: &mut Stats| {
        if seen.insert(*id) {
            if let Some(loc) = index.get(id) {
                st.unique_bytes += loc.raw_length as u64;
                st.stored_bytes += loc.length as u64;
            }
        }
    };
    for (_, snap) in snapshots {
        for c in &snap.tree {
            count(c, &mut st);
        }
        for item in ItemReader::new(repo.clone(), index.clone(), snap.tree.clone()) {
            let item = item?;
            if item.kind == crate::items::ItemKind::File {
                st.files += 1;
                st.logical_bytes += item.size;
            }
            for c in &item.chunks {
                count(c, &mut st);
            }
        }
    }
    st.unique_chunks = seen.len();
    st.repository_bytes = repo.pack_sizes()?.values().sum();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    st.dedup_ratio = ratio(st.logical_bytes, st.unique_bytes);
    st.compression_ratio = ratio(st.unique_bytes, st.stored_bytes);
    Ok(st)
}

/// Bytes for people: `512 B`, `1.50 KiB`, `3.20 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod human_tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.50 KiB");
        assert_eq!(super::human_bytes(5 << 30), "5.00 GiB");
    }
}
