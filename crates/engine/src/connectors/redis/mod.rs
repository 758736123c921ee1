//! Redis: a point-in-time RDB taken over the network as a replica would (PSYNC), parsed as it
//! streams so the snapshot records what it holds, plus the append-only files when the data
//! directory is reachable. Restored as a file (optionally started), key by key into a running
//! server, or into a throwaway sandbox; each way checked against the backup.
//!
//! A snapshot of a redis source holds:
//! ```text
//! redis/dump.rdb                      the RDB as the server sent it
//! redis/appendonlydir/...             the AOF manifest and files (when data_dir is set)
//! ```
//! and a `redis` fact with the server version and, per database, the keys by type.

pub mod connector;
pub mod encodings;
pub mod rdb;
mod rdb_values;
pub mod resp;
pub mod restore;
pub mod server;
pub mod sync;
pub mod verify;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backup::{SnapshotWriter, Source};
use crate::connectors::stream::stream_item;
use crate::connectors::{ChannelReader, Tee};
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::{Snapshot, SourceInfo};
pub use resp::RedisUrl;

/// Where the RDB lives in a snapshot.
pub const RDB_PATH: &str = "redis/dump.rdb";
const AOF_DIR: &str = "redis/appendonlydir";

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: RedisUrl,
    /// The server's data directory, to capture the append-only files as well.
    pub data_dir: Option<PathBuf>,
}

/// What a redis snapshot records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RedisFacts {
    pub server_version: String,
    pub rdb_version: u32,
    /// Replication id and offset the RDB corresponds to.
    pub replid: String,
    pub offset: u64,
    /// True when the server streamed the RDB without writing it to disk.
    pub diskless: bool,
    pub rdb_bytes: u64,
    /// What the RDB holds.
    pub census: Census,
    /// Item paths of the captured AOF files (manifest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aof: Vec<String>,
}

/// What an RDB holds, counted while reading it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Census {
    pub databases: BTreeMap<u32, DbCensus>,
    #[serde(default)]
    pub functions: u64,
    /// Values of each module type, which live restores cannot load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, u64>,
    /// Why reading stopped before the end, if it did (a value type this build cannot read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DbCensus {
    pub keys: u64,
    /// Keys with an expiry.
    pub expires: u64,
    /// Keys by type name.
    pub types: BTreeMap<String, u64>,
}

impl Census {
    pub fn keys(&self) -> u64 {
        self.databases.values().map(|d| d.keys).sum()
    }

    pub fn count(&mut self, e: &rdb::Entry) {
        let db = self.databases.entry(e.db).or_default();
        db.keys += 1;
        db.expires += u64::from(e.expire_ms.is_some());
        *db.types
            .entry(rdb::type_name(e.kind).to_string())
            .or_default() += 1;
        if let Some(m) = &e.module {
            *self.modules.entry(m.clone()).or_default() += 1;
        }
    }

    /// How this census of an RDB read back differs from `recorded`, the one taken at backup.
    pub fn differs_from(&self, recorded: &Census) -> Option<String> {
        (self.databases != recorded.databases || self.functions != recorded.functions).then(|| {
            format!(
                "the RDB read back holds {} key(s) and {} function librar(ies); the backup recorded {} and {}",
                self.keys(),
                self.functions,
                recorded.keys(),
                recorded.functions
            )
        })
    }

    /// Reads a whole RDB, counting; `each` sees every record. A value type this build cannot
    /// read ends the census early (recorded in `unreadable`); damage is an error.
    pub fn take<R: Read>(
        reader: rdb::RdbReader<R>,
        mut each: impl FnMut(&rdb::Record) -> Result<()>,
    ) -> Result<Self> {
        let mut census = Census::default();
        let mut reader = reader;
        loop {
            match reader.next_record() {
                Ok(Some(rec)) => {
                    match &rec {
                        rdb::Record::Entry(e) => census.count(e),
                        rdb::Record::Function(_) => census.functions += 1,
                        _ => {}
                    }
                    each(&rec)?;
                }
                Ok(None) => return Ok(census),
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    census.unreadable = Some(e.to_string());
                    return Ok(census);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl RedisFacts {
    pub const KEY: &'static str = "redis";

    pub fn of(snap: &Snapshot) -> Result<Self> {
        let v = snap.facts.get(Self::KEY).ok_or_else(|| {
            Error::invalid(format!(
                "snapshot of '{}' ({}) is not a Redis backup",
                snap.source.name, snap.source.kind
            ))
        })?;
        serde_json::from_value(v.clone())
            .map_err(|e| Error::corrupt(format!("snapshot's redis facts are unreadable: {e}")))
    }
}

pub struct RedisSource {
    name: String,
    settings: RedisSettings,
}

impl RedisSource {
    pub fn new(name: &str, settings: RedisSettings) -> Self {
        Self {
            name: name.to_string(),
            settings,
        }
    }
}

/// A server setting, or None when CONFIG is not allowed (managed services, ACLs).
fn config_get(c: &mut resp::Conn, key: &str) -> Option<String> {
    let reply = c.cmd(&["CONFIG", "GET", key]).ok()?.into_array();
    reply.into_iter().nth(1).map(|v| v.into_string())
}

impl Source for RedisSource {
    fn info(&self) -> SourceInfo {
        SourceInfo::new(&self.name, crate::connectors::Kind::Redis)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.settings.url.describe()]
    }

    fn run(&mut self, w: &mut SnapshotWriter) -> Result<()> {
        let mut conn = resp::Conn::open(&self.settings.url)?;
        let server_version = conn
            .info_field("server", "redis_version")?
            .unwrap_or_default();
        let delay = config_get(&mut conn, "repl-diskless-sync-delay")
            .filter(|d| d != "0")
            .map(|d| {
                format!(" (diskless sync waits repl-diskless-sync-delay = {d}s for other replicas)")
            })
            .unwrap_or_default();
        let mut told = false;
        let (start, stream) = sync::start(&self.settings.url, || {
            if !told {
                w.phase(format!("waiting for Redis to start the snapshot{delay}"));
                told = true;
            }
        })?;
        w.phase("streaming the RDB");

        // The RDB goes to the repository and, through a channel, to a reader that checks
        // and counts it; the census must succeed for the snapshot to count.
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(16);
        let mut rdb_bytes = 0;
        let census = std::thread::scope(|scope| {
            let reader = scope.spawn(move || -> Result<(u32, Census)> {
                let r = rdb::RdbReader::new(ChannelReader::new(rx), false)?;
                let version = r.version();
                Census::take(r, |_| Ok(())).map(|c| (version, c))
            });
            let tee = Tee::new(stream, tx, &mut rdb_bytes);
            let stored = w.put_deferred(stream_item(RDB_PATH), Some(tee));
            let census = reader
                .join()
                .unwrap_or_else(|_| Err(Error::corrupt("the RDB reader panicked")));
            stored.and(census)
        });
        let (rdb_version, census) = census.map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "backing up {}: {e}; the backup is discarded",
                    self.settings.url.describe()
                ),
            )
        })?;
        if let Some(why) = &census.unreadable {
            w.warn(
                RDB_PATH,
                format!("stored whole, but only partly readable: {why}; live restore and verification cover the keys before it"),
            );
        }
        for (module, n) in &census.modules {
            w.warn(
                RDB_PATH,
                format!("{n} value(s) of module type {module}: kept in the RDB, but a live restore skips them"),
            );
        }
        let mut facts = RedisFacts {
            server_version,
            rdb_version,
            replid: start.replid,
            offset: start.offset,
            diskless: start.diskless,
            rdb_bytes,
            census,
            aof: Vec::new(),
        };
        if let Some(dir) = self.settings.data_dir.clone() {
            facts.aof = capture_aof(&mut conn, &dir, w)?;
        }
        w.fact(
            RedisFacts::KEY,
            serde_json::to_value(&facts).map_err(|e| Error::invalid(e.to_string()))?,
        );
        Ok(())
    }
}

/// Copies the multi-part AOF (Redis 7): the manifest and the files it lists. All files are
/// opened before the manifest is read again; if a rewrite replaced them meanwhile, it starts
/// over, so the captured set is one the server had at a single moment.
fn capture_aof(
    conn: &mut resp::Conn,
    data_dir: &std::path::Path,
    w: &mut SnapshotWriter,
) -> Result<Vec<String>> {
    if config_get(conn, "appendonly").as_deref() == Some("no") {
        w.warn(
            AOF_DIR,
            "data_dir is set but the server has appendonly off: only the RDB is captured",
        );
        return Ok(Vec::new());
    }
    let dirname = config_get(conn, "appenddirname").unwrap_or_else(|| "appendonlydir".into());
    let filename = config_get(conn, "appendfilename").unwrap_or_else(|| "appendonly.aof".into());
    let dir = data_dir.join(&dirname);
    let manifest_path = dir.join(format!("{filename}.manifest"));
    let read_manifest = || {
        std::fs::read(&manifest_path).map_err(|e| {
            Error::from(e).context(format!(
                "reading the AOF manifest {} (is data_dir the server's dir?)",
                manifest_path.display()
            ))
        })
    };
    for _attempt in 0..5 {
        let manifest = read_manifest()?;
        let names = aof_files(&manifest)?;
        let mut files = Vec::new();
        for n in &names {
            match std::fs::File::open(dir.join(n)) {
                Ok(f) => files.push((n.clone(), f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(Error::from(e).context(dir.join(n).display().to_string())),
            }
        }
        if files.len() != names.len() || read_manifest()? != manifest {
            continue; // rewritten meanwhile
        }
        let manifest_item = format!("{AOF_DIR}/{filename}.manifest");
        w.put_deferred(stream_item(&manifest_item), Some(manifest.as_slice()))?;
        let mut items = vec![manifest_item];
        for (n, f) in files {
            let item = format!("{AOF_DIR}/{n}");
            w.put_deferred(stream_item(&item), Some(f))?;
            items.push(item);
        }
        return Ok(items);
    }
    Err(Error::new(
        ErrorKind::Source,
        format!(
            "the AOF in {} kept being rewritten while it was copied",
            dir.display()
        ),
    ))
}

/// The file names an AOF manifest lists (lines `file <name> seq <n> type <b|h|i>`), except
/// history files, which the server is about to delete.
fn aof_files(manifest: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(manifest)
        .map_err(|_| Error::new(ErrorKind::Source, "the AOF manifest is not text"))?;
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |k: &str| {
            words
                .iter()
                .position(|w| *w == k)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        let name = field("file").ok_or_else(|| {
            Error::new(
                ErrorKind::Source,
                format!("unexpected AOF manifest line: {line}"),
            )
        })?;
        if name.contains('/') || name.starts_with('.') {
            return Err(Error::new(
                ErrorKind::Source,
                format!("AOF manifest names an unsafe file: {name}"),
            ));
        }
        if field("type") != Some("h") {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aof_manifest() {
        let m = b"file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.1.incr.aof seq 1 type h\nfile appendonly.aof.3.incr.aof seq 3 type i\n";
        assert_eq!(
            aof_files(m).expect("parses"),
            vec!["appendonly.aof.2.base.rdb", "appendonly.aof.3.incr.aof"]
        );
        assert!(aof_files(b"file ../etc/passwd seq 1 type b\n").is_err());
        assert!(aof_files(b"garbage\n").is_err());
    }

    #[test]
    fn a_census_read_back_short_is_a_difference() {
        let mut recorded = super::Census::default();
        recorded.databases.insert(
            0,
            super::DbCensus {
                keys: 10,
                ..Default::default()
            },
        );
        assert_eq!(recorded.differs_from(&recorded.clone()), None);
        let mut short = recorded.clone();
        if let Some(db) = short.databases.get_mut(&0) {
            db.keys = 9;
        }
        let why = short.differs_from(&recorded).expect("differs");
        assert!(
            why.contains("9 key(s)") && why.contains("recorded 10"),
            "{why}"
        );
    }
}
