//! `bulwark-corpus generate DIR [--scale GB]` writes a deterministic corpus shaped like an AI
//! platform's data; `bulwark-corpus mutate DIR` applies a "next day" of changes to it;
//! `bulwark-corpus qdrant-points COUNT DIM [--every K] [--seed S]` prints Qdrant upsert bodies
//! (one JSON line per 500 points) for points with ids 0, K, 2K, ... (embeddings of document
//! chunks with a small payload).
//!
//! Shares (of the total): SQL dump text 30%, float32 embeddings 25%, uploads 27% (half random
//! like images, half text documents), logs 12%, duplicate uploads 5%, small JSON/YAML configs.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "agent",
    "memory",
    "retrieval",
    "vector",
    "prompt",
    "token",
    "context",
    "embedding",
    "user",
    "assistant",
    "tool",
    "call",
    "result",
    "error",
    "latency",
    "model",
    "reply",
    "question",
    "answer",
    "document",
    "chunk",
    "index",
    "search",
    "cache",
    "session",
    "queue",
    "policy",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "with",
    "on",
    "that",
    "this",
    "we",
];

fn sentence(rng: &mut Rng, words: usize, out: &mut String) {
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
}

fn sql_row(rng: &mut Rng, id: u64, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(out, "INSERT INTO messages (id, conversation_id, role, content, created_at) VALUES ({id}, {}, '{}', '", rng.below(1_000_000), if id.is_multiple_of(2) { "user" } else { "assistant" });
    let n = 8 + rng.below(40) as usize;
    sentence(rng, n, out);
    let _ = writeln!(
        out,
        "', '2026-11-{:02} {:02}:{:02}:{:02}');",
        1 + rng.below(20),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    );
}

fn write_file(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, data).expect("write");
}

fn generate(root: &Path, total: u64) {
    let mut rng = Rng::new(2026);
    // SQL dump: one large file of rows.
    let sql_target = total * 30 / 100;
    {
        fs::create_dir_all(root.join("db")).expect("mkdir");
        let mut w = BufWriter::with_capacity(
            1 << 20,
            File::create(root.join("db/messages.sql")).expect("create"),
        );
        let (mut written, mut id, mut line) = (0u64, 0u64, String::new());
        while written < sql_target {
            line.clear();
            sql_row(&mut rng, id, &mut line);
            w.write_all(line.as_bytes()).expect("write");
            written += line.len() as u64;
            id += 1;
        }
        w.flush().expect("flush");
    }
    // Embeddings: float32 vectors of 768 dimensions, values in [-1, 1).
    let emb_target = total * 25 / 100;
    let shards = 16u64;
    for s in 0..shards {
        let n = (emb_target / shards / 4) as usize;
        let mut buf = Vec::with_capacity(n * 4);
        for _ in 0..n {
            let v = (rng.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            buf.extend_from_slice(&v.to_le_bytes());
        }
        write_file(&root.join(format!("vectors/shard-{s:02}.f32")), &buf);
    }
    // Uploads: images (random) and documents (text), 50 KB to 8 MB.
    let up_target = total * 27 / 100;
    let (mut written, mut n) = (0u64, 0u64);
    let mut uploads = Vec::new();
    while written < up_target {
        let size = 50_000 + rng.below(8_000_000) as usize;
        let path = if n.is_multiple_of(2) {
            let mut buf = vec![0u8; size];
            rng.fill(&mut buf);
            let p = root.join(format!("uploads/{:03}/image-{n:05}.jpg", n % 97));
            write_file(&p, &buf);
            p
        } else {
            let mut s = String::with_capacity(size + 200);
            while s.len() < size {
                sentence(&mut rng, 12, &mut s);
                s.push_str(".\n");
            }
            let p = root.join(format!("uploads/{:03}/doc-{n:05}.txt", n % 97));
            write_file(&p, s.as_bytes());
            p
        };
        uploads.push(path);
        written += size as u64;
        n += 1;
    }
    // Duplicates: users upload the same file again.
    let dup_target = total * 5 / 100;
    let mut dup = 0u64;
    for (i, src) in uploads.iter().enumerate().step_by(7) {
        if dup >= dup_target {
            break;
        }
        let dst = root.join(format!("workspaces/agent-{}/attachments/copy-{i}", i % 13));
        fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        fs::copy(src, &dst).expect("copy");
        dup += fs::metadata(&dst).expect("stat").len();
    }
    // Logs.
    let log_target = total * 12 / 100;
    for f in 0..10 {
        append_log(
            &root.join(format!("logs/app-{f}.log")),
            &mut rng,
            log_target / 10,
        );
    }
    // Configs: many small JSON and YAML files.
    for i in 0..2000u64 {
        let (name, body) = if i.is_multiple_of(2) {
            (format!("config/services/svc-{i:04}.json"), format!("{{\"name\": \"svc-{i}\", \"replicas\": {}, \"model\": \"m-{}\", \"top_k\": {}}}\n", rng.below(10), rng.below(5), rng.below(50)))
        } else {
            (format!("config/agents/agent-{i:04}.yaml"), format!("name: agent-{i}\nmodel: m-{}\ntools:\n  - search\n  - code\ntemperature: 0.{}\n", rng.below(5), rng.below(10)))
        };
        write_file(&root.join(name), body.as_bytes());
    }
}

fn append_log(path: &Path, rng: &mut Rng, bytes: u64) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    let mut w = BufWriter::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open log"),
    );
    let (mut written, mut line) = (0u64, String::new());
    while written < bytes {
        line.clear();
        line.push_str(&format!(
            "2026-11-21T{:02}:{:02}:{:02}.{:03}Z INFO req={:x} ",
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1000),
            rng.next()
        ));
        sentence(rng, 8, &mut line);
        line.push('\n');
        w.write_all(line.as_bytes()).expect("write");
        written += line.len() as u64;
    }
    w.flush().expect("flush");
}

/// About 1% of SQL rows rewritten in place, new uploads, appended logs, a few configs changed.
fn mutate(root: &Path) {
    let mut rng = Rng::new(2027);
    let sql = root.join("db/messages.sql");
    let data = fs::read(&sql).expect("read sql");
    let lines: Vec<usize> = std::iter::once(0)
        .chain(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let rows = lines.len().saturating_sub(1);
    let mut out = Vec::with_capacity(data.len() + data.len() / 50);
    let mut line = String::new();
    for r in 0..rows {
        let (s, e) = (lines[r], lines[r + 1]);
        if rng.below(100) == 0 {
            line.clear();
            sql_row(&mut rng, r as u64, &mut line);
            out.extend_from_slice(line.as_bytes());
        } else {
            out.extend_from_slice(&data[s..e]);
        }
    }
    fs::write(&sql, out).expect("write sql");
    let size: u64 = walk(root)
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    for n in 0..10 {
        let mut buf = vec![0u8; (size / 1000) as usize];
        rng.fill(&mut buf);
        write_file(&root.join(format!("uploads/new/day2-{n}.jpg")), &buf);
    }
    for f in 0..10 {
        append_log(
            &root.join(format!("logs/app-{f}.log")),
            &mut rng,
            size / 2000,
        );
    }
    for i in (0..2000u64).step_by(97) {
        let p = if i.is_multiple_of(2) {
            root.join(format!("config/services/svc-{i:04}.json"))
        } else {
            root.join(format!("config/agents/agent-{i:04}.yaml"))
        };
        let mut f = OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open config");
        f.seek(SeekFrom::End(0)).expect("seek");
        f.write_all(if i.is_multiple_of(2) {
            b"\n"
        } else {
            b"# changed\n"
        })
        .expect("write");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Upsert bodies for the Qdrant benchmark, one line each.
fn qdrant_points(count: u64, dim: usize, every: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut line = String::new();
    for batch in (0..count).collect::<Vec<_>>().chunks(500) {
        line.clear();
        line.push_str("{\"points\":[");
        for (n, i) in batch.iter().enumerate() {
            if n > 0 {
                line.push(',');
            }
            let id = i * every;
            line.push_str(&format!("{{\"id\":{id},\"vector\":["));
            for d in 0..dim {
                if d > 0 {
                    line.push(',');
                }
                let x = (rng.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
                line.push_str(&format!("{x}"));
            }
            let words: Vec<&str> = (0..24)
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            line.push_str(&format!(
                "],\"payload\":{{\"doc\":\"doc-{}\",\"chunk\":{},\"text\":\"{}\"}}}}",
                id / 20,
                id % 20,
                words.join(" ")
            ));
        }
        line.push_str("]}\n");
        if out.write_all(line.as_bytes()).is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    if args.get(1).map(String::as_str) == Some("qdrant-points") {
        let (Some(count), Some(dim)) = (
            args.get(2).and_then(|s| s.parse().ok()),
            args.get(3).and_then(|s| s.parse().ok()),
        ) else {
            eprintln!("usage: bulwark-corpus qdrant-points COUNT DIM [--every K] [--seed S]");
            std::process::exit(2);
        };
        qdrant_points(count, dim, flag("--every", 1), flag("--seed", 1));
        return;
    }
    let usage =
        "usage: bulwark-corpus generate DIR [--scale GB] | mutate DIR | qdrant-points COUNT DIM";
    let (Some(cmd), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let scale: f64 = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let root = PathBuf::from(dir);
    match cmd.as_str() {
        "generate" => generate(&root, (scale * 1e9) as u64),
        "mutate" => mutate(&root),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
