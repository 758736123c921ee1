//! Resuming an interrupted backup. A backup killed or cut off mid-way leaves packs it uploaded
//! but never indexed (the index is written after the packs). The next backup adopts them:
//! each one's content must hash to its name and its sealed header must open, and then its
//! blobs count as stored, so that data is not uploaded again. Adopted packs are indexed at
//! once; anything that fails verification is left for `prune`. Only a writer alone in the
//! repository adopts: beside other writers, an unindexed pack is most likely one of theirs,
//! still being written; and packs prune has marked are never adopted (prune may be about to
//! delete them).

use serde::Serialize;

use crate::error::Result;
use crate::id::PackId;
use crate::index::Index;
use crate::lock::LockKind;
use crate::pack;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::store::ObjectKind;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Adopted {
    pub packs: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Unindexed packs that failed verification (damaged or partial): left for prune.
    pub rejected: usize,
}

/// Adopts the packs no index lists into `index` (and into a new index file).
pub fn adopt_unindexed_packs(
    repo: &Repository,
    index: &mut Index,
    progress: &Reporter,
) -> Result<Adopted> {
    let mut out = Adopted::default();
    let writers = crate::lock::list(repo)?
        .iter()
        .filter(|l| {
            !l.is_stale()
                && l.info
                    .as_ref()
                    .is_some_and(|i| i.kind() == LockKind::Shared)
        })
        .count();
    if writers > 1 {
        return Ok(out);
    }
    let orphans: Vec<(PackId, u64)> = repo
        .pack_sizes()?
        .into_iter()
        .filter(|(p, _)| !index.has_pack(p) && !index.marked.contains(p))
        .collect();
    if orphans.is_empty() {
        return Ok(out);
    }
    progress.send(Progress::Phase(format!(
        "verifying {} pack(s) left by an interrupted backup",
        orphans.len()
    )));
    let mut adopted = Vec::new();
    let mut bytes = Vec::new();
    for (pack, size) in orphans {
        let verified = repo
            .store()
            .read_into(ObjectKind::Pack, &pack.to_hex(), &mut bytes)
            .and_then(|()| match PackId::of_content(&bytes) == pack {
                true => pack::read_header(repo.key(), &bytes),
                false => Err(crate::error::Error::corrupt(
                    "content does not match its name",
                )),
            });
        match verified {
            Ok(entries) => {
                out.packs += 1;
                out.blobs += entries.len();
                out.bytes += size;
                index.add_pack(pack, &entries);
                adopted.push((pack, entries));
            }
            // Not adopting is always safe: its data is stored again if this backup needs it.
            Err(e) => {
                log::warn!("pack {pack} is not indexed and was not reused ({e}); prune removes it");
                out.rejected += 1;
            }
        }
    }
    if !adopted.is_empty() {
        repo.save_index(&adopted)?;
    }
    Ok(out)
}
