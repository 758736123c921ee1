//! Checking a restored Redis against its backup: the keys in each database, and a sample of
//! keys compared by type, TTL and value. Expiries make counts a range: a key past its expiry
//! may still sit in memory until Redis reclaims it, and one about to expire is left out of
//! the sample.

use std::collections::BTreeMap;

use serde::Serialize;

use super::rdb::{self, Entry, StreamId, StreamValue, Value};
use super::resp::{Conn, Reply};
use crate::error::{Error, ErrorKind, Result};

/// Keys expiring this close to the check (ms) count as uncertain.
const MARGIN_MS: i64 = 5_000;
/// How far a restored TTL may drift from the backup's absolute expiry (ms).
const TTL_SLACK_MS: i64 = 2_000;

/// Picks about `want` of `total` keys, the same ones every time.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    want: u64,
    total: u64,
}

impl Sampler {
    pub fn new(want: u64, total: u64) -> Self {
        Self { want, total }
    }

    pub fn wants(&self, key: &[u8]) -> bool {
        if self.total <= self.want {
            return true;
        }
        let h = blake3::hash(key);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.as_bytes()[..8]);
        u64::from_le_bytes(first) % self.total < self.want
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub db: u32,
    pub key: Vec<u8>,
    pub expire_ms: Option<i64>,
    pub value: Value,
}

/// What the restored server should hold, gathered while the RDB is read.
#[derive(Debug, Default)]
pub struct Expected {
    persistent: BTreeMap<u32, u64>,
    expiries: BTreeMap<u32, Vec<i64>>,
    pub samples: Vec<Sample>,
}

impl Expected {
    /// Counts a key the restore writes, and keeps its value if the sampler picks it.
    pub fn observe(&mut self, e: &Entry, sampler: &Sampler) -> Result<()> {
        match e.expire_ms {
            Some(t) => self.expiries.entry(e.db).or_default().push(t),
            None => *self.persistent.entry(e.db).or_default() += 1,
        }
        if sampler.wants(&e.key) && e.module.is_none() {
            self.samples.push(Sample {
                db: e.db,
                key: e.key.clone(),
                expire_ms: e.expire_ms,
                value: e.value()?,
            });
        }
        Ok(())
    }

    pub fn keys(&self) -> u64 {
        self.persistent.values().sum::<u64>()
            + self.expiries.values().map(|v| v.len() as u64).sum::<u64>()
    }

    fn databases(&self) -> Vec<u32> {
        let mut dbs: Vec<u32> = self
            .persistent
            .keys()
            .chain(self.expiries.keys())
            .copied()
            .collect();
        dbs.sort_unstable();
        dbs.dedup();
        dbs
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DbCheck {
    pub db: u32,
    /// Keys certainly alive now.
    pub expected_min: u64,
    /// Keys restored (some may have expired since); absent when the target held other keys.
    pub expected_max: Option<u64>,
    pub actual: u64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub db: u32,
    pub key: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    pub databases: Vec<DbCheck>,
    pub sampled: usize,
    /// Sampled keys left unchecked because they expire around now.
    pub uncertain: usize,
    pub mismatches: Vec<Mismatch>,
    /// Set when the RDB read back at restore counted other keys than the backup recorded:
    /// the restore replayed another (or a shorter) stream than was backed up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub census_mismatch: Option<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
            && self.databases.iter().all(|d| d.ok)
            && self.census_mismatch.is_none()
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Compares the server with what the backup says it should hold. `exact` means the target
/// held nothing else, so counts have an upper bound too.
pub fn verify(conn: &mut Conn, expected: &Expected, exact: bool) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let now = now_ms();
    for db in expected.databases() {
        conn.cmd(&["SELECT", &db.to_string()])?;
        let actual = conn.cmd(&["DBSIZE"])?.int().unwrap_or(-1).max(0) as u64;
        let persistent = expected.persistent.get(&db).copied().unwrap_or(0);
        let expiring = expected.expiries.get(&db).map(Vec::as_slice).unwrap_or(&[]);
        let alive = expiring.iter().filter(|t| **t > now + MARGIN_MS).count() as u64;
        let min = persistent + alive;
        let max = exact.then_some(persistent + expiring.len() as u64);
        report.databases.push(DbCheck {
            db,
            expected_min: min,
            expected_max: max,
            actual,
            ok: actual >= min && max.is_none_or(|m| actual <= m),
        });
    }
    let mut selected = None;
    for s in &expected.samples {
        let now = now_ms();
        if s.expire_ms.is_some_and(|t| (t - now).abs() <= MARGIN_MS) {
            report.uncertain += 1;
            continue;
        }
        if selected != Some(s.db) {
            conn.cmd(&["SELECT", &s.db.to_string()])?;
            selected = Some(s.db);
        }
        report.sampled += 1;
        if let Some(problem) = check_key(conn, s, now)? {
            report.mismatches.push(Mismatch {
                db: s.db,
                key: String::from_utf8_lossy(&s.key).into_owned(),
                problem,
            });
        }
    }
    Ok(report)
}

/// What is wrong with one restored key, if anything.
fn check_key(conn: &mut Conn, s: &Sample, now: i64) -> Result<Option<String>> {
    let key = s.key.as_slice();
    let ty = conn.call(&[b"TYPE", key])?.into_string();
    if s.expire_ms.is_some_and(|t| t < now) {
        return Ok(
            (ty != "none").then(|| format!("expired at backup time + TTL, but present as {ty}"))
        );
    }
    let want_ty = match &s.value {
        Value::String(_) => "string",
        Value::List(_) => "list",
        Value::Set(_) => "set",
        Value::ZSet(_) => "zset",
        Value::Hash(_) => "hash",
        Value::Stream(_) => "stream",
        Value::Module(_) => return Ok(None),
    };
    if ty != want_ty {
        return Ok(Some(format!("type {ty}, backup has {want_ty}")));
    }
    let pttl = conn.call(&[b"PTTL", key])?.int().unwrap_or(-2);
    match s.expire_ms {
        None if pttl != -1 => return Ok(Some(format!("has a TTL of {pttl} ms, backup has none"))),
        Some(t) if pttl < 0 || (pttl - (t - now)).abs() > TTL_SLACK_MS => {
            return Ok(Some(format!(
                "TTL {pttl} ms, backup expires in {} ms",
                t - now
            )))
        }
        _ => {}
    }
    let actual = fetch(conn, key, &s.value)?;
    let want = normalize(s.value.clone());
    Ok((actual != want).then(|| describe_difference(&want, &actual)))
}

fn describe_difference(want: &Value, got: &Value) -> String {
    let size = |v: &Value| match v {
        Value::String(b) => b.len(),
        Value::List(l) | Value::Set(l) => l.len(),
        Value::ZSet(z) => z.len(),
        Value::Hash(h) => h.len(),
        Value::Stream(s) => s.entries.len(),
        Value::Module(_) => 0,
    };
    let (a, b) = (size(want), size(got));
    if a != b {
        format!("value differs: backup has {a} element(s)/bytes, restored has {b}")
    } else {
        format!("value differs (same size, {a})")
    }
}

/// A value in the canonical order the server reports it in, so the two compare equal.
fn normalize(v: Value) -> Value {
    match v {
        Value::Set(mut s) => {
            s.sort();
            Value::Set(s)
        }
        Value::Hash(mut h) => {
            h.sort();
            Value::Hash(h)
        }
        Value::ZSet(mut z) => {
            z.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            Value::ZSet(z)
        }
        Value::Stream(mut s) => {
            s.groups.sort_by(|a, b| a.name.cmp(&b.name));
            for g in &mut s.groups {
                g.consumers.sort();
            }
            Value::Stream(s)
        }
        v => v,
    }
}

fn bulk_list(r: Reply) -> Vec<Vec<u8>> {
    r.into_array()
        .into_iter()
        .filter_map(Reply::into_bytes)
        .collect()
}

fn malformed(what: &str) -> Error {
    Error::new(ErrorKind::Source, format!("unexpected reply to {what}"))
}

fn parse_f64(b: &[u8]) -> Result<f64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("ZRANGE WITHSCORES"))
}

fn parse_id(b: &[u8]) -> Result<StreamId> {
    let s = std::str::from_utf8(b).map_err(|_| malformed("a stream id"))?;
    let (ms, seq) = s.split_once('-').ok_or_else(|| malformed("a stream id"))?;
    Ok((
        ms.parse().map_err(|_| malformed("a stream id"))?,
        seq.parse().map_err(|_| malformed("a stream id"))?,
    ))
}

/// A flat `field value field value` reply as a map.
fn fields(r: Reply) -> BTreeMap<String, Reply> {
    let mut out = BTreeMap::new();
    let mut it = r.into_array().into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.insert(k.into_string(), v);
    }
    out
}

/// The restored key's value, read the way clients see it, shaped like `like`.
fn fetch(conn: &mut Conn, key: &[u8], like: &Value) -> Result<Value> {
    Ok(normalize(match like {
        Value::String(_) => {
            Value::String(conn.call(&[b"GET", key])?.into_bytes().unwrap_or_default())
        }
        Value::List(_) => Value::List(bulk_list(conn.call(&[b"LRANGE", key, b"0", b"-1"])?)),
        Value::Set(_) => Value::Set(bulk_list(conn.call(&[b"SMEMBERS", key])?)),
        Value::ZSet(_) => {
            let flat = bulk_list(conn.call(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])?);
            let mut z = Vec::new();
            for pair in flat.chunks(2) {
                if let [m, s] = pair {
                    z.push((m.clone(), parse_f64(s)?));
                }
            }
            Value::ZSet(z)
        }
        Value::Hash(_) => {
            let flat = bulk_list(conn.call(&[b"HGETALL", key])?);
            Value::Hash(
                flat.chunks(2)
                    .filter_map(|p| match p {
                        [f, v] => Some((f.clone(), v.clone())),
                        _ => None,
                    })
                    .collect(),
            )
        }
        Value::Stream(_) => Value::Stream(Box::new(fetch_stream(conn, key)?)),
        Value::Module(m) => Value::Module(m.clone()),
    }))
}

fn fetch_stream(conn: &mut Conn, key: &[u8]) -> Result<StreamValue> {
    let mut s = StreamValue::default();
    for entry in conn.call(&[b"XRANGE", key, b"-", b"+"])?.into_array() {
        let mut parts = entry.into_array().into_iter();
        let id = parse_id(&parts.next().and_then(Reply::into_bytes).unwrap_or_default())?;
        let flat = parts.next().map(bulk_list).unwrap_or_default();
        let pairs = flat
            .chunks(2)
            .filter_map(|p| match p {
                [f, v] => Some((f.clone(), v.clone())),
                _ => None,
            })
            .collect();
        s.entries.push((id, pairs));
    }
    let info = fields(conn.call(&[b"XINFO", b"STREAM", key])?);
    s.length = info.get("length").and_then(Reply::int).unwrap_or(-1) as u64;
    s.last_id = parse_id(
        &info
            .get("last-generated-id")
            .cloned()
            .and_then(Reply::into_bytes)
            .unwrap_or_default(),
    )?;
    for g in conn.call(&[b"XINFO", b"GROUPS", key])?.into_array() {
        let g = fields(g);
        let name = g
            .get("name")
            .cloned()
            .and_then(Reply::into_bytes)
            .unwrap_or_default();
        let consumers = conn
            .call(&[b"XINFO", b"CONSUMERS", key, &name])?
            .into_array()
            .into_iter()
            .filter_map(|c| fields(c).remove("name").and_then(Reply::into_bytes))
            .collect();
        s.groups.push(rdb::GroupValue {
            last_id: parse_id(
                &g.get("last-delivered-id")
                    .cloned()
                    .and_then(Reply::into_bytes)
                    .unwrap_or_default(),
            )?,
            pending: g.get("pending").and_then(Reply::int).unwrap_or(-1) as u64,
            name,
            consumers,
        });
    }
    Ok(s)
}
