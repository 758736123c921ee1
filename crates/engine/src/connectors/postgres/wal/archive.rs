//! The archive of one source: each WAL file one sealed object, with a header naming the file
//! and carrying its length and BLAKE3 hash, so a renamed or swapped object is caught on fetch.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{check_namespace, object_name, segment_size, wal_kind, WalKind};
use crate::codec::{self, Encoder};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::repo::Repository;
use crate::store::ObjectKind;

const MAGIC: &[u8; 8] = b"BWWAL1\0\0";

/// The archive of one source in one repository.
pub struct WalArchive<'a> {
    repo: &'a Repository,
    source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pushed {
    Stored,
    /// Already archived with identical content (PostgreSQL retried).
    AlreadyArchived,
}

impl<'a> WalArchive<'a> {
    pub fn new(repo: &'a Repository, source: &str) -> Result<Self> {
        check_namespace(source)?;
        Ok(Self {
            repo,
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn seal(&self, name: &str, content: &[u8]) -> Result<Vec<u8>> {
        let mut plain = Vec::with_capacity(content.len() + 96);
        plain.extend_from_slice(MAGIC);
        plain.extend_from_slice(&(name.len() as u16).to_le_bytes());
        plain.extend_from_slice(name.as_bytes());
        plain.extend_from_slice(&(content.len() as u64).to_le_bytes());
        plain.extend_from_slice(blake3::hash(content).as_bytes());
        plain.extend_from_slice(content);
        Ok(Encoder::new(self.repo.codec())?.encode(self.repo.key(), &plain))
    }

    /// Decodes an archived object and checks that it is the file `name`, whole.
    fn unseal(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let plain = codec::decode(self.repo.key(), sealed, None)?;
        let bad = |why: &str| Error::corrupt(format!("archived WAL file {name}: {why}"));
        let rest = plain
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("bad header"))?;
        let name_len = u16::from_le_bytes(
            rest.get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("truncated"))?,
        ) as usize;
        let stored_name = rest.get(2..2 + name_len).ok_or_else(|| bad("truncated"))?;
        if stored_name != name.as_bytes() {
            return Err(bad(&format!(
                "the object holds {}",
                String::from_utf8_lossy(stored_name)
            )));
        }
        let rest = &rest[2 + name_len..];
        let len = u64::from_le_bytes(
            rest.get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("truncated"))?,
        ) as usize;
        let hash = rest.get(8..40).ok_or_else(|| bad("truncated"))?;
        let content = &rest[40..];
        if content.len() != len || blake3::hash(content).as_bytes() != hash {
            return Err(bad("content does not match its recorded hash"));
        }
        Ok(content.to_vec())
    }

    /// Archives one WAL file. Safe to repeat: identical content already archived is success,
    /// different content under the same name is an error (two clusters sharing a source name,
    /// or a damaged file), and nothing is overwritten.
    pub fn push_file(&self, name: &str, content: &[u8]) -> Result<Pushed> {
        let object = object_name(&self.source, name)?;
        match self.repo.store().read(ObjectKind::Log, &object) {
            Ok(sealed) => {
                let archived = self.unseal(name, &sealed)?;
                if archived == content {
                    return Ok(Pushed::AlreadyArchived);
                }
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "WAL file {name} is already archived for source '{}' with different content; is another cluster archiving under the same source name?",
                        self.source
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let sealed = self.seal(name, content)?;
        self.repo.store().write(ObjectKind::Log, &object, &sealed)?;
        Ok(Pushed::Stored)
    }

    /// The content of an archived WAL file, or None if the archive does not have it.
    pub fn fetch_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let object = object_name(&self.source, name)?;
        match self.repo.store().read(ObjectKind::Log, &object) {
            Ok(sealed) => self
                .unseal(name, &sealed)
                .map(Some)
                .with_context(|| format!("WAL file {name} of '{}'", self.source)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every archived file name with its stored size, in name order.
    pub fn list(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .repo
            .store()
            .list_under(ObjectKind::Log, &format!("{}/", self.source))?
            .into_iter()
            .filter(|l| wal_kind(&l.name).is_some())
            .map(|l| (l.name, l.size))
            .collect())
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        self.repo
            .store()
            .delete(ObjectKind::Log, &object_name(&self.source, name)?)
    }

    pub fn modified(&self, name: &str) -> Result<Option<jiff::Timestamp>> {
        self.repo
            .store()
            .modified(ObjectKind::Log, &object_name(&self.source, name)?)
    }

    /// The segment size, from the header of the first of `names` (segments, in order) that
    /// reads back; a damaged first segment must not hide the rest of the archive.
    pub fn segment_size<'n>(
        &self,
        names: impl IntoIterator<Item = &'n String>,
    ) -> Result<Option<u64>> {
        let mut first_error = None;
        for name in names
            .into_iter()
            .filter(|n| wal_kind(n) == Some(WalKind::Segment))
            .take(3)
        {
            match self.fetch_file(name) {
                Ok(Some(content)) => {
                    if let Some(size) = segment_size(&content) {
                        return Ok(Some(size));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(None), Err)
    }
}
