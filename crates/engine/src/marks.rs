//! Deletion marks: the first phase of prune's two-phase deletion.
//!
//! A mark lists packs that no snapshot needed when it was written, with their index entries
//! (none for packs no index listed). Marked packs leave the live index at once, so backups that
//! start later do not reuse their chunks; readers still find those chunks through the marks. A
//! later prune deletes a marked pack once the mark is older than the grace period (by the object
//! store's clock) and every lock that was present when the mark became visible is gone: those
//! are the only writers that can have reused its chunks without seeing the mark. If a snapshot
//! has come to use the pack by then, the pack goes back into the live index instead.
//!
//! ```text
//! mark = "BWMK" version:u8 meta_len:u32le meta:JSON index
//! ```
//! with `index` as in an index file; the whole is compressed and sealed, named by its BLAKE3.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::id::PackId;
use crate::index::{self, IndexPacks};
use crate::pack::Reader;
use crate::repo::Repository;
use crate::store::ObjectKind;

const MAGIC: &[u8; 4] = b"BWMK";
const VERSION: u8 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarkMeta {
    /// When it was marked, by the marking host's clock (for people; ages use the store's).
    pub time: jiff::Timestamp,
    pub hostname: String,
    /// The lock files present once this mark was visible: writers that may have read the
    /// index before it. `None` until listed (a prune stopped between the two writes); such a
    /// mark is never due, and the next prune lists them.
    pub locks: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Mark {
    /// The object's name under `marks/`.
    pub name: String,
    pub meta: MarkMeta,
    pub packs: IndexPacks,
}

pub fn encode(meta: &MarkMeta, packs: &IndexPacks) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(meta)
        .map_err(|e| Error::invalid(format!("cannot serialise a mark: {e}")))?;
    let mut out = Vec::with_capacity(9 + json.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&index::encode(packs));
    Ok(out)
}

pub fn decode(data: &[u8]) -> Result<(MarkMeta, IndexPacks)> {
    let mut r = Reader::new(data);
    if &r.array::<4>()? != MAGIC {
        return Err(Error::corrupt("mark magic mismatch"));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(Error::corrupt(format!(
            "mark version {version} is not supported"
        )));
    }
    let len = r.u32()? as usize;
    let json = r.take(len)?;
    let meta = serde_json::from_slice(json)
        .map_err(|e| Error::corrupt(format!("mark metadata does not parse: {e}")))?;
    Ok((meta, index::decode(r.rest())?))
}

/// Writes a mark; returns its name.
pub fn save(repo: &Repository, meta: &MarkMeta, packs: &IndexPacks) -> Result<String> {
    repo.save_sealed(ObjectKind::Mark, &encode(meta, packs)?)
}

pub fn load(repo: &Repository, name: &str) -> Result<Mark> {
    let plain = repo.load_sealed(ObjectKind::Mark, name)?;
    let (meta, packs) = decode(&plain).with_context(|| format!("mark {name}"))?;
    Ok(Mark {
        name: name.to_string(),
        meta,
        packs,
    })
}

/// Every readable mark. One that cannot be read is skipped with a warning: its packs then
/// look unindexed, which makes prune mark them again (never delete them at once).
pub fn load_all(repo: &Repository) -> Result<Vec<Mark>> {
    load_new(repo, &HashSet::new())
}

/// Like `load_all`, but only the marks not named in `known` (already read).
pub fn load_new(repo: &Repository, known: &HashSet<String>) -> Result<Vec<Mark>> {
    let mut out = Vec::new();
    for listed in repo.store().list(ObjectKind::Mark)? {
        if known.contains(&listed.name) {
            continue;
        }
        match load(repo, &listed.name) {
            Ok(mark) => out.push(mark),
            // Resolved by a prune between listing and reading.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => log::warn!("{e}; ignoring it"),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The packs any of `marks` lists.
pub fn packs(marks: &[Mark]) -> HashSet<PackId> {
    marks
        .iter()
        .flat_map(|m| m.packs.iter().map(|(p, _)| *p))
        .collect()
}

/// The marked packs that were indexed when marked (prune took them out of the index). A
/// marked pack without entries was unindexed; if an index file lists it now, its writer wrote
/// that file before prune could see it, and prune will keep it.
pub fn indexed_packs(marks: &[Mark]) -> HashSet<PackId> {
    marks
        .iter()
        .flat_map(|m| {
            m.packs
                .iter()
                .filter(|(_, e)| !e.is_empty())
                .map(|(p, _)| *p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;
    use crate::pack::{BlobKind, PackEntry};

    #[test]
    fn round_trip_and_rejects_damage() {
        let meta = MarkMeta {
            time: jiff::Timestamp::UNIX_EPOCH,
            hostname: "db1".into(),
            locks: Some(vec!["ab".into()]),
        };
        let packs = vec![
            (
                PackId([1; 32]),
                vec![PackEntry {
                    kind: BlobKind::Data,
                    id: ChunkId([7; 32]),
                    offset: 0,
                    length: 10,
                    raw_length: 20,
                }],
            ),
            (PackId([2; 32]), Vec::new()),
        ];
        let bytes = encode(&meta, &packs).expect("encodes");
        let (back, back_packs) = decode(&bytes).expect("decodes");
        assert_eq!(back.locks, meta.locks);
        assert_eq!(back.hostname, "db1");
        assert_eq!(back_packs, packs);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut other = bytes.clone();
        other[0] = b'X';
        assert!(decode(&other).is_err());
    }
}
