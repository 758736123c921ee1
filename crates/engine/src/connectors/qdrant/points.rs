//! Points: read from Qdrant's JSON (scroll pages), written back as JSON (upserts), and kept in
//! the repository in a compact binary form whose bytes do not change while the point does not,
//! so a daily backup of a mostly unchanged collection stores little.
//!
//! The binary stream (`points.bin`, format 1), all integers little-endian:
//! ```text
//! "BWQPTS1\n"
//! per point:  u32 length, then
//!             id:        u8 0 + u64 number | u8 1 + u16 length + UUID text
//!             shard key: u32 length + JSON (0: none)
//!             payload:   u32 length + JSON as Qdrant sent it (0: none)
//!             u16 vectors, each: u16 length + name ("" is the unnamed vector), u8 kind,
//!               0 dense:  u32 n, n f32
//!               1 sparse: u32 n, n u32 indices, n f32 values
//!               2 multi:  u32 rows, u32 dim, rows*dim f32
//! end:        u32 0xFFFFFFFF, u64 number of points
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};

pub const MAGIC: &[u8] = b"BWQPTS1\n";
const END: u32 = u32::MAX;
/// No single point is this large; a length above it means the stream is damaged.
const MAX_RECORD: u32 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointId {
    Num(u64),
    Uuid(String),
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => f.write_str(u),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Vector {
    Dense(Vec<f32>),
    Sparse { indices: Vec<u32>, values: Vec<f32> },
    Multi(Vec<Vec<f32>>),
}

/// A point's vectors: the collection's one unnamed vector, or named ones (sorted by name, so
/// the stored bytes do not depend on the order the server lists them in).
#[derive(Debug, Clone, PartialEq)]
pub enum Vectors {
    Unnamed(Vector),
    Named(BTreeMap<String, Vector>),
}

impl Default for Vectors {
    fn default() -> Self {
        Vectors::Named(BTreeMap::new())
    }
}

impl Vectors {
    /// (name, vector) pairs; the unnamed vector is called "".
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &Vector)> + '_> {
        match self {
            Vectors::Unnamed(v) => Box::new(std::iter::once(("", v))),
            Vectors::Named(m) => Box::new(m.iter().map(|(k, v)| (k.as_str(), v))),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Vector> {
        match self {
            Vectors::Unnamed(v) if name.is_empty() => Some(v),
            Vectors::Unnamed(_) => None,
            Vectors::Named(m) => m.get(name),
        }
    }
}

/// One point as Qdrant's scroll and retrieve calls return it, and as upserts take it.
#[derive(Debug, Clone, Deserialize)]
pub struct Point {
    pub id: PointId,
    #[serde(default, rename = "vector")]
    pub vectors: Vectors,
    #[serde(default)]
    pub payload: Option<Box<RawValue>>,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

impl Point {
    /// The payload as a JSON value (an absent payload is an empty object, as Qdrant shows it).
    pub fn payload_value(&self) -> Value {
        self.payload
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .filter(|v: &Value| !v.is_null())
            .unwrap_or_else(|| Value::Object(Default::default()))
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("vector", &self.vectors)?;
        if let Some(p) = &self.payload {
            m.serialize_entry("payload", p)?;
        }
        m.end()
    }
}

impl Serialize for Vector {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Vector::Dense(v) => v.serialize(s),
            Vector::Multi(rows) => rows.serialize(s),
            Vector::Sparse { indices, values } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("indices", indices)?;
                m.serialize_entry("values", values)?;
                m.end()
            }
        }
    }
}

impl Serialize for Vectors {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Vectors::Unnamed(v) => v.serialize(s),
            Vectors::Named(m) => {
                let mut out = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
        }
    }
}

/// The first element of a vector array decides its shape: a number (dense) or an array
/// (one row of a multi-vector).
enum First {
    Num(f32),
    Row(Vec<f32>),
}

impl<'de> Deserialize<'de> for First {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = First;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or an array of numbers")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<First, E> {
                Ok(First::Num(v as f32))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<First, E> {
                Ok(First::Num(v as f32))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<First, E> {
                Ok(First::Num(v as f32))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<First, A::Error> {
                let mut row = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(x) = seq.next_element::<f32>()? {
                    row.push(x);
                }
                Ok(First::Row(row))
            }
        }
        d.deserialize_any(V)
    }
}

fn vector_from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> std::result::Result<Vector, A::Error> {
    match seq.next_element::<First>()? {
        None => Ok(Vector::Dense(Vec::new())),
        Some(First::Num(x)) => {
            let mut v = Vec::with_capacity(1024);
            v.push(x);
            while let Some(x) = seq.next_element::<f32>()? {
                v.push(x);
            }
            Ok(Vector::Dense(v))
        }
        Some(First::Row(r)) => {
            let mut rows = vec![r];
            while let Some(r) = seq.next_element::<Vec<f32>>()? {
                rows.push(r);
            }
            Ok(Vector::Multi(rows))
        }
    }
}

fn sparse_from_map<'de, A: MapAccess<'de>>(mut map: A) -> std::result::Result<Vector, A::Error> {
    let (mut indices, mut values) = (None, None);
    while let Some(k) = map.next_key::<String>()? {
        match k.as_str() {
            "indices" => indices = Some(map.next_value::<Vec<u32>>()?),
            "values" => values = Some(map.next_value::<Vec<f32>>()?),
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
    }
    match (indices, values) {
        (Some(indices), Some(values)) if indices.len() == values.len() => {
            Ok(Vector::Sparse { indices, values })
        }
        _ => Err(de::Error::custom(
            "a sparse vector needs indices and values of equal length",
        )),
    }
}

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a dense, sparse or multi-vector")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Vector, A::Error> {
                vector_from_seq(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Vector, A::Error> {
                sparse_from_map(map)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Vectors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vectors;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vector or an object of named vectors")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Vectors, E> {
                Ok(Vectors::default())
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Vectors, E> {
                Ok(Vectors::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<Vectors, A::Error> {
                vector_from_seq(seq).map(Vectors::Unnamed)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Vectors, A::Error> {
                let mut named = BTreeMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v = map.next_value::<Vector>()?;
                    named.insert(k, v);
                }
                Ok(Vectors::Named(named))
            }
        }
        d.deserialize_any(V)
    }
}

fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u16).to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len());
    out.extend_from_slice(b);
}

/// Appends one point in the binary form.
pub fn encode(p: &Point, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match &p.id {
        PointId::Num(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        PointId::Uuid(u) => {
            out.push(1);
            put_u16(out, u.len());
            out.extend_from_slice(u.as_bytes());
        }
    }
    let shard_key = match &p.shard_key {
        Some(k) if !k.is_null() => {
            serde_json::to_vec(k).map_err(|e| Error::invalid(e.to_string()))?
        }
        _ => Vec::new(),
    };
    put_bytes32(out, &shard_key);
    put_bytes32(
        out,
        p.payload.as_ref().map_or(&b""[..], |r| r.get().as_bytes()),
    );
    let vectors: Vec<(&str, &Vector)> = p.vectors.iter().collect();
    put_u16(out, vectors.len());
    for (name, v) in vectors {
        put_u16(out, name.len());
        out.extend_from_slice(name.as_bytes());
        match v {
            Vector::Dense(d) => {
                out.push(0);
                put_u32(out, d.len());
                put_f32s(out, d);
            }
            Vector::Sparse { indices, values } => {
                out.push(1);
                put_u32(out, indices.len());
                for i in indices {
                    out.extend_from_slice(&i.to_le_bytes());
                }
                put_f32s(out, values);
            }
            Vector::Multi(rows) => {
                out.push(2);
                let dim = rows.first().map_or(0, Vec::len);
                if rows.iter().any(|r| r.len() != dim) {
                    return Err(Error::invalid(format!(
                        "point {}: multi-vector '{name}' has rows of different lengths",
                        p.id
                    )));
                }
                put_u32(out, rows.len());
                put_u32(out, dim);
                for r in rows {
                    put_f32s(out, r);
                }
            }
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The end marker, carrying the number of points written.
pub fn encode_end(count: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&END.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
}

/// Reads points back from the binary form; a stream that ends early or disagrees with its
/// own count is an error, never a shorter collection.
pub struct PointReader<R> {
    inner: R,
    read: u64,
    done: bool,
    buf: Vec<u8>,
}

fn damaged(why: impl fmt::Display) -> Error {
    Error::corrupt(format!("points stream: {why}"))
}

impl<R: Read> PointReader<R> {
    pub fn new(mut inner: R) -> Result<Self> {
        let mut magic = [0u8; 8];
        inner
            .read_exact(&mut magic)
            .map_err(|e| damaged(format!("header: {e}")))?;
        if magic != MAGIC {
            return Err(damaged("not a Bulwark points stream (format 1)"));
        }
        Ok(Self {
            inner,
            read: 0,
            done: false,
            buf: Vec::new(),
        })
    }

    /// Reads `n` bytes as they arrive (a damaged length must not cost an allocation of its
    /// own size before the stream proves too short).
    fn read_exact(&mut self, n: usize) -> Result<()> {
        self.buf.clear();
        let got = (&mut self.inner)
            .take(n as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| damaged(format!("after {} point(s): {e}", self.read)))?;
        if got != n {
            return Err(damaged(format!(
                "after {} point(s): the stream ends early",
                self.read
            )));
        }
        Ok(())
    }

    pub fn next_point(&mut self) -> Result<Option<Point>> {
        if self.done {
            return Ok(None);
        }
        self.read_exact(4)?;
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len == END {
            self.read_exact(8)?;
            let mut n = [0u8; 8];
            n.copy_from_slice(&self.buf);
            let count = u64::from_le_bytes(n);
            if count != self.read {
                return Err(damaged(format!(
                    "holds {} point(s) but its end says {count}",
                    self.read
                )));
            }
            self.done = true;
            return Ok(None);
        }
        if len > MAX_RECORD {
            return Err(damaged(format!("record of {len} bytes")));
        }
        self.read_exact(len as usize)?;
        let p = decode(&self.buf).map_err(|e| damaged(format!("point {}: {e}", self.read + 1)))?;
        self.read += 1;
        Ok(Some(p))
    }

    pub fn count(&self) -> u64 {
        self.read
    }
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err("record ends early".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> std::result::Result<usize, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    fn u32(&mut self) -> std::result::Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self, n: usize) -> std::result::Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "text is not UTF-8".to_string())
    }
    fn f32s(&mut self, n: usize) -> std::result::Result<Vec<f32>, String> {
        let b = self.take(n.checked_mul(4).ok_or("length overflows")?)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

fn decode(b: &[u8]) -> std::result::Result<Point, String> {
    let mut c = Cursor { b };
    let id = match c.u8()? {
        0 => PointId::Num(c.u64()?),
        1 => {
            let n = c.u16()?;
            PointId::Uuid(c.str(n)?)
        }
        t => return Err(format!("unknown id tag {t}")),
    };
    let n = c.u32()?;
    let shard_key = if n == 0 {
        None
    } else {
        Some(serde_json::from_slice(c.take(n)?).map_err(|e| format!("shard key: {e}"))?)
    };
    let n = c.u32()?;
    let payload = if n == 0 {
        None
    } else {
        Some(RawValue::from_string(c.str(n)?).map_err(|e| format!("payload: {e}"))?)
    };
    let count = c.u16()?;
    let mut named = BTreeMap::new();
    for _ in 0..count {
        let n = c.u16()?;
        let name = c.str(n)?;
        let v = match c.u8()? {
            0 => {
                let n = c.u32()?;
                Vector::Dense(c.f32s(n)?)
            }
            1 => {
                let n = c.u32()?;
                let idx = c.take(n.checked_mul(4).ok_or("length overflows")?)?;
                let indices = idx
                    .chunks_exact(4)
                    .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                    .collect();
                Vector::Sparse {
                    indices,
                    values: c.f32s(n)?,
                }
            }
            2 => {
                let (rows, dim) = (c.u32()?, c.u32()?);
                let flat = c.f32s(rows.checked_mul(dim).ok_or("length overflows")?)?;
                Vector::Multi(if dim == 0 {
                    vec![Vec::new(); rows]
                } else {
                    flat.chunks_exact(dim).map(<[f32]>::to_vec).collect()
                })
            }
            k => return Err(format!("unknown vector kind {k}")),
        };
        named.insert(name, v);
    }
    if !c.b.is_empty() {
        return Err(format!("{} stray byte(s) after the point", c.b.len()));
    }
    let vectors = match named.remove("") {
        Some(v) if named.is_empty() => Vectors::Unnamed(v),
        Some(v) => {
            named.insert(String::new(), v);
            Vectors::Named(named)
        }
        None => Vectors::Named(named),
    };
    Ok(Point {
        id,
        vectors,
        payload,
        shard_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Point {
        serde_json::from_str(json).expect("a point")
    }

    #[test]
    fn every_vector_shape_survives_json_and_binary() {
        let points = [
            parse(
                r#"{"id": 7, "vector": [0.1, -2.5, 3e-7], "payload": {"b": [1, "x"], "a": null}}"#,
            ),
            parse(
                r#"{"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": {"text": {"indices": [3, 9], "values": [0.5, 0.25]}, "img": [1, 2], "colbert": [[1.0, 2.0], [3.0, 4.0]]}, "shard_key": "eu"}"#,
            ),
            parse(r#"{"id": 9, "vector": [[0.5], [0.75]], "payload": null}"#),
            parse(r#"{"id": 10, "vector": {}}"#),
            parse(r#"{"id": 11}"#),
        ];
        let mut bin = MAGIC.to_vec();
        for p in &points {
            encode(p, &mut bin).expect("encodes");
        }
        encode_end(points.len() as u64, &mut bin);
        let mut r = PointReader::new(bin.as_slice()).expect("header");
        for p in &points {
            let back = r.next_point().expect("reads").expect("a point");
            assert_eq!(back.id, p.id);
            assert_eq!(back.vectors, p.vectors);
            assert_eq!(back.payload_value(), p.payload_value());
            assert_eq!(back.shard_key, p.shard_key);
            // And back through JSON as an upsert would send it.
            let again: Point =
                serde_json::from_slice(&serde_json::to_vec(&back).expect("json")).expect("parses");
            assert_eq!(again.vectors, p.vectors);
        }
        assert!(r.next_point().expect("end").is_none());
        assert!(matches!(
            points[2].vectors,
            Vectors::Unnamed(Vector::Multi(_))
        ));
        assert_eq!(
            points[1].vectors.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["colbert", "img", "text"]
        );
    }

    #[test]
    fn damage_is_an_error_not_a_shorter_collection() {
        let p = parse(r#"{"id": 1, "vector": [1.0, 2.0]}"#);
        let mut bin = MAGIC.to_vec();
        encode(&p, &mut bin).expect("encodes");
        encode(&p, &mut bin).expect("encodes");
        let cut = bin.clone();
        encode_end(2, &mut bin);
        let read_all = |b: &[u8]| -> Result<u64> {
            let mut r = PointReader::new(b)?;
            while r.next_point()?.is_some() {}
            Ok(r.count())
        };
        assert_eq!(read_all(&bin).expect("whole"), 2);
        assert!(read_all(&cut).is_err(), "no end marker");
        assert!(
            read_all(&bin[..bin.len() - 20]).is_err(),
            "cut inside a point"
        );
        let mut wrong = cut.clone();
        encode_end(3, &mut wrong);
        assert!(read_all(&wrong).is_err(), "count disagrees");
        assert!(
            serde_json::from_str::<Point>(r#"{"id": 1, "vector": {"s": {"indices": [1]}}}"#)
                .is_err()
        );
    }
}
