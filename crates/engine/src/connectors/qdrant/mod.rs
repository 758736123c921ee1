//! Qdrant: each collection captured through the REST API, as a server snapshot (the exact
//! files, streamed from Qdrant's snapshot download), logically (every point with all its
//! vectors and payload, in a binary form that deduplicates day to day), or both. Restored under
//! a new name by default, then checked against a fingerprint taken at backup time.
//!
//! A snapshot of a qdrant source holds, per collection:
//! ```text
//! qdrant/<collection>/definition.json    configuration, payload indexes, shard keys, aliases
//! qdrant/<collection>/fingerprint.json   count, sampled points, exact searches (verify.rs)
//! qdrant/<collection>/points.bin         logical mode (points.rs)
//! qdrant/<collection>/collection.snapshot  snapshot mode: the file Qdrant produced
//! ```
//! and a `qdrant` fact listing the collections with their counts and modes.

pub mod api;
pub mod collection;
pub mod connector;
pub mod points;
pub mod restore;
pub mod verify;

use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;

use crate::backup::{SnapshotWriter, Source};
use crate::connectors::stream::stream_item;
use crate::connectors::ChannelReader;
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::{Snapshot, SourceInfo};
use api::{seg, Client};
use collection::Definition;
use points::{Point, PointId};
use verify::Probe;

/// Points asked for per scroll page.
const PAGE: usize = 256;
/// Scroll pages fetched ahead of the chunker.
const PAGES_AHEAD: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every point through the API, stored so unchanged points deduplicate.
    Logical,
    /// Qdrant's own collection snapshot file.
    Snapshot,
}

#[derive(Debug, Clone)]
pub struct QdrantSettings {
    pub url: String,
    pub api_key: Option<String>,
    /// Collections to back up (empty: all).
    pub collections: Vec<String>,
    pub modes: Vec<Mode>,
    /// Points sampled and searches recorded for verification.
    pub samples: usize,
    pub queries: usize,
}

/// What a qdrant snapshot records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QdrantFacts {
    pub server_version: String,
    pub url: String,
    pub collections: Vec<CollectionFacts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionFacts {
    pub name: String,
    pub modes: Vec<Mode>,
    /// Points written to points.bin (logical mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
    /// Exact counts just before and after the capture.
    pub count_before: u64,
    pub count_after: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotFile>,
    pub vectors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// The name Qdrant gave it.
    pub name: String,
    pub bytes: u64,
    /// SHA-256, as Qdrant computed it and as the download was checked against.
    pub sha256: String,
}

impl CollectionFacts {
    /// How many points a restore in `mode` must produce, as a range (a server snapshot is
    /// taken between the two counts).
    pub fn expected_points(&self, mode: Mode) -> (u64, u64) {
        match (mode, self.points) {
            (Mode::Logical, Some(n)) => (n, n),
            _ => (
                self.count_before.min(self.count_after),
                self.count_before.max(self.count_after),
            ),
        }
    }
}

impl QdrantFacts {
    pub const KEY: &'static str = "qdrant";

    pub fn of(snap: &Snapshot) -> Result<Self> {
        let v = snap.facts.get(Self::KEY).ok_or_else(|| {
            Error::invalid(format!(
                "snapshot of '{}' ({}) is not a Qdrant backup",
                snap.source.name, snap.source.kind
            ))
        })?;
        serde_json::from_value(v.clone())
            .map_err(|e| Error::corrupt(format!("snapshot's qdrant facts are unreadable: {e}")))
    }
}

/// Item paths of one collection's parts.
pub fn item_path(collection: &str, part: &str) -> String {
    format!("qdrant/{collection}/{part}")
}
pub const DEFINITION: &str = "definition.json";
pub const FINGERPRINT: &str = "fingerprint.json";
pub const POINTS: &str = "points.bin";
pub const SNAPSHOT_FILE: &str = "collection.snapshot";

pub struct QdrantSource {
    name: String,
    settings: QdrantSettings,
}

impl QdrantSource {
    pub fn new(name: &str, settings: QdrantSettings) -> Self {
        Self {
            name: name.to_string(),
            settings,
        }
    }
}

impl Source for QdrantSource {
    fn info(&self) -> SourceInfo {
        SourceInfo::new(&self.name, crate::connectors::Kind::Qdrant)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.settings.url.clone()]
    }

    fn run(&mut self, w: &mut SnapshotWriter) -> Result<()> {
        let s = &self.settings;
        let client = Client::new(&s.url, s.api_key.clone())?;
        let server_version = client.version()?;
        let present = collection::list(&client)?;
        let names = if s.collections.is_empty() {
            present
        } else {
            if let Some(missing) = s.collections.iter().find(|c| !present.contains(c)) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "collection '{missing}' does not exist on {} (it has: {})",
                        client.describe(),
                        present.join(", ")
                    ),
                ));
            }
            s.collections.clone()
        };
        if s.modes.contains(&Mode::Snapshot) {
            warn_if_cluster(&client, w)?;
        }
        let mut facts = QdrantFacts {
            server_version,
            url: client.describe().to_string(),
            collections: Vec::new(),
        };
        for name in names {
            if name.contains('/') || name == "." || name == ".." {
                return Err(Error::invalid(format!(
                    "collection name '{name}' cannot be stored as a path"
                )));
            }
            let f = backup_collection(&client, &name, s, w)
                .map_err(|e| e.context(format!("collection '{name}'")))?;
            facts.collections.push(f);
        }
        w.fact(
            QdrantFacts::KEY,
            serde_json::to_value(&facts).map_err(|e| Error::invalid(e.to_string()))?,
        );
        Ok(())
    }
}

/// Snapshots are per node: on a cluster, snapshot mode holds only this node's shards.
fn warn_if_cluster(client: &Client, w: &mut SnapshotWriter) -> Result<()> {
    let cluster = client.get("/cluster")?;
    let peers = cluster["peers"].as_object().map_or(0, |p| p.len());
    if cluster["status"] == "enabled" && peers > 1 {
        w.warn(
            "qdrant",
            format!(
                "{} is one of {peers} cluster peers: snapshot mode captures only the shards on this node; use logical mode for the whole collection",
                client.describe()
            ),
        );
    }
    Ok(())
}

fn backup_collection(
    client: &Client,
    name: &str,
    s: &QdrantSettings,
    w: &mut SnapshotWriter,
) -> Result<CollectionFacts> {
    let def = Definition::read(client, name)?;
    w.phase(format!("sampling '{name}' for verification"));
    let probe = Probe::before(client, &def, s.samples, s.queries)?;
    let mut facts = CollectionFacts {
        name: name.to_string(),
        modes: s.modes.clone(),
        points: None,
        count_before: 0,
        count_after: 0,
        snapshot: None,
        vectors: def.vector_names(),
    };
    for mode in &s.modes {
        match mode {
            Mode::Logical => {
                w.phase(format!("reading the points of '{name}'"));
                facts.points = Some(capture_points(client, name, w)?);
            }
            Mode::Snapshot => {
                w.phase(format!("Qdrant is writing a snapshot of '{name}'"));
                facts.snapshot = Some(capture_snapshot(client, name, w)?);
            }
        }
    }
    let fp = probe.finish(client)?;
    facts.count_before = fp.count_before;
    facts.count_after = fp.count_after;
    for (part, doc) in [(DEFINITION, to_json(&def)?), (FINGERPRINT, to_json(&fp)?)] {
        w.put_deferred(stream_item(&item_path(name, part)), Some(doc.as_slice()))?;
    }
    Ok(facts)
}

fn to_json(v: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::invalid(e.to_string()))
}

/// Scrolls every point into `points.bin`, three stages deep so neither side waits for the
/// other: one thread fetches pages, one parses and encodes them, and the writer chunks.
/// Returns the number of points.
fn capture_points(client: &Client, name: &str, w: &mut SnapshotWriter) -> Result<u64> {
    #[derive(Deserialize)]
    struct Page {
        points: Vec<Point>,
        next_page_offset: Option<PointId>,
    }
    let path = format!("/collections/{}/points/scroll", seg(name));
    let what = format!("POST {path}");
    // (page, the next offset as the fetcher read it)
    type Fetched = (bytes::Bytes, Option<PointId>);
    let (raw_tx, raw_rx) = crossbeam_channel::bounded::<Fetched>(PAGES_AHEAD);
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(PAGES_AHEAD);
    let (path, what) = (&path, &what);
    std::thread::scope(|scope| {
        let fetcher = scope.spawn(move || -> Result<()> {
            let mut offset: Option<PointId> = None;
            loop {
                let mut body = json!({ "limit": PAGE, "with_payload": true, "with_vector": true });
                if let Some(o) = &offset {
                    body["offset"] = json!(o);
                }
                let raw = client.call_bytes(reqwest::Method::POST, path, &body)?;
                offset = next_offset(&raw).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Source,
                        format!("{what}: the answer has no next_page_offset"),
                    )
                })?;
                // A closed channel: the parser stopped, and its error is the one to report.
                if raw_tx.send((raw, offset.clone())).is_err() || offset.is_none() {
                    return Ok(());
                }
            }
        });
        let parser = scope.spawn(move || -> Result<u64> {
            let mut count = 0u64;
            let mut buf = points::MAGIC.to_vec();
            for (raw, next) in raw_rx {
                let page: Page = client.parse(what, &raw)?;
                if page.next_page_offset != next {
                    return Err(Error::new(
                        ErrorKind::Source,
                        format!("{what}: the page's next offset was misread; nothing is recorded"),
                    ));
                }
                for p in &page.points {
                    points::encode(p, &mut buf)?;
                }
                count += page.points.len() as u64;
                if next.is_none() {
                    points::encode_end(count, &mut buf);
                }
                if tx.send(std::mem::take(&mut buf)).is_err() {
                    break;
                }
            }
            Ok(count)
        });
        let stored = w.put_deferred_records(
            stream_item(&item_path(name, POINTS)),
            ChannelReader::new(rx),
        );
        fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
            h.join()
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Source, "a scroll thread panicked")))
        }
        // A failed scroll ends the stream early: its error wins over whatever was chunked.
        let fetched = joined(fetcher);
        let count = joined(parser)?;
        fetched?;
        stored.map(|_| count)
    })
}

/// The `next_page_offset` of a scroll answer, found from its end without parsing the points
/// before it (they are parsed on another thread, which checks this reading). None if absent.
fn next_offset(raw: &[u8]) -> Option<Option<PointId>> {
    const KEY: &[u8] = b"\"next_page_offset\":";
    let at = raw.windows(KEY.len()).rposition(|w| w == KEY)?;
    serde_json::Deserializer::from_slice(&raw[at + KEY.len()..])
        .into_iter::<Option<PointId>>()
        .next()?
        .ok()
}

/// Asks Qdrant for a collection snapshot, streams it into the repository checking its size
/// and SHA-256, and deletes it from the server whatever happens.
fn capture_snapshot(client: &Client, name: &str, w: &mut SnapshotWriter) -> Result<SnapshotFile> {
    #[derive(Deserialize)]
    struct Created {
        name: String,
        size: u64,
        checksum: Option<String>,
    }
    let created: Created = client.call_unbounded(
        reqwest::Method::POST,
        &format!("/collections/{}/snapshots?wait=true", seg(name)),
    )?;
    let path = format!(
        "/collections/{}/snapshots/{}",
        seg(name),
        seg(&created.name)
    );
    let result = (|| {
        w.phase(format!("downloading the snapshot of '{name}'"));
        let mut reader = Hashing {
            inner: client.download(&path)?,
            hasher: sha2::Sha256::new(),
            bytes: 0,
        };
        w.put_deferred(
            stream_item(&item_path(name, SNAPSHOT_FILE)),
            Some(&mut reader),
        )
        .map_err(|e| {
            e.context(format!(
                "Qdrant at {}: downloading snapshot {}",
                client.describe(),
                created.name
            ))
        })?;
        let sha256 = hex::encode(reader.hasher.finalize());
        let short = reader.bytes != created.size;
        let altered = created.checksum.as_ref().is_some_and(|c| *c != sha256);
        if short || altered {
            return Err(Error::new(
                ErrorKind::Source,
                format!(
                    "the snapshot download does not match what Qdrant announced ({} of {} bytes{}); the backup is discarded",
                    reader.bytes,
                    created.size,
                    if altered { ", checksum differs" } else { "" }
                ),
            ));
        }
        Ok(SnapshotFile {
            name: created.name.clone(),
            bytes: reader.bytes,
            sha256,
        })
    })();
    if let Err(e) = client.delete(&path) {
        w.warn(
            &item_path(name, SNAPSHOT_FILE),
            format!("could not delete {} from the server: {e}", created.name),
        );
    }
    result
}

/// Hashes and counts what passes through.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.hasher.update(&out[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_offset_is_read_from_the_end() {
        let page = br#"{"result":{"points":[{"id":1,"payload":{"next_page_offset":99}}],"next_page_offset":"5c56c793-69f3-4fbf-87e6-c4bf54c28c26"},"status":"ok","time":0.1}"#;
        assert_eq!(
            next_offset(page),
            Some(Some(PointId::Uuid(
                "5c56c793-69f3-4fbf-87e6-c4bf54c28c26".into()
            )))
        );
        let last = br#"{"result":{"points":[],"next_page_offset":null},"status":"ok"}"#;
        assert_eq!(next_offset(last), Some(None));
        let spaced = br#"{"result":{"points":[], "next_page_offset" : 42},"status":"ok"}"#;
        assert_eq!(
            next_offset(spaced),
            None,
            "not Qdrant's compact form: no guess"
        );
        assert_eq!(
            next_offset(br#"{"result":{"next_page_offset":42,"points":[]}}"#),
            Some(Some(PointId::Num(42)))
        );
    }
}
