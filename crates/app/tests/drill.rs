//! Restore drills against real servers: the whole stack (PostgreSQL with WAL archiving, SQLite,
//! Redis, files) drilled in recovery order and recorded; a drill fails, naming the object, on
//! a flipped byte in a pack and on a tampered figure recorded at backup time; an interrupted
//! drill removes its sandbox and is recorded as interrupted.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pitr::{archiving_server, chown_postgres, whole_stack};
use common::postgres::{Flavor, PgServer};
use common::redis::Redis;
use common::{write_sample_tree, Env, PASSWORD};

fn scratch(env: &Env) -> std::path::PathBuf {
    let s = env.path("scratch");
    std::fs::create_dir_all(&s).expect("scratch");
    s
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

fn step<'a>(record: &'a serde_json::Value, source: &str) -> &'a serde_json::Value {
    record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["source"] == source)
        .unwrap_or_else(|| panic!("no step for {source}: {record}"))
}

#[test]
fn a_drill_of_the_whole_stack_passes_in_order_and_is_recorded() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    whole_stack(&env, &pg, &redis, 200, 500, 1500);
    let scratch = scratch(&env);

    let report = env.path("drill.html");
    // PostgreSQL fetches WAL through the configured repository (its password file).
    let r = env.ok(&[
        "--repo",
        "main",
        "--json",
        "drill",
        "--scenario",
        "full_disaster",
        "--spool-dir",
        scratch.to_str().expect("utf8"),
        "--html",
        report.to_str().expect("utf8"),
    ]);
    let out = r.json();
    let record = &out["record"];
    assert_eq!(record["result"], "passed", "{out}");
    assert_eq!(record["scenario"], "full_disaster", "{out}");
    let order: Vec<&str> = record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["source"].as_str().expect("source"))
        .collect();
    assert_eq!(
        order,
        ["app", "pg", "cache", "uploads"],
        "databases, cache, files"
    );
    // PostgreSQL was drilled by replaying its WAL: its recovery point is the newest archived
    // segment, seconds old, not the base backup's.
    let pgstep = step(record, "pg");
    assert_eq!(pgstep["verdict"]["checked"], 1, "{out}");
    assert!(pgstep["rpo_secs"].as_f64().expect("rpo") < 60.0, "{out}");
    assert_eq!(pgstep["rpo_target_secs"], 900, "{out}");
    assert_eq!(pgstep["rpo_met"], true, "{out}");
    assert!(
        step(record, "app")["verdict"]["checked"].as_u64() >= Some(2),
        "{out}"
    );
    assert_eq!(step(record, "cache")["items"], 200, "{out}");
    assert!(
        step(record, "uploads")["verdict"]["checked"].as_u64() >= Some(5),
        "{out}"
    );
    for s in record["steps"].as_array().expect("steps") {
        assert!(
            s["rto_secs"].as_f64().is_some() && s["rto_met"] == true,
            "{out}"
        );
    }
    assert!(empty(&scratch), "sandboxes left behind");

    let html = std::fs::read_to_string(&report).expect("report");
    assert!(html.contains("Restore drill: passed"), "{html}");
    for source in ["app", "pg", "cache", "uploads"] {
        assert!(html.contains(&format!("<td>{source}</td>")), "{html}");
    }
    let id = out["id"].as_str().expect("id");
    let listed = env.ok(&["--json", "drills"]).json();
    assert_eq!(listed[0]["id"], id, "{listed}");
    let shown = env.ok(&["drills", &id[..8]]).stdout;
    assert!(shown.contains("cache (redis): passed"), "{shown}");
    let page = env.ok(&["drills", &id[..8], "--html"]).stdout;
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
}

/// Rewrites the newest snapshot of `source` with `edit` applied to its facts (what a tampered
/// or wrong record of the backup looks like to a restore).
fn tamper_facts(env: &Env, source: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    use engine::repo::Repository;
    use engine::store::{ObjectKind, StorageOptions, Store};
    let store = Store::open(&env.repo(), &StorageOptions::default()).expect("store");
    let repo = Repository::open(store, PASSWORD).expect("open");
    let (id, mut snap) = engine::snapshot::list(&repo)
        .expect("list")
        .into_iter()
        .filter(|(_, s)| s.source.name == source)
        .max_by_key(|(_, s)| s.time)
        .expect("a snapshot");
    let mut facts = serde_json::to_value(&snap.facts).expect("facts");
    edit(&mut facts);
    snap.facts = serde_json::from_value(facts).expect("facts back");
    engine::snapshot::save(&repo, &snap).expect("save");
    repo.store()
        .delete(ObjectKind::Snapshot, &id.to_hex())
        .expect("delete");
}

#[test]
fn a_drill_fails_naming_a_damaged_pack_and_a_tampered_figure() {
    let Some(pg) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 2000) g;",
    );
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\n\
             [sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n",
            pg.url(),
            pg.password_file().display()
        ),
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    let scratch = scratch(&env);
    chown_postgres(env.dir.path());
    let spool = scratch.to_str().expect("utf8");
    env.ok(&["drill", "--spool-dir", spool]);

    // The backup's record of app.public.notes says one row more than the dump holds.
    tamper_facts(&env, "pg", |f| {
        let rows = &mut f["postgres"]["databases"]["app"]["tables"]["public.notes"]["rows"];
        *rows = (rows.as_u64().expect("rows") + 1).into();
    });
    let r = env.run(&["--json", "drill", "pg", "--spool-dir", spool]);
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    let out = r.json();
    let pgstep = step(&out["record"], "pg");
    assert_eq!(pgstep["result"], "failed", "{out}");
    assert!(
        pgstep["problems"][0]
            .as_str()
            .expect("problem")
            .contains("MISMATCH table app.public.notes"),
        "{out}"
    );
    assert!(empty(&scratch), "sandbox left behind");

    // A byte flipped in the largest pack (file data): the damaged file and pack are named.
    let pack = env.largest_pack();
    let mut bytes = std::fs::read(&pack).expect("pack");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&pack, bytes).expect("damage");
    let r = env.run(&["drill", "uploads", "--spool-dir", spool]);
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("uploads (files): FAILED") && r.stdout.contains("damaged data in pack"),
        "{}",
        r.stdout
    );
    assert!(empty(&scratch), "sandbox left behind");

    // Both failures are on record, and assess calls the last drill of pg critical.
    let listed = env.ok(&["--json", "drills"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // The records travel with `copy` (of the undamaged snapshots), once.
    let offsite = env.path("offsite").to_string_lossy().into_owned();
    env.ok(&[
        "--repo",
        &offsite,
        "init",
        "--copy-params-from",
        &env.repo(),
    ]);
    for expected in [3, 0] {
        let copied = env
            .ok(&["--json", "copy", "--to", &offsite, "--source", "pg"])
            .json();
        assert_eq!(copied["drills_copied"], expected, "{copied}");
    }
    let there = env.ok(&["--repo", &offsite, "--json", "drills"]).json();
    let records = |v: &serde_json::Value| {
        v.as_array()
            .expect("list")
            .iter()
            .map(|d| d["record"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(records(&there), records(&listed), "the same records");
    let assessed = env.run(&["--json", "assess", "pg"]);
    assert_eq!(assessed.code, 9, "{}", assessed.stdout);
    assert!(
        assessed.stdout.contains("the last drill of pg"),
        "{}",
        assessed.stdout
    );
}

#[test]
fn an_interrupted_drill_removes_its_sandbox_and_is_recorded_as_interrupted() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    redis.cli(&["DEBUG", "POPULATE", "3000"]);
    let mut env = Env::new();
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
            redis.port()
        ),
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    // A server that loads slowly (1 ms a key), so the interrupt comes while it loads.
    let wrapper = env.path("slow-redis-server");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nexec redis-server \"$@\" --key-load-delay 1000\n",
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    env.set("BULWARK_REDIS_SERVER", wrapper.to_str().expect("utf8"));
    let scratch = scratch(&env);
    let child = env
        .command()
        .args(["drill", "--spool-dir"])
        .arg(&scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bulwark runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while empty(&scratch) {
        assert!(Instant::now() < deadline, "the drill never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(empty(&scratch), "sandbox left behind");
    let listed = env.ok(&["--json", "drills"]).json();
    assert_eq!(listed[0]["record"]["result"], "interrupted", "{listed}");
}

/// A repository with one backup of database `rag` of `pg` (a PostgreSQL 18 with pgvector),
/// and a scratch directory for sandboxes.
fn backed_up_rag(pg: &PgServer) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\
             databases = [\"rag\"]\nbin_dir = \"{}\"\n",
            pg.url(),
            pg.password_file().display(),
            pg.bin.display()
        ),
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    let scratch = scratch(&env);
    chown_postgres(env.dir.path());
    (env, scratch)
}

/// pgvector on PostgreSQL 18: the exact nearest neighbours of sampled rows, taken from the dump
/// at backup time, are asked again of the drill's sandbox; a recorded answer the restored
/// table does not give fails the drill, naming the table, the query row and the missing keys.
/// `--verify sample` asks one search per column and counts rows without checksums.
#[test]
fn a_drill_asks_the_backups_vector_searches_again() {
    let Some(pg) = PgServer::start(Flavor::Vector18) else {
        return;
    };
    pg.sql("postgres", "CREATE DATABASE rag");
    pg.sql(
        "rag",
        "CREATE EXTENSION vector; \
         CREATE TABLE chunks (id int PRIMARY KEY, doc text, embedding vector(8)); \
         INSERT INTO chunks SELECT g, 'doc ' || g, \
           (SELECT '[' || string_agg(sin(g * k)::real::text, ',') || ']' FROM generate_series(1, 8) k)::vector \
           FROM generate_series(1, 3000) g; \
         INSERT INTO chunks VALUES (3001, 'no embedding yet', NULL); \
         CREATE TABLE plain (id int PRIMARY KEY, v vector);",
    );
    let (env, scratch) = backed_up_rag(&pg);
    let spool = scratch.to_str().expect("utf8");

    // What the backup recorded: five searches on chunks.embedding (none on the column
    // without a dimension), each query row its own nearest neighbour.
    let mut recorded = serde_json::Value::Null;
    tamper_facts(&env, "pg", |f| {
        recorded = f["postgres"]["databases"]["rag"]["tables"].clone();
    });
    let searches = recorded["public.chunks"]["searches"]
        .as_array()
        .expect("searches");
    assert_eq!(searches.len(), 5, "{recorded}");
    for s in searches {
        assert_eq!(s["expected"].as_array().map(Vec::len), Some(10), "{s}");
        assert_eq!(s["expected"][0]["key"], s["query_key"], "{s}");
    }
    assert!(recorded["public.plain"].get("searches").is_none());
    // The backup's answer is the server's own: exact top-10 of the first query row.
    let top10 = pg.sql(
        "rag",
        "SELECT string_agg(id::text, ',') FROM (SELECT id FROM chunks WHERE embedding IS NOT NULL \
         ORDER BY embedding <-> (SELECT embedding FROM chunks WHERE id = 1) LIMIT 10) t",
    );
    let keys: Vec<&str> = searches[0]["expected"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["key"].as_str().expect("key"))
        .collect();
    assert_eq!(searches[0]["query_key"], "1");
    assert_eq!(keys.join(","), top10);

    let full = env.ok(&["--json", "drill", "--spool-dir", spool]).json();
    let pgstep = step(&full["record"], "pg");
    assert_eq!(pgstep["result"], "passed", "{full}");
    // Two tables and five searches compared.
    assert_eq!(pgstep["verdict"]["checked"], 7, "{full}");
    assert_eq!(full["record"]["sampled"], false);

    let sampled = env
        .ok(&[
            "--json",
            "drill",
            "--verify",
            "sample",
            "--spool-dir",
            spool,
        ])
        .json();
    let pgstep = step(&sampled["record"], "pg");
    assert_eq!(pgstep["result"], "passed", "{sampled}");
    assert_eq!(pgstep["verdict"]["checked"], 3, "{sampled}");
    assert!(
        pgstep["verdict"]["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("sampled verification")),
        "{sampled}"
    );
    assert_eq!(sampled["record"]["sampled"], true);
    assert!(empty(&scratch), "sandbox left behind");

    // The backup's record says row 2 was among row 1's neighbours where another row was.
    tamper_facts(&env, "pg", |f| {
        let hits = &mut f["postgres"]["databases"]["rag"]["tables"]["public.chunks"]["searches"][0]
            ["expected"];
        hits[3]["key"] = "2999".into();
        hits[3]["distance"] = hits[2]["distance"].clone();
    });
    let r = env.run(&["--json", "drill", "--spool-dir", spool]);
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    let out = r.json();
    let pgstep = step(&out["record"], "pg");
    assert_eq!(pgstep["result"], "failed", "{out}");
    let problem = pgstep["problems"][0].as_str().expect("problem");
    assert!(
        problem.contains("MISMATCH search rag.public.chunks")
            && problem.contains("row 1 by embedding")
            && problem.contains("missing 2999"),
        "{out}"
    );
    assert!(empty(&scratch), "sandbox left behind");
}

/// A sandbox server that crashes while it is checked leaves nothing behind. On CPUs without
/// AVX-512 the pgvector of the PostgreSQL 18 wheel dies with SIGILL computing distances of
/// this size (the crash this test was written for: the server then never finished a fast
/// shutdown); elsewhere the drill simply passes. Either way the cluster is stopped and its
/// directory removed.
#[test]
fn a_sandbox_server_that_crashes_is_stopped_and_removed() {
    let Some(pg) = PgServer::start(Flavor::Vector18) else {
        return;
    };
    pg.sql("postgres", "CREATE DATABASE rag");
    pg.sql(
        "rag",
        "CREATE EXTENSION vector; \
         CREATE TABLE chunks (id int PRIMARY KEY, embedding vector(64)); \
         INSERT INTO chunks SELECT g, \
           (SELECT '[' || string_agg(sin(g * k)::real::text, ',') || ']' FROM generate_series(1, 64) k)::vector \
           FROM generate_series(1, 200) g;",
    );
    let (env, scratch) = backed_up_rag(&pg);
    let r = env.run(&["drill", "--spool-dir", scratch.to_str().expect("utf8")]);
    let crashed = r.stdout.contains("server closed the connection");
    assert!(
        r.code == 0 || (r.code == 7 && crashed),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(empty(&scratch), "sandbox left behind");
    let running = std::process::Command::new("pgrep")
        .args(["-f", scratch.to_str().expect("utf8")])
        .output()
        .expect("pgrep");
    assert!(
        running.stdout.is_empty(),
        "still running: {}",
        String::from_utf8_lossy(&running.stdout)
    );
}

/// Every kind that runs here fails its drill, naming what is wrong, on a byte flipped in one of
/// its own packs and on a figure recorded at backup time that the restored data contradicts;
/// with the pack mended and the figure true again, it passes.
#[test]
fn every_kind_fails_on_its_damaged_pack_and_on_a_tampered_figure() {
    let Some(pg) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 5000) g;",
    );
    redis.cli(&["DEBUG", "POPULATE", "5000", "session", "64"]);
    let env = Env::new();
    common::sqlite_notes(&env.path("app.db"), 5000);
    write_sample_tree(&env.path("data"));
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\
             databases = [\"app\"]\n\n\
             [sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
             [sources.notes]\nkind = \"sqlite\"\npath = \"app.db\"\n\n\
             [sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n",
            pg.url(),
            pg.password_file().display(),
            redis.port()
        ),
    )
    .expect("config");
    env.init();
    // One backup per source, so each source's data sits in packs of its own.
    let mut packs_of = Vec::new();
    for source in ["pg", "cache", "notes", "uploads"] {
        let before = common::files_under(&env.path("repo/data"));
        env.ok(&["backup", source]);
        let own: Vec<_> = common::files_under(&env.path("repo/data"))
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert!(!own.is_empty(), "{source} wrote no pack");
        packs_of.push((source, own));
    }
    let scratch = scratch(&env);
    chown_postgres(env.dir.path());
    let spool = scratch.to_str().expect("utf8");
    let drill = |source: &str| {
        let r = env.run(&["--json", "drill", source, "--spool-dir", spool]);
        assert!(empty(&scratch), "{source}: sandbox left behind");
        let out = r.json();
        let s = step(&out["record"], source).clone();
        (r.code, s)
    };

    // Files are left out here: their damaged data pack is named by the test above, and a
    // damaged item list is reported without its pack's name (NOTES.md).
    for (source, packs) in packs_of.iter().filter(|(s, _)| *s != "uploads") {
        let (code, s) = drill(source);
        assert_eq!((code, &s["result"]), (0, &"passed".into()), "{s}");
        // A byte flipped in the middle of each of the source's packs.
        let good: Vec<Vec<u8>> = packs
            .iter()
            .map(|p| std::fs::read(p).expect("pack"))
            .collect();
        for (p, bytes) in packs.iter().zip(&good) {
            let mut bad = bytes.clone();
            let middle = bad.len() / 2;
            bad[middle] ^= 0x08;
            std::fs::write(p, bad).expect("damage");
        }
        let (code, s) = drill(source);
        assert_eq!((code, &s["result"]), (7, &"failed".into()), "{source}: {s}");
        let named = packs.iter().any(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            s["problems"].to_string().contains(&name[..16])
        });
        assert!(named, "{source}: the damaged pack is not named: {s}");
        for (p, bytes) in packs.iter().zip(&good) {
            std::fs::write(p, bytes).expect("mend");
        }
    }

    // Figures the restored data contradicts, one per kind that records figures.
    type Tamper = (&'static str, fn(&mut serde_json::Value), &'static str);
    let tampered: [Tamper; 3] = [
        (
            "pg",
            |f| {
                let rows = &mut f["postgres"]["databases"]["app"]["tables"]["public.notes"]["rows"];
                *rows = (rows.as_u64().expect("rows") - 1).into();
            },
            "public.notes",
        ),
        (
            "cache",
            |f| {
                let keys = &mut f["redis"]["census"]["databases"]["0"]["keys"];
                *keys = (keys.as_u64().expect("keys") + 3).into();
            },
            "key(s)",
        ),
        (
            "notes",
            |f| {
                let rows = &mut f["sqlite"]["tables"]["notes"]["rows"];
                *rows = (rows.as_u64().expect("rows") + 1).into();
            },
            "notes",
        ),
    ];
    for (source, edit, named) in tampered {
        tamper_facts(&env, source, edit);
        let (code, s) = drill(source);
        assert_eq!((code, &s["result"]), (7, &"failed".into()), "{source}: {s}");
        let problems = s["problems"].to_string();
        assert!(
            problems.contains("MISMATCH") && problems.contains(named),
            "{source}: {s}"
        );
    }
}
