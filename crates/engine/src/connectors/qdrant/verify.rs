//! What a restored collection must show, recorded at backup time, and the check against it.
//!
//! Around the capture (scroll or server snapshot) Bulwark counts the points exactly, samples
//! points at random with their vectors and payloads, and runs exact top-10 searches with some of
//! those vectors as queries. It does so just before the capture and again just after: a sample
//! or a query whose answer changed meanwhile was hit by a concurrent write and is left out, so
//! a busy collection never produces a false alarm. A restore then has to give the same count,
//! the same sampled points, and (above a threshold) the same search results.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api::{exact_params, seg, Client};
use super::collection::{self, Definition};
use super::points::{Point, PointId, Vector};
use crate::connectors::interface::top_k_overlap;
use crate::error::{Error, ErrorKind, Result};

/// Results per search, as in the "top-10".
pub const TOP_K: usize = 10;
/// Points sampled, and searches recorded, per collection by default.
pub const SAMPLE_POINTS: usize = 64;
pub const SAMPLE_QUERIES: usize = 10;
/// How long a restored collection may take to show all its points.
const VISIBILITY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hit {
    pub id: PointId,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Query {
    /// The point whose vector is the query.
    pub point: PointId,
    /// The vector name searched ("" for the unnamed vector).
    pub using: String,
    pub vector: Vector,
    /// The source's exact top-K at backup time.
    pub expected: Vec<Hit>,
}

/// The reference a restore is checked against.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Exact counts just before and just after the capture.
    pub count_before: u64,
    pub count_after: u64,
    /// Points that were the same before and after the capture.
    pub samples: Vec<Point>,
    /// Sampled points left out because they changed during the capture.
    pub changed_samples: usize,
    pub queries: Vec<Query>,
    /// Queries left out because their answer changed during the capture.
    pub changed_queries: usize,
    /// Why searches could not be recorded, when they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_queries: Option<String>,
}

/// The half of a fingerprint taken before the capture.
pub struct Probe {
    collection: String,
    count: u64,
    samples: Vec<Point>,
    queries: Vec<Query>,
    no_queries: Option<String>,
}

fn retrieve(client: &Client, name: &str, ids: &[PointId]) -> Result<Vec<Point>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    client.call_as(
        reqwest::Method::POST,
        &format!("/collections/{}/points", seg(name)),
        Some(&json!({ "ids": ids, "with_vector": true, "with_payload": true })),
    )
}

/// Exact top-K for one query.
fn search(client: &Client, name: &str, using: &str, vector: &Vector, k: usize) -> Result<Vec<Hit>> {
    #[derive(Deserialize)]
    struct Found {
        points: Vec<Hit>,
    }
    let mut body = json!({
        "query": vector,
        "limit": k,
        "params": exact_params(),
        "with_payload": false,
        "with_vector": false,
    });
    if !using.is_empty() {
        body["using"] = Value::String(using.to_string());
    }
    let found: Found = client.call_as(
        reqwest::Method::POST,
        &format!("/collections/{}/points/query", seg(name)),
        Some(&body),
    )?;
    Ok(found.points)
}

/// Runs searches at once (Qdrant answers them on all its cores); answers in the same order.
fn search_all(client: &Client, name: &str, asked: &[(&str, &Vector)]) -> Vec<Result<Vec<Hit>>> {
    std::thread::scope(|scope| {
        let running: Vec<_> = asked
            .iter()
            .map(|(using, vector)| scope.spawn(move || search(client, name, using, vector, TOP_K)))
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::new(ErrorKind::Source, "a search thread panicked"))
                })
            })
            .collect()
    })
}

fn as_asked(queries: &[Query]) -> Vec<(&str, &Vector)> {
    queries
        .iter()
        .map(|q| (q.using.as_str(), &q.vector))
        .collect()
}

impl Probe {
    /// Counts, samples `samples` points at random and searches with `queries` of them.
    pub fn before(
        client: &Client,
        def: &Definition,
        samples: usize,
        queries: usize,
    ) -> Result<Self> {
        #[derive(Deserialize)]
        struct Sampled {
            points: Vec<Point>,
        }
        let name = &def.name;
        let count = collection::count(client, name)?;
        let sampled: Sampled = client.call_as(
            reqwest::Method::POST,
            &format!("/collections/{}/points/query", seg(name)),
            Some(&json!({
                "query": { "sample": "random" },
                "limit": samples.max(queries),
                "with_vector": true,
                "with_payload": true,
            })),
        )?;
        let mut probe = Self {
            collection: name.clone(),
            count,
            samples: sampled.points,
            queries: Vec::new(),
            no_queries: None,
        };
        let names = def.vector_names();
        let mut chosen = Vec::new();
        for (i, p) in probe.samples.iter().take(queries).enumerate() {
            // Take turns over the vector names, so each kind of vector gets searched.
            let wanted = names.get(i % names.len().max(1)).map(String::as_str);
            if let Some((using, vector)) = wanted
                .and_then(|n| p.vectors.get(n).map(|v| (n, v)))
                .or_else(|| p.vectors.iter().next())
            {
                chosen.push((p.id.clone(), using.to_string(), vector.clone()));
            }
        }
        let asked: Vec<(&str, &Vector)> = chosen.iter().map(|(_, u, v)| (u.as_str(), v)).collect();
        let answers = search_all(client, name, &asked);
        for ((point, using, vector), answer) in chosen.into_iter().zip(answers) {
            match answer {
                Ok(expected) => probe.queries.push(Query {
                    point,
                    using,
                    vector,
                    expected,
                }),
                // Strict mode may forbid exact search; the rest of the check still holds.
                Err(e) => probe.no_queries = Some(e.to_string()),
            }
        }
        probe.samples.truncate(samples);
        Ok(probe)
    }

    /// The other half, after the capture: keeps what did not change meanwhile.
    pub fn finish(self, client: &Client) -> Result<Fingerprint> {
        let name = &self.collection;
        let count_after = collection::count(client, name)?;
        let ids: Vec<PointId> = self.samples.iter().map(|p| p.id.clone()).collect();
        let now = retrieve(client, name, &ids)?;
        let same = |a: &Point| {
            now.iter().any(|b| {
                b.id == a.id && b.vectors == a.vectors && b.payload_value() == a.payload_value()
            })
        };
        let total = self.samples.len();
        let samples: Vec<Point> = self.samples.into_iter().filter(same).collect();
        let asked = self.queries.len();
        let again = search_all(client, name, &as_asked(&self.queries));
        let mut queries = Vec::new();
        for (q, answer) in self.queries.into_iter().zip(again) {
            if answer? == q.expected {
                queries.push(q);
            }
        }
        Ok(Fingerprint {
            count_before: self.count,
            count_after,
            changed_samples: total - samples.len(),
            samples,
            changed_queries: asked - queries.len(),
            queries,
            no_queries: self.no_queries,
        })
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    pub collection: String,
    pub points: u64,
    pub expected_min: u64,
    pub expected_max: u64,
    pub count_ok: bool,
    /// Sampled points compared by vector and payload.
    pub sampled: usize,
    pub mismatches: Vec<String>,
    /// Searches compared, and the overlap of their top-K with the backup's.
    pub queries: usize,
    pub min_overlap: f64,
    pub mean_overlap: f64,
    pub threshold: f64,
    /// Searches whose overlap fell below the threshold.
    pub low_overlap: Vec<String>,
    /// What could not be compared and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.count_ok && self.mismatches.is_empty() && self.low_overlap.is_empty()
    }
}

/// Vectors equal up to rounding: Qdrant normalizes cosine vectors again on the way in.
fn close(a: &Vector, b: &Vector) -> bool {
    let near = |x: &[f32], y: &[f32]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|(p, q)| (p - q).abs() <= 1e-6 + 1e-5 * q.abs())
    };
    match (a, b) {
        (Vector::Dense(x), Vector::Dense(y)) => near(x, y),
        (Vector::Multi(x), Vector::Multi(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| near(p, q))
        }
        (
            Vector::Sparse {
                indices: i,
                values: v,
            },
            Vector::Sparse {
                indices: j,
                values: w,
            },
        ) => i == j && near(v, w),
        _ => false,
    }
}

/// How much of `expected` the restored search found (ties at the boundary count as found).
pub fn overlap(expected: &[Hit], got: &[Hit]) -> f64 {
    let pairs = |hits: &[Hit]| -> Vec<(PointId, f64)> {
        hits.iter()
            .map(|h| (h.id.clone(), f64::from(h.score)))
            .collect()
    };
    top_k_overlap(&pairs(expected), &pairs(got), 1e-5)
}

/// Compares the collection `name` with the fingerprint: exact count within
/// `expected_min..=expected_max` (waiting a little for points to become visible), sampled points
/// by vector and payload, and the top-K of each recorded search.
pub fn verify(
    client: &Client,
    name: &str,
    fp: &Fingerprint,
    expected: (u64, u64),
    threshold: f64,
) -> Result<VerifyReport> {
    let (expected_min, expected_max) = expected;
    let started = Instant::now();
    let points = loop {
        let n = collection::count(client, name)?;
        if (expected_min..=expected_max).contains(&n) || started.elapsed() > VISIBILITY_WAIT {
            break n;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut report = VerifyReport {
        collection: name.to_string(),
        points,
        expected_min,
        expected_max,
        count_ok: (expected_min..=expected_max).contains(&points),
        threshold,
        min_overlap: 1.0,
        mean_overlap: 1.0,
        ..Default::default()
    };
    let ids: Vec<PointId> = fp.samples.iter().map(|p| p.id.clone()).collect();
    let restored = retrieve(client, name, &ids)?;
    for want in &fp.samples {
        report.sampled += 1;
        let Some(got) = restored.iter().find(|p| p.id == want.id) else {
            report
                .mismatches
                .push(format!("point {} is missing", want.id));
            continue;
        };
        for (vname, v) in want.vectors.iter() {
            let shown = if vname.is_empty() { "(unnamed)" } else { vname };
            match got.vectors.get(vname) {
                Some(w) if close(v, w) => {}
                Some(_) => report
                    .mismatches
                    .push(format!("point {}: vector {shown} differs", want.id)),
                None => report
                    .mismatches
                    .push(format!("point {}: vector {shown} is missing", want.id)),
            }
        }
        if got.payload_value() != want.payload_value() {
            report
                .mismatches
                .push(format!("point {}: payload differs", want.id));
        }
    }
    let mut sum = 0.0;
    let answers = search_all(client, name, &as_asked(&fp.queries));
    for (q, got) in fp.queries.iter().zip(answers) {
        let got = got?;
        let o = overlap(&q.expected, &got);
        report.queries += 1;
        sum += o;
        report.min_overlap = report.min_overlap.min(o);
        if o < threshold {
            report.low_overlap.push(format!(
                "search with point {}'s {} vector: top-{} overlap {:.2}",
                q.point,
                if q.using.is_empty() {
                    "unnamed"
                } else {
                    &q.using
                },
                q.expected.len(),
                o
            ));
        }
    }
    if report.queries > 0 {
        report.mean_overlap = sum / report.queries as f64;
    }
    if let Some(why) = &fp.no_queries {
        report
            .notes
            .push(format!("no searches were recorded at backup time: {why}"));
    }
    if fp.changed_samples + fp.changed_queries > 0 {
        report.notes.push(format!(
            "{} sampled point(s) and {} search(es) changed while the backup ran and are not compared",
            fp.changed_samples, fp.changed_queries
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_compare_up_to_renormalisation() {
        let a = Vector::Dense(vec![0.6, 0.8]);
        assert!(close(&a, &Vector::Dense(vec![0.600_000_1, 0.8])));
        assert!(!close(&a, &Vector::Dense(vec![0.61, 0.8])));
        assert!(!close(&a, &Vector::Dense(vec![0.6])));
        assert!(!close(&a, &Vector::Multi(vec![vec![0.6, 0.8]])));
    }
}
