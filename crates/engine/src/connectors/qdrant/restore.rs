//! Restoring Qdrant collections into a running server: from the server snapshot (uploaded, so
//! Qdrant recovers its own files) or from the logical points (the collection created with its
//! recorded definition, then points upserted in parallel batches). A collection is restored as
//! `<name>__restored` unless told otherwise, and never over an existing one without `replace`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::api::{seg, Client};
use super::collection::{self, Definition};
use super::points::PointReader;
use super::verify::{self, Fingerprint, VerifyReport};
use super::{
    item_path, CollectionFacts, Mode, QdrantFacts, DEFINITION, FINGERPRINT, POINTS, SNAPSHOT_FILE,
};
use crate::error::{Error, ErrorKind, Result};
use crate::item_data::{find_items, ItemStream};
use crate::items::Item;
use crate::progress::{Progress, Reporter};
use crate::repo::Repository;
use crate::snapshot::Snapshot;

/// Suffix of the default restore target.
pub const RESTORED_SUFFIX: &str = "__restored";
/// Upserts in flight at once.
const UPSERT_WORKERS: usize = 3;
/// A batch is sent once it holds this many points or bytes of JSON.
const BATCH_POINTS: usize = 512;
const BATCH_BYTES: usize = 4 << 20;

pub struct RestoreOptions {
    /// Collections to restore (empty: every one in the snapshot).
    pub collections: Vec<String>,
    /// The name to restore a single collection as (default `<name>` + `suffix`).
    pub target_collection: Option<String>,
    /// Appended to each collection's name to name its copy ([`RESTORED_SUFFIX`] for a
    /// restore; a sandbox's own for a sandbox).
    pub suffix: String,
    /// Overwrite a target collection that exists.
    pub replace: bool,
    /// Which capture to restore from when the snapshot has both (default: the server snapshot).
    pub mode: Option<Mode>,
    /// Snapshot recovery priority: snapshot, replica or no_sync.
    pub priority: String,
    pub verify: bool,
    /// Lowest acceptable top-K overlap per search.
    pub min_overlap: f64,
    pub dry_run: bool,
    pub progress: Reporter,
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub target: String,
    pub dry_run: bool,
    pub collections: Vec<CollectionReport>,
}

impl RestoreReport {
    pub fn verified_ok(&self) -> bool {
        self.collections
            .iter()
            .all(|c| c.verify.as_ref().is_none_or(VerifyReport::ok))
    }
}

#[derive(Debug, Serialize)]
pub struct CollectionReport {
    pub source: String,
    pub target: String,
    pub mode: Mode,
    /// The target existed and was replaced.
    pub replaced: bool,
    /// Points upserted (logical) or expected (snapshot).
    pub points: u64,
    pub bytes: u64,
    pub secs: f64,
    pub points_per_sec: f64,
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

struct Plan<'a> {
    facts: &'a CollectionFacts,
    target: String,
    mode: Mode,
    exists: bool,
}

fn plan<'a>(
    client: &Client,
    facts: &'a QdrantFacts,
    opts: &RestoreOptions,
) -> Result<Vec<Plan<'a>>> {
    for c in &opts.collections {
        if !facts.collections.iter().any(|f| &f.name == c) {
            let have: Vec<&str> = facts.collections.iter().map(|f| f.name.as_str()).collect();
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the snapshot has no collection '{c}' (it has: {})",
                    have.join(", ")
                ),
            ));
        }
    }
    let chosen: Vec<&CollectionFacts> = facts
        .collections
        .iter()
        .filter(|f| opts.collections.is_empty() || opts.collections.contains(&f.name))
        .collect();
    if opts.target_collection.is_some() && chosen.len() != 1 {
        return Err(Error::invalid(format!(
            "--target-collection names one collection, but {} are being restored; choose one with --collection",
            chosen.len()
        )));
    }
    let mut plans = Vec::new();
    let mut taken = Vec::new();
    for f in chosen {
        let mode = match opts.mode {
            Some(m) if f.modes.contains(&m) => m,
            Some(m) => {
                return Err(Error::invalid(format!(
                    "collection '{}' was not backed up in {m:?} mode (it has {:?})",
                    f.name, f.modes
                )))
            }
            None if f.modes.contains(&Mode::Snapshot) => Mode::Snapshot,
            None => Mode::Logical,
        };
        let target = opts
            .target_collection
            .clone()
            .unwrap_or_else(|| format!("{}{}", f.name, opts.suffix));
        let exists = collection::exists(client, &target)?;
        if exists && !opts.replace {
            taken.push(target.clone());
        }
        plans.push(Plan {
            facts: f,
            target,
            mode,
            exists,
        });
    }
    if !taken.is_empty() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already has collection(s) {}; restore under another name with --target-collection, or overwrite with --replace",
                client.describe(),
                taken.join(", ")
            ),
        ));
    }
    Ok(plans)
}

pub fn restore(
    repo: &Repository,
    snap: &Snapshot,
    client: &Client,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let facts = QdrantFacts::of(snap)?;
    client.version()?;
    let plans = plan(client, &facts, opts)?;
    let mut report = RestoreReport {
        target: client.describe().to_string(),
        dry_run: opts.dry_run,
        collections: Vec::new(),
    };
    if opts.dry_run {
        for p in &plans {
            report.collections.push(CollectionReport {
                source: p.facts.name.clone(),
                target: p.target.clone(),
                mode: p.mode,
                replaced: p.exists,
                points: p.facts.expected_points(p.mode).1,
                bytes: 0,
                secs: 0.0,
                points_per_sec: 0.0,
                aliases: Vec::new(),
                warnings: Vec::new(),
                verify: None,
            });
        }
        return Ok(report);
    }
    let index = Arc::new(repo.load_index()?);
    let mut wanted = Vec::new();
    for p in &plans {
        let data = match p.mode {
            Mode::Logical => POINTS,
            Mode::Snapshot => SNAPSHOT_FILE,
        };
        for part in [DEFINITION, FINGERPRINT, data] {
            wanted.push(item_path(&p.facts.name, part));
        }
    }
    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let items = find_items(repo, index.clone(), snap, &refs)?;
    let total: u64 = items.values().map(|i| i.size).sum();
    opts.progress.send(Progress::Total {
        items: items.len() as u64,
        bytes: total,
    });
    for p in plans {
        let r = restore_one(repo, &index, &items, client, &p, opts)
            .map_err(|e| e.context(format!("collection '{}' into '{}'", p.facts.name, p.target)))?;
        report.collections.push(r);
    }
    Ok(report)
}

fn read_json<T: serde::de::DeserializeOwned>(
    repo: &Repository,
    index: &Arc<crate::index::Index>,
    item: &Item,
) -> Result<T> {
    let mut bytes = Vec::new();
    ItemStream::open(repo, index.clone(), item, Reporter::none())
        .read_to_end(&mut bytes)
        .map_err(|e| Error::new(ErrorKind::Corrupt, e.to_string()).context(item.path.clone()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(format!("{}: unreadable: {e}", item.path)))
}

fn restore_one(
    repo: &Repository,
    index: &Arc<crate::index::Index>,
    items: &HashMap<String, Item>,
    client: &Client,
    p: &Plan,
    opts: &RestoreOptions,
) -> Result<CollectionReport> {
    let name = &p.facts.name;
    let item = |part: &str| -> Result<&Item> {
        items
            .get(&item_path(name, part))
            .ok_or_else(|| Error::corrupt(format!("the snapshot lacks {}", item_path(name, part))))
    };
    let def: Definition = read_json(repo, index, item(DEFINITION)?)?;
    let fp: Fingerprint = read_json(repo, index, item(FINGERPRINT)?)?;
    let started = Instant::now();
    let (points, bytes) = match p.mode {
        Mode::Snapshot => {
            let file = item(SNAPSHOT_FILE)?;
            let sha = p
                .facts
                .snapshot
                .as_ref()
                .map(|s| s.sha256.clone())
                .unwrap_or_default();
            opts.progress.send(Progress::Phase(format!(
                "uploading the snapshot of '{name}'; Qdrant recovers it as '{}'",
                p.target
            )));
            let stream = ItemStream::open(repo, index.clone(), file, opts.progress.clone());
            let mut path = format!(
                "/collections/{}/snapshots/upload?wait=true&priority={}",
                seg(&p.target),
                seg(&opts.priority)
            );
            if !sha.is_empty() {
                path.push_str(&format!("&checksum={sha}"));
            }
            client.upload(&path, "snapshot", SNAPSHOT_FILE, stream, file.size)?;
            (p.facts.expected_points(Mode::Snapshot).1, file.size)
        }
        Mode::Logical => {
            if p.exists {
                client.delete(&format!("/collections/{}", seg(&p.target)))?;
            }
            opts.progress.send(Progress::Phase(format!(
                "creating '{}' and upserting the points of '{name}'",
                p.target
            )));
            def.create(client, &p.target)?;
            let file = item(POINTS)?;
            let stream = ItemStream::open(repo, index.clone(), file, opts.progress.clone());
            (upsert_all(client, &p.target, stream)?, file.size)
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let mut report = CollectionReport {
        source: name.clone(),
        target: p.target.clone(),
        mode: p.mode,
        replaced: p.exists,
        points,
        bytes,
        secs,
        points_per_sec: points as f64 / secs.max(1e-9),
        aliases: Vec::new(),
        warnings: Vec::new(),
        verify: None,
    };
    // Aliases follow the collection only when it comes back under its own name; pointing
    // them at a copy would take them from the live collection.
    if p.target == *name && !def.aliases.is_empty() {
        match def.restore_aliases(client, &p.target) {
            Ok(()) => report.aliases = def.aliases.clone(),
            Err(e) => report
                .warnings
                .push(format!("aliases {:?} not restored: {e}", def.aliases)),
        }
    } else if !def.aliases.is_empty() {
        report.warnings.push(format!(
            "aliases {:?} were not moved to '{}' (they follow a restore under the original name)",
            def.aliases, p.target
        ));
    }
    if opts.verify {
        opts.progress
            .send(Progress::Phase(format!("verifying '{}'", p.target)));
        report.verify = Some(verify::verify(
            client,
            &p.target,
            &fp,
            p.facts.expected_points(p.mode),
            opts.min_overlap,
        )?);
    }
    Ok(report)
}

/// One upsert request body: `{"points": [...], "shard_key": ...}`.
struct Batch {
    body: Vec<u8>,
    points: usize,
    shard_key: Option<Value>,
}

impl Batch {
    fn new(shard_key: Option<Value>) -> Self {
        Self {
            body: b"{\"points\":[".to_vec(),
            points: 0,
            shard_key,
        }
    }

    fn push(&mut self, p: &super::points::Point) -> Result<()> {
        if self.points > 0 {
            self.body.push(b',');
        }
        serde_json::to_writer(&mut self.body, p).map_err(|e| Error::invalid(e.to_string()))?;
        self.points += 1;
        Ok(())
    }

    fn full(&self) -> bool {
        self.points >= BATCH_POINTS || self.body.len() >= BATCH_BYTES
    }

    fn finish(mut self) -> Vec<u8> {
        self.body.push(b']');
        if let Some(k) = &self.shard_key {
            self.body.extend_from_slice(b",\"shard_key\":");
            self.body.extend_from_slice(k.to_string().as_bytes());
        }
        self.body.push(b'}');
        self.body
    }
}

/// Upserts every point of the stream, a few batches in flight; returns how many.
fn upsert_all(client: &Client, target: &str, stream: impl Read) -> Result<u64> {
    let path = format!("/collections/{}/points?wait=true", seg(target));
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(UPSERT_WORKERS);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let sent = std::thread::scope(|scope| -> Result<u64> {
        for _ in 0..UPSERT_WORKERS {
            let (rx, path, failure) = (rx.clone(), &path, &failure);
            scope.spawn(move || {
                for body in rx {
                    // One failure ends the restore: the others stop rather than send the rest.
                    if failure.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                        return;
                    }
                    if let Err(e) = client.call_raw(reqwest::Method::PUT, path, body) {
                        failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
        drop(rx);
        let mut reader = PointReader::new(std::io::BufReader::with_capacity(1 << 20, stream))?;
        let mut batch = Batch::new(None);
        let send = |b: Batch| {
            tx.send(b.finish())
                .map_err(|_| Error::new(ErrorKind::Source, "every upsert worker stopped"))
        };
        while let Some(p) = reader.next_point()? {
            let key = p.shard_key.clone().filter(|k| !k.is_null());
            if batch.points > 0 && key != batch.shard_key {
                send(std::mem::replace(&mut batch, Batch::new(key.clone())))?;
            }
            batch.shard_key = key;
            batch.push(&p)?;
            if batch.full() {
                let key = batch.shard_key.clone();
                send(std::mem::replace(&mut batch, Batch::new(key)))?;
            }
        }
        if batch.points > 0 {
            send(batch)?;
        }
        drop(tx);
        Ok(reader.count())
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    sent
}
