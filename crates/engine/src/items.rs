//! The item stream: a snapshot's paths and metadata, one JSON object per line, in path order.
//!
//! The stream is cut into chunks by the content-defined chunker (small parameters) and stored
//! as `tree` blobs, so an unchanged region of a directory tree costs nothing in the next
//! snapshot. Items are sorted component-wise (`a`, `a/b`, `a.txt`), which is the order of a
//! depth-first walk with sorted directory entries; that lets backup, diff and restore merge two
//! streams without holding either in memory.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::blob_stream::BlobStream;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::index::Index;
use crate::repo::Repository;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Relative path, components joined by '/'.
    pub path: String,
    pub kind: ItemKind,
    #[serde(default)]
    pub mode: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    #[serde(default)]
    pub mtime_ns: i64,
    /// Status change time and inode: only used to decide that a file is unchanged.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ctime_ns: i64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub inode: u64,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkId>,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

impl Item {
    pub fn new(path: impl Into<String>, kind: ItemKind) -> Self {
        Self {
            path: path.into(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            size: 0,
            target: None,
            chunks: Vec::new(),
        }
    }

    /// Whether `self` (a fresh stat) describes the same file content as `prev` (from the parent
    /// snapshot) without reading it.
    pub fn unchanged_since(&self, prev: &Item) -> bool {
        self.kind == ItemKind::File
            && prev.kind == ItemKind::File
            && self.size == prev.size
            && self.mtime_ns == prev.mtime_ns
            && self.ctime_ns == prev.ctime_ns
            && self.inode == prev.inode
            && (self.size == 0 || !prev.chunks.is_empty())
    }
}

/// Component-wise path order: the order items appear in a stream.
pub fn path_cmp(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Serialises items and cuts the stream into tree chunks.
pub struct ItemWriter {
    chunker: Chunker,
    buf: Vec<u8>,
    last_path: Option<String>,
}

impl ItemWriter {
    pub fn new(chunker: Chunker) -> Self {
        Self {
            chunker,
            buf: Vec::new(),
            last_path: None,
        }
    }

    /// Appends an item; calls `emit` for each tree chunk that is complete.
    pub fn push(
        &mut self,
        item: &Item,
        emit: &mut impl FnMut(Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        if let Some(last) = &self.last_path {
            if path_cmp(last, &item.path) != Ordering::Less {
                return Err(Error::invalid(format!(
                    "items out of order: '{}' after '{last}' (a source emitted a path twice or unsorted)",
                    item.path
                )));
            }
        }
        self.last_path = Some(item.path.clone());
        serde_json::to_writer(&mut self.buf, item)
            .map_err(|e| Error::invalid(format!("cannot serialise item {}: {e}", item.path)))?;
        self.buf.push(b'\n');
        let max = self.chunker.params().max_size as usize;
        while self.buf.len() >= 2 * max {
            let cut = self.chunker.cut(&self.buf);
            let rest = self.buf.split_off(cut);
            emit(std::mem::replace(&mut self.buf, rest))?;
        }
        Ok(())
    }

    pub fn finish(mut self, emit: &mut impl FnMut(Vec<u8>) -> Result<()>) -> Result<()> {
        while !self.buf.is_empty() {
            let cut = self.chunker.cut(&self.buf);
            let rest = self.buf.split_off(cut);
            emit(std::mem::replace(&mut self.buf, rest))?;
        }
        Ok(())
    }
}

/// Reads a snapshot's items in order, one tree chunk in memory at a time.
pub struct ItemReader {
    repo: Repository,
    index: Arc<Index>,
    /// The tree chunks still to read, read ahead.
    blobs: BlobStream,
    buf: Vec<u8>,
    pos: usize,
    /// An item already read (by a seek) that comes next.
    pending: Option<Item>,
}

impl ItemReader {
    pub fn new(repo: Repository, index: Arc<Index>, tree: Vec<ChunkId>) -> Self {
        Self {
            blobs: BlobStream::new(repo.clone(), &index, &tree),
            repo,
            index,
            buf: Vec::new(),
            pos: 0,
            pending: None,
        }
    }

    /// A reader whose first item is the first one at or after `target` in path order
    /// (component-wise), found by a binary search over the tree chunks: a few chunks are
    /// read instead of the whole stream. A chunk may start in the middle of an item, so each
    /// probe looks at the first item that starts after a line break.
    pub fn seek(
        repo: Repository,
        index: Arc<Index>,
        tree: Vec<ChunkId>,
        target: &str,
    ) -> Result<Self> {
        let mut reader = Self::new(repo, index, Vec::new());
        // Where the last probed item that sorts before `target` starts: (chunk, offset).
        let mut start = (0, 0);
        let (mut lo, mut hi) = (0, tree.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match reader.first_item_after_break(&tree, mid)? {
                Some((at, path)) if path_cmp(&path, target) == Ordering::Less => {
                    start = at;
                    lo = mid + 1;
                }
                _ => hi = mid,
            }
        }
        if let Some(id) = tree.get(start.0) {
            reader.buf = reader.repo.read_blob(&reader.index, id)?;
            reader.pos = start.1;
            reader.blobs =
                BlobStream::new(reader.repo.clone(), &reader.index, &tree[start.0 + 1..]);
        }
        // From there to the target is at most a chunk or so of items: read past them.
        while let Some(item) = reader.next_item()? {
            if path_cmp(&item.path, target) != Ordering::Less {
                reader.pending = Some(item);
                break;
            }
        }
        Ok(reader)
    }

    /// The first item that starts after a line break at or past the start of chunk `k`:
    /// where it starts and its path; None when the stream has no such item.
    fn first_item_after_break(
        &self,
        tree: &[ChunkId],
        k: usize,
    ) -> Result<Option<((usize, usize), String)>> {
        let mut at = None;
        let mut line = Vec::new();
        for (i, id) in tree.iter().enumerate().skip(k) {
            let data = self.repo.read_blob(&self.index, id)?;
            let mut rest = &data[..];
            if at.is_none() {
                let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                    continue;
                };
                rest = &rest[nl + 1..];
                at = Some(if rest.is_empty() {
                    (i + 1, 0)
                } else {
                    (i, nl + 1)
                });
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    line.extend_from_slice(&rest[..end]);
                    break;
                }
                None => line.extend_from_slice(rest),
            }
        }
        let (Some(at), false) = (at, line.is_empty()) else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        struct PathOnly {
            path: String,
        }
        let item: PathOnly = serde_json::from_slice(&line)
            .map_err(|e| Error::corrupt(format!("item stream does not parse: {e}")))?;
        Ok(Some((at, item.path)))
    }

    fn next_item(&mut self) -> Result<Option<Item>> {
        loop {
            if let Some(nl) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[self.pos..self.pos + nl];
                self.pos += nl + 1;
                let item = serde_json::from_slice(line)
                    .map_err(|e| Error::corrupt(format!("item stream does not parse: {e}")))?;
                return Ok(Some(item));
            }
            match self.blobs.next() {
                Some(data) => {
                    let data = data?;
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                    self.buf.extend_from_slice(&data);
                }
                None if self.pos == self.buf.len() => return Ok(None),
                None => return Err(Error::corrupt("item stream ends in the middle of an item")),
            }
        }
    }
}

impl Iterator for ItemReader {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.pending.take() {
            return Some(Ok(item));
        }
        self.next_item().transpose()
    }
}

/// Follows a sorted item stream forward to answer "what was at this path last time?".
pub struct ParentCursor {
    reader: std::iter::Peekable<ItemReader>,
}

impl ParentCursor {
    pub fn new(reader: ItemReader) -> Self {
        Self {
            reader: reader.peekable(),
        }
    }

    /// The parent's item at `path`, if any. Calls must come in path order.
    pub fn find(&mut self, path: &str) -> Result<Option<Item>> {
        loop {
            let ord = match self.reader.peek() {
                None => return Ok(None),
                Some(Err(_)) => {
                    return match self.reader.next() {
                        Some(Err(e)) => Err(e),
                        _ => Ok(None),
                    }
                }
                Some(Ok(item)) => path_cmp(&item.path, path),
            };
            match ord {
                Ordering::Less => {
                    self.reader.next();
                }
                Ordering::Equal => return self.reader.next().transpose(),
                Ordering::Greater => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_order_matches_depth_first_walk() {
        let mut paths = vec!["a.txt", "a/b", "a", "a/b/c", "b", "a-b"];
        paths.sort_by(|x, y| path_cmp(x, y));
        assert_eq!(paths, vec!["a", "a/b", "a/b/c", "a-b", "a.txt", "b"]);
    }

    #[test]
    fn writer_rejects_unsorted_and_round_trips_lines() {
        let chunker = Chunker::new(
            crate::chunker::ChunkerParams {
                min_size: 64,
                avg_size: 256,
                max_size: 1024,
            },
            &[0; 32],
        );
        let mut w = ItemWriter::new(chunker);
        let mut out = Vec::new();
        let mut emit = |c: Vec<u8>| {
            out.push(c);
            Ok(())
        };
        for i in 0..200 {
            w.push(&Item::new(format!("dir/{i:04}"), ItemKind::File), &mut emit)
                .expect("push");
        }
        assert!(w
            .push(&Item::new("dir/0001", ItemKind::File), &mut emit)
            .is_err());
        w.finish(&mut emit).expect("finish");
        assert!(out.len() > 3, "stream is cut into several chunks");
        let all: Vec<u8> = out.concat();
        let lines: Vec<Item> = all
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("line parses"))
            .collect();
        assert_eq!(lines.len(), 200);
        assert_eq!(lines[7].path, "dir/0007");
    }
}
