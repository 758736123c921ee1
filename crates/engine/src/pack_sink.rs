//! Writing packs of already-sealed blobs (prune's repacking, copy, repair): the repository-level
//! side of packs, kept out of `pack` so that the pack format depends on nothing above it.

use crate::error::Result;
use crate::id::{ChunkId, PackId};
use crate::pack::{BlobKind, PackBuilder, PackEntry};
use crate::repo::Repository;
use crate::store::ObjectKind;

/// Packs already-sealed blobs and uploads them one after another, then writes one index file
/// for them. Used by prune (repacking) and copy; the backup pipeline has its own parallel
/// packer and uploaders.
pub struct PackSink<'a> {
    repo: &'a Repository,
    data: PackBuilder,
    tree: PackBuilder,
    written: Vec<(PackId, Vec<PackEntry>)>,
    pub bytes_written: u64,
}

impl<'a> PackSink<'a> {
    pub fn new(repo: &'a Repository) -> Self {
        Self {
            repo,
            data: PackBuilder::default(),
            tree: PackBuilder::default(),
            written: Vec::new(),
            bytes_written: 0,
        }
    }

    pub fn add(
        &mut self,
        kind: BlobKind,
        id: ChunkId,
        sealed: &[u8],
        raw_length: u32,
    ) -> Result<()> {
        let builder = if kind == BlobKind::Data {
            &mut self.data
        } else {
            &mut self.tree
        };
        builder.add(kind, id, sealed, raw_length);
        if builder.len() >= self.repo.config().pack_size as usize {
            let full = std::mem::take(builder);
            self.upload(full)?;
        }
        Ok(())
    }

    fn upload(&mut self, builder: PackBuilder) -> Result<()> {
        let pack = builder.finish(self.repo.key());
        self.bytes_written += pack.bytes.len() as u64;
        self.repo
            .store()
            .write(ObjectKind::Pack, &pack.id.to_hex(), &pack.bytes)?;
        self.written.push((pack.id, pack.entries));
        Ok(())
    }

    /// Uploads what is left and returns the packs written (not yet indexed).
    pub fn finish(mut self) -> Result<Vec<(PackId, Vec<PackEntry>)>> {
        for b in [
            std::mem::take(&mut self.data),
            std::mem::take(&mut self.tree),
        ] {
            if !b.is_empty() {
                self.upload(b)?;
            }
        }
        Ok(self.written)
    }
}
