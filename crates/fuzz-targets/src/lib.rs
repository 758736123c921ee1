//! The fuzz targets: each feeds arbitrary bytes to one parser of data that comes from storage
//! or from a server. A target may return anything; it must never panic, hang or allocate
//! without bound. `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run NAME`); the test
//! in `tests/` replays the committed corpora (`fuzz/corpus/NAME/`) on stable Rust, in CI.

use std::io::Cursor;

use engine::connectors::postgres::neighbours::VectorColumn;
use engine::connectors::postgres::{dump_format, globals, wal};
use engine::connectors::qdrant::points::PointReader;
use engine::connectors::redis::rdb::{RdbReader, Record};
use engine::connectors::redis::resp::RespReader;
use engine::crypto::MasterKey;

/// A target takes any bytes and says whether they parsed whole (the committed seeds must).
pub type Target = fn(&[u8]) -> bool;

/// Every target by name, as `fuzz/fuzz_targets/NAME.rs` names it.
pub const TARGETS: &[(&str, Target)] = &[
    ("index", index),
    ("pack_header", pack_header),
    ("sealed_object", sealed_object),
    ("snapshot", snapshot),
    ("key_file", key_file),
    ("lock", lock),
    ("repo_config", repo_config),
    ("item_stream", item_stream),
    ("rdb", rdb),
    ("resp", resp),
    ("pg_archive", pg_archive),
    ("wal_history", wal_history),
    ("globals", globals_sql),
    ("qdrant_points", qdrant_points),
];

/// An index file's plaintext.
pub fn index(data: &[u8]) -> bool {
    engine::index::decode(data).is_ok()
}

/// A pack header's plaintext, for a pack of up to 16 MiB.
pub fn pack_header(data: &[u8]) -> bool {
    engine::pack::decode_header(data, 16 << 20).is_ok()
}

/// A sealed object (index, snapshot, sealed blob) opened with one key: framing and
/// authentication must reject it cleanly.
pub fn sealed_object(data: &[u8]) -> bool {
    static KEY: std::sync::OnceLock<MasterKey> = std::sync::OnceLock::new();
    // Sealed under another key, nothing opens: what counts is that the framing is parsed.
    engine::codec::decode(KEY.get_or_init(MasterKey::generate), data, None).is_err()
}

pub fn snapshot(data: &[u8]) -> bool {
    serde_json::from_slice::<engine::snapshot::Snapshot>(data).is_ok()
}

pub fn key_file(data: &[u8]) -> bool {
    serde_json::from_slice::<engine::repo::KeyFile>(data).is_ok()
}

pub fn lock(data: &[u8]) -> bool {
    serde_json::from_slice::<engine::lock::LockInfo>(data).is_ok()
}

pub fn repo_config(data: &[u8]) -> bool {
    serde_json::from_slice::<engine::repo::RepoConfig>(data)
        .is_ok_and(|c| c.chunker.validate().is_ok())
}

/// An item-stream chunk: JSON lines of items.
pub fn item_stream(data: &[u8]) -> bool {
    data.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(serde_json::from_slice::<engine::items::Item>)
        .fold(true, |all, item| all & item.is_ok())
}

/// An RDB file as a replica receives it, every record decoded to a value.
pub fn rdb(data: &[u8]) -> bool {
    let Ok(mut reader) = RdbReader::new(Cursor::new(data), true) else {
        return false;
    };
    loop {
        match reader.next_record() {
            Ok(Some(Record::Entry(e))) => {
                if e.value().is_err() {
                    return false;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Replies from a Redis server.
pub fn resp(data: &[u8]) -> bool {
    let mut reader = RespReader::new(data, "fuzz");
    let mut replies = 0;
    while reader.reply().is_ok() {
        replies += 1;
    }
    replies > 0
}

/// A pg_dump custom-format archive, with per-table checksums and the searches of a vector
/// column `public.t (b)` keyed by `a`.
pub fn pg_archive(data: &[u8]) -> bool {
    let column = VectorColumn {
        schema: "public".into(),
        table: "t".into(),
        column: "b".into(),
        key: "a".into(),
        dims: 2,
        type_schema: "public".into(),
        type_name: "vector".into(),
    };
    dump_format::summarize(data, true, &[column]).is_ok()
}

/// A timeline history file from the WAL archive.
pub fn wal_history(data: &[u8]) -> bool {
    wal::timeline::parse_history(&String::from_utf8_lossy(data)).is_ok()
}

/// A pg_dumpall globals dump rewritten for another server.
pub fn globals_sql(data: &[u8]) -> bool {
    let existing = ["postgres".to_string(), "app".to_string()]
        .into_iter()
        .collect();
    let (_, skipped) =
        globals::filter(&String::from_utf8_lossy(data), "postgres", &existing, false);
    skipped.connecting_role.is_some()
}

/// A logical Qdrant backup's stream of points.
pub fn qdrant_points(data: &[u8]) -> bool {
    let Ok(mut reader) = PointReader::new(data) else {
        return false;
    };
    loop {
        match reader.next_point() {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// A small deterministic generator for the stable-Rust replays (no dependency, same sequence
/// everywhere).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// `n` mutations of `seed`: bit flips, truncations, inserted junk, spliced copies of itself,
/// and unrelated random bytes.
pub fn mutations(seed: &[u8], n: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut m = seed.to_vec();
            let at = |rng: &mut Rng, len: usize| (rng.next_u64() as usize) % (len + 1);
            match rng.next_u64() % 5 {
                0 if !m.is_empty() => {
                    let i = at(rng, m.len() - 1);
                    m[i] ^= 1 << (rng.next_u64() % 8);
                }
                1 => m.truncate(at(rng, seed.len())),
                2 => {
                    let i = at(rng, m.len());
                    let n = (rng.next_u64() % 16) as usize;
                    m.splice(i..i, rng.bytes(n));
                }
                3 => {
                    let (a, b) = (at(rng, seed.len()), at(rng, seed.len()));
                    m.extend_from_slice(&seed[a.min(b)..a.max(b)]);
                }
                _ => {
                    let n = (rng.next_u64() % 512) as usize;
                    m = rng.bytes(n);
                }
            }
            m
        })
        .collect()
}
