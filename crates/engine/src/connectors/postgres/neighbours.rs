//! Nearest-neighbour answers of pgvector columns: recorded at backup time from the dump
//! itself, asked again of the restored database.
//!
//! Before a database is dumped, the catalog names its pgvector columns (`vector` or `halfvec`
//! with a declared dimension, in tables with a one-column primary key). As the dump's COPY text
//! streams past, the first rows of each such column become the queries and every row's vector
//! is measured against them (Euclidean distance, pgvector's `<->`): the exact top-K of each
//! query over the table as dumped, from the dump's own snapshot, with no second read of the
//! server. After a restore the same queries run as exact scans (index scans off) and must find
//! the same keys; a different key tied with the last expected distance counts as found.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::conn::PgConn;
use super::verify::{ident, literal, DatabaseStats, TextSettings, END_MARK};
use crate::connectors::interface::top_k_overlap;
use crate::error::{Error, ErrorKind, Result};

/// Queries recorded per vector column.
pub const QUERIES: usize = 5;
/// Neighbours recorded per query.
pub const TOP_K: usize = 10;
/// Relative difference under which two distances tie (the server sums in single precision).
const TIE: f64 = 1e-4;

/// A pgvector column whose searches can be recorded.
#[derive(Debug, Clone, Deserialize)]
pub struct VectorColumn {
    pub schema: String,
    pub table: String,
    pub column: String,
    /// The table's one-column primary key.
    pub key: String,
    pub dims: usize,
    /// Where the extension's types and operators live, and the column's type.
    pub type_schema: String,
    pub type_name: String,
}

/// The pgvector columns of database `db` that have a declared dimension and sit in a table
/// with a one-column primary key (the key names each neighbour). None without pgvector.
pub fn vector_columns(conn: &PgConn, db: &str) -> Result<Vec<VectorColumn>> {
    conn.query(
        db,
        "SELECT coalesce(json_agg(json_build_object(\
           'schema', n.nspname, 'table', c.relname, 'column', a.attname, 'key', k.attname, \
           'dims', a.atttypmod, 'type_schema', tn.nspname, 'type_name', t.typname)), '[]') \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r' \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_type t ON t.oid = a.atttypid AND t.typname IN ('vector', 'halfvec') \
         JOIN pg_namespace tn ON tn.oid = t.typnamespace \
         JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e' \
         JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'vector' \
         JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1 \
         JOIN pg_attribute k ON k.attrelid = c.oid AND k.attnum = i.indkey[0] \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atttypmod > 0",
    )
}

/// One recorded search: a row's vector as the query, and its exact top-K at backup time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub column: String,
    /// The primary-key column that names the neighbours.
    pub key: String,
    pub type_schema: String,
    pub type_name: String,
    /// The query row's key, as COPY text.
    pub query_key: String,
    /// The query vector as pgvector prints it.
    pub vector: String,
    pub expected: Vec<Neighbour>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The row's key, as COPY text.
    pub key: String,
    pub distance: f64,
}

/// A candidate in a top-K heap: the largest distance on top, so it is the one displaced.
struct Candidate(f64, Vec<u8>);

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| self.1.cmp(&other.1))
    }
}

struct Query {
    key: Vec<u8>,
    text: Vec<u8>,
    vector: Vec<f32>,
    best: BinaryHeap<Candidate>,
}

/// Takes one vector column's searches from the COPY text of its table, row by row.
pub struct Scan {
    column: VectorColumn,
    /// Field positions in a COPY row.
    vector_field: usize,
    key_field: usize,
    queries: Vec<Query>,
    /// The first rows, held until the queries are known (they are candidates too).
    first: Vec<(Vec<u8>, Vec<u8>, Vec<f32>)>,
    values: Vec<f32>,
}

impl Scan {
    /// A scan for `column` in a table dumped by `COPY {copy} FROM stdin`, or None when the
    /// statement does not list the column and its key.
    pub fn new(copy: &str, column: &VectorColumn) -> Option<Self> {
        let fields = copy_columns(copy)?;
        let at = |name: &str| fields.iter().position(|f| f == name);
        Some(Self {
            vector_field: at(&column.column)?,
            key_field: at(&column.key)?,
            column: column.clone(),
            queries: Vec::new(),
            first: Vec::new(),
            values: Vec::with_capacity(column.dims),
        })
    }

    pub fn add(&mut self, row: &[u8]) {
        let (mut key, mut text) = (None, None);
        for (i, field) in row.split(|&b| b == b'\t').enumerate() {
            if i == self.key_field {
                key = Some(field);
            } else if i == self.vector_field {
                text = Some(field);
            }
        }
        let (Some(key), Some(text)) = (key, text) else {
            return;
        };
        if !parse_vector(text, &mut self.values) || self.values.len() != self.column.dims {
            return; // NULL, or not a vector of the declared size
        }
        if self.first.len() < QUERIES && self.queries.is_empty() {
            self.first
                .push((key.to_vec(), text.to_vec(), self.values.clone()));
            if self.first.len() == QUERIES {
                self.start_queries();
            }
            return;
        }
        offer(&mut self.queries, key, &self.values);
    }

    fn start_queries(&mut self) {
        self.queries = self
            .first
            .iter()
            .map(|(key, text, vector)| Query {
                key: key.clone(),
                text: text.clone(),
                vector: vector.clone(),
                best: BinaryHeap::with_capacity(TOP_K + 1),
            })
            .collect();
        for (key, _, vector) in std::mem::take(&mut self.first) {
            offer(&mut self.queries, &key, &vector);
        }
    }

    pub fn finish(mut self) -> Vec<Search> {
        if self.queries.is_empty() {
            self.start_queries();
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.queries
            .into_iter()
            .map(|q| Search {
                column: self.column.column.clone(),
                key: self.column.key.clone(),
                type_schema: self.column.type_schema.clone(),
                type_name: self.column.type_name.clone(),
                query_key: text(&q.key),
                vector: text(&q.text),
                expected: q
                    .best
                    .into_sorted_vec()
                    .into_iter()
                    .map(|Candidate(distance, key)| Neighbour {
                        key: text(&key),
                        distance,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Measures `vector` against every query, keeping each query's K nearest.
fn offer(queries: &mut [Query], key: &[u8], vector: &[f32]) {
    for q in queries {
        let distance = l2(&q.vector, vector);
        let better = q.best.len() < TOP_K || q.best.peek().is_some_and(|w| distance < w.0);
        if better {
            q.best.push(Candidate(distance, key.to_vec()));
            if q.best.len() > TOP_K {
                q.best.pop();
            }
        }
    }
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// Parses pgvector's text form `[1,2.5,-3e-05]` into `out`; false for anything else (`\N`).
fn parse_vector(text: &[u8], out: &mut Vec<f32>) -> bool {
    out.clear();
    let Some(inner) = text.strip_prefix(b"[").and_then(|t| t.strip_suffix(b"]")) else {
        return false;
    };
    let Ok(inner) = std::str::from_utf8(inner) else {
        return false;
    };
    for v in inner.split(',') {
        match v.trim().parse::<f32>() {
            Ok(x) => out.push(x),
            Err(_) => return false,
        }
    }
    true
}

/// The column names of a COPY target such as `public.t (id, "my col")`, unquoted.
fn copy_columns(copy: &str) -> Option<Vec<String>> {
    let open = copy.find(" (")?;
    let list = copy[open + 2..].strip_suffix(')')?;
    let mut names = Vec::new();
    let mut name = String::new();
    let mut quoted = false;
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                name.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => {
                names.push(std::mem::take(&mut name));
                if chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            c => name.push(c),
        }
    }
    names.push(name);
    Some(names)
}

/// One recorded search asked again of a restored table.
#[derive(Debug, Clone, Serialize)]
pub struct SearchCheck {
    pub table: String,
    pub column: String,
    pub query_key: String,
    /// Share of the expected neighbours found (ties at the boundary count).
    pub overlap: f64,
    /// Expected keys the restored table did not return.
    pub missing: Vec<String>,
}

impl SearchCheck {
    pub fn ok(&self) -> bool {
        self.overlap >= 1.0
    }
}

/// Asks database `db` the searches `expected` records (at most `per_column` per vector column
/// when sampling), each as an exact scan, and compares the answers.
pub fn check(
    conn: &PgConn,
    db: &str,
    expected: &DatabaseStats,
    text: &TextSettings,
    per_column: Option<usize>,
) -> Result<Vec<SearchCheck>> {
    let mut asked = Vec::new();
    for (table, stats) in expected {
        let mut per: std::collections::HashMap<&str, usize> = Default::default();
        for s in &stats.searches {
            let n = per.entry(s.column.as_str()).or_default();
            if per_column.is_some_and(|max| *n >= max) {
                continue;
            }
            *n += 1;
            asked.push((table.as_str(), stats.name(table), s));
        }
    }
    if asked.is_empty() {
        return Ok(Vec::new());
    }
    let mut script = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n");
    script.push_str(&text.set_local());
    script.push_str("SET LOCAL enable_indexscan = off;\nSET LOCAL enable_bitmapscan = off;\n");
    for (_, name, s) in &asked {
        let distance = format!(
            "{} OPERATOR({}.<->) {}::{}.{}",
            ident(&s.column),
            ident(&s.type_schema),
            literal(&s.vector),
            ident(&s.type_schema),
            ident(&s.type_name)
        );
        script.push_str(&format!(
            "COPY (SELECT {}, ({distance})::float8 FROM {name} WHERE {} IS NOT NULL \
             ORDER BY 2 LIMIT {}) TO STDOUT;\nSELECT E'\\\\.';\n",
            ident(&s.key),
            ident(&s.column),
            s.expected.len().max(1)
        ));
    }
    script.push_str("COMMIT;\n");

    let answers = conn.run_script(
        db,
        script,
        format!("vector searches in database {db}"),
        |out| read_answers(out, asked.len()),
    )?;
    Ok(asked
        .iter()
        .zip(answers)
        .map(|((table, _, s), got)| compare(table, s, &got))
        .collect())
}

fn compare(table: &str, s: &Search, got: &[(String, f64)]) -> SearchCheck {
    let want: Vec<(String, f64)> = s
        .expected
        .iter()
        .map(|n| (n.key.clone(), n.distance))
        .collect();
    let returned: std::collections::HashSet<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    SearchCheck {
        table: table.to_string(),
        column: s.column.clone(),
        query_key: s.query_key.clone(),
        overlap: top_k_overlap(&want, got, TIE),
        missing: s
            .expected
            .iter()
            .filter(|n| !returned.contains(n.key.as_str()))
            .map(|n| n.key.clone())
            .collect(),
    }
}

/// psql's answers: per search, `key<TAB>distance` lines up to the end mark.
fn read_answers(mut out: impl BufRead, searches: usize) -> Result<Vec<Vec<(String, f64)>>> {
    let bad = |what: String| {
        Error::new(
            ErrorKind::Source,
            format!("reading vector searches: {what}"),
        )
    };
    let mut answers = Vec::with_capacity(searches);
    let mut line = String::new();
    for i in 0..searches {
        let mut hits = Vec::new();
        loop {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                return Err(bad(format!("psql's answer ends before search {}", i + 1)));
            }
            let row = line.strip_suffix('\n').unwrap_or(&line);
            if row.as_bytes() == END_MARK {
                break;
            }
            let (key, distance) = row
                .rsplit_once('\t')
                .and_then(|(k, d)| Some((k, d.parse::<f64>().ok()?)))
                .ok_or_else(|| bad(format!("'{row}' is not a key and a distance")))?;
            hits.push((key.to_string(), distance));
        }
        answers.push(hits);
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(dims: usize) -> VectorColumn {
        VectorColumn {
            schema: "public".into(),
            table: "t".into(),
            column: "my emb".into(),
            key: "id".into(),
            dims,
            type_schema: "public".into(),
            type_name: "vector".into(),
        }
    }

    #[test]
    fn copy_columns_are_unquoted() {
        assert_eq!(
            copy_columns("public.t (id, \"my emb\", \"a\"\"b, c\")").expect("test input"),
            ["id", "my emb", "a\"b, c"]
        );
        assert_eq!(copy_columns("public.t"), None);
    }

    #[test]
    fn vectors_parse_or_refuse() {
        let mut v = Vec::new();
        assert!(parse_vector(b"[1,2.5,-3e-05]", &mut v));
        assert_eq!(v, [1.0, 2.5, -3e-05]);
        assert!(!parse_vector(b"\\N", &mut v));
        assert!(!parse_vector(b"[1,x]", &mut v));
    }

    /// The scan's top-K equals a brute-force sort, for queries among the first rows, with rows
    /// of the wrong size and NULLs left out.
    #[test]
    fn scans_find_the_exact_nearest_rows() {
        let mut scan =
            Scan::new("public.t (id, \"my emb\", note)", &column(2)).expect("test input");
        let point = |i: u32| [((i * 37) % 101) as f32, ((i * 53) % 97) as f32 / 3.0];
        let mut rows = Vec::new();
        for i in 0..500u32 {
            let [x, y] = point(i);
            rows.push((i, [x, y]));
            scan.add(format!("{i}\t[{x},{y}]\tnote {i}").as_bytes());
        }
        scan.add(b"900\t\\N\tnull vector");
        scan.add(b"901\t[1,2,3]\twrong size");
        let searches = scan.finish();
        assert_eq!(searches.len(), QUERIES);
        for (q, s) in searches.iter().enumerate() {
            assert_eq!(s.query_key, q.to_string());
            let query = point(q as u32);
            let mut all: Vec<(f64, u32)> = rows.iter().map(|(i, v)| (l2(&query, v), *i)).collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<(String, f64)> = s
                .expected
                .iter()
                .map(|n| (n.key.clone(), n.distance))
                .collect();
            let want: Vec<(String, f64)> = all[..TOP_K]
                .iter()
                .map(|(d, i)| (i.to_string(), *d))
                .collect();
            assert_eq!(top_k_overlap(&want, &got, TIE), 1.0, "query {q}");
            assert_eq!(s.expected[0].distance, 0.0);
        }
    }

    #[test]
    fn short_tables_still_record_their_searches() {
        let mut scan = Scan::new("public.t (id, \"my emb\")", &column(2)).expect("test input");
        scan.add(b"1\t[0,0]");
        scan.add(b"2\t[3,4]");
        let s = scan.finish();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].expected.len(), 2);
        assert_eq!(s[0].expected[1].distance, 5.0);
    }

    #[test]
    fn answers_compare_by_key_with_ties() {
        let s = Search {
            column: "e".into(),
            key: "id".into(),
            type_schema: "public".into(),
            type_name: "vector".into(),
            query_key: "1".into(),
            vector: "[0]".into(),
            expected: vec![
                Neighbour {
                    key: "1".into(),
                    distance: 0.0,
                },
                Neighbour {
                    key: "2".into(),
                    distance: 1.0,
                },
            ],
        };
        let answer = b"1\t0\n3\t1.00000001\n\\.\n1\t0\n4\t7\n\\.\n";
        let got = read_answers(&answer[..], 2).expect("test input");
        let tie = compare("public.t", &s, &got[0]);
        assert!(tie.ok(), "{tie:?}");
        let wrong = compare("public.t", &s, &got[1]);
        assert!(!wrong.ok());
        assert_eq!(wrong.missing, ["2"]);
        assert!(read_answers(&b"1\t0\n"[..], 1).is_err());
        assert!(read_answers(&b"1\n\\.\n"[..], 1).is_err());
    }
}
