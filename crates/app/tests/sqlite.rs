//! SQLite: live databases backed up with the online backup API (also while another
//! connection commits), restored to a file or a directory, sandboxed, and verified by the
//! integrity check plus each table's rows and checksum. Bad input fails clearly.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::Env;
use rusqlite::Connection;

fn configure(env: &Env, db: &str, extra: &str) {
    std::fs::write(
        env.path("bulwark.toml"),
        format!("[sources.app]\nkind = \"sqlite\"\npath = \"{db}\"\n{extra}"),
    )
    .expect("config");
}

/// Every table's rows, in a stable order, as text.
fn dump(path: &Path) -> Vec<String> {
    let db = Connection::open(path).expect("open");
    let mut out = Vec::new();
    for table in ["items", "pairs"] {
        let mut stmt = db
            .prepare(&format!(
                "SELECT quote(a), quote(b), quote(c) FROM {table} ORDER BY 1, 2"
            ))
            .expect("select");
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{table}|{}|{}|{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?
                ))
            })
            .expect("query");
        out.extend(rows.map(|r| r.expect("row")));
    }
    out
}

fn create_sample(path: &Path) {
    let db = Connection::open(path).expect("create");
    db.execute_batch(
        "CREATE TABLE items (a INTEGER PRIMARY KEY, b TEXT, c BLOB);
         CREATE TABLE pairs (a TEXT, b REAL, c TEXT, PRIMARY KEY (a, c)) WITHOUT ROWID;
         CREATE INDEX items_b ON items(b);",
    )
    .expect("schema");
    let tx = db.unchecked_transaction().expect("tx");
    for i in 0..2000i64 {
        tx.execute(
            "INSERT INTO items VALUES (?1, ?2, ?3)",
            rusqlite::params![
                i,
                format!("item {i}"),
                vec![(i % 251) as u8; (i % 97) as usize]
            ],
        )
        .expect("insert");
        tx.execute(
            "INSERT INTO pairs VALUES (?1, ?2, ?3)",
            rusqlite::params![
                format!("k{i}"),
                i as f64 / 7.0,
                if i % 5 == 0 { None } else { Some("v") }.unwrap_or("null")
            ],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
}

#[test]
fn round_trip_to_a_file_a_directory_and_a_sandbox() {
    let env = Env::new();
    let db = env.path("app.db");
    create_sample(&db);
    configure(&env, "app.db", "");
    env.init();
    env.ok(&["backup"]);

    let file = env.path("restored.db");
    let r = env
        .ok(&[
            "--json",
            "restore",
            "--source",
            "app",
            "--target",
            file.to_str().expect("utf8"),
        ])
        .json();
    assert_eq!(r["outcome"]["kind"], "sqlite", "{r}");
    assert_eq!(
        r["outcome"]["verdict"]["checked"], 3,
        "integrity + 2 tables: {r}"
    );
    assert_eq!(
        r["outcome"]["verdict"]["mismatches"],
        serde_json::json!([]),
        "{r}"
    );
    assert_eq!(dump(&file), dump(&db));

    let dir = env.path("into");
    std::fs::create_dir(&dir).expect("dir");
    env.ok(&[
        "restore",
        "--source",
        "app",
        "--target",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(dump(&dir.join("app.db")), dump(&db));

    // An existing file is never overwritten.
    let again = env.run(&[
        "restore",
        "--source",
        "app",
        "--target",
        file.to_str().expect("utf8"),
    ]);
    assert_ne!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);

    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    let s = env
        .ok(&[
            "--json",
            "restore",
            "--source",
            "app",
            "--sandbox",
            "--spool-dir",
            scratch.to_str().expect("utf8"),
        ])
        .json();
    assert_eq!(s["outcome"]["sandbox"], true, "{s}");
    assert_eq!(s["outcome"]["verdict"]["checked"], 3, "{s}");
    assert_eq!(
        std::fs::read_dir(&scratch).expect("scratch").count(),
        0,
        "sandbox left behind"
    );

    // Flags of other kinds are refused by name.
    let flag = env.run(&["restore", "--source", "app", "--target", "x.db", "--flush"]);
    assert_eq!(flag.code, 2, "{}", flag.stderr);
    assert!(
        flag.stderr
            .contains("--flush does not apply to a sqlite snapshot"),
        "{}",
        flag.stderr
    );
}

#[test]
fn a_backup_taken_while_a_writer_commits_is_one_consistent_state() {
    let env = Env::new();
    let db = env.path("live.db");
    {
        let c = Connection::open(&db).expect("create");
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE ledger (n INTEGER);
             CREATE TABLE total (sum INTEGER, count INTEGER);
             INSERT INTO total VALUES (0, 0);",
        )
        .expect("schema");
    }
    configure(&env, "live.db", "");
    env.init();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, db) = (stop.clone(), db.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&db).expect("writer");
            c.busy_timeout(std::time::Duration::from_secs(10))
                .expect("timeout");
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let tx = c.unchecked_transaction().expect("tx");
                for _ in 0..50 {
                    n += 1;
                    tx.execute("INSERT INTO ledger VALUES (?1)", [n])
                        .expect("insert");
                    tx.execute("UPDATE total SET sum = sum + ?1, count = count + 1", [n])
                        .expect("update");
                }
                tx.commit().expect("commit");
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let backups: Vec<String> = (0..3)
        .map(|_| {
            let r = env.ok(&["--json", "backup"]).json();
            r[0]["snapshot"].as_str().expect("id").to_string()
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 0);
    for (i, id) in backups.iter().enumerate() {
        let out = env.path(&format!("copy{i}.db"));
        env.ok(&[
            "restore",
            "--snapshot",
            id,
            "--target",
            out.to_str().expect("utf8"),
        ]);
        let c = Connection::open(&out).expect("open");
        let (sum, count): (i64, i64) = c
            .query_row("SELECT sum, count FROM total", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("total");
        let (ledger_sum, ledger_count): (i64, i64) = c
            .query_row(
                "SELECT coalesce(sum(n), 0), count(*) FROM ledger",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("ledger");
        assert_eq!(
            (sum, count),
            (ledger_sum, ledger_count),
            "backup {id} is torn"
        );
        assert_eq!(count % 50, 0, "a transaction was split: {count}");
    }
}

#[test]
fn a_corrupt_database_is_never_a_complete_backup_and_fails_verification() {
    let env = Env::new();
    let db = env.path("bad.db");
    create_sample(&db);
    // Damage the index's pages (not the tables'): the file opens, but the integrity check
    // finds the index disagreeing with its table.
    let (root, page_size): (i64, i64) = {
        let c = Connection::open(&db).expect("open");
        (
            c.query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'items_b'",
                [],
                |r| r.get(0),
            )
            .expect("root"),
            c.query_row("PRAGMA page_size", [], |r| r.get(0))
                .expect("page size"),
        )
    };
    let mut bytes = std::fs::read(&db).expect("read");
    let page = ((root - 1) * page_size) as usize;
    for b in &mut bytes[page + page_size as usize - 400..page + page_size as usize - 16] {
        if b.is_ascii_digit() {
            *b = b'0' + (*b - b'0' + 3) % 10;
        }
    }
    std::fs::write(&db, bytes).expect("damage");
    configure(&env, "bad.db", "");
    env.init();
    let backup = env.run(&["backup"]);
    assert_eq!(
        backup.code, 4,
        "stored but partial: {}\n{}",
        backup.stdout, backup.stderr
    );
    assert!(
        backup.stdout.contains("integrity_check"),
        "{}",
        backup.stdout
    );

    let out = env.path("restored.db");
    let r = env.run(&[
        "restore",
        "--source",
        "app",
        "--target",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("MISMATCH database"), "{}", r.stdout);

    // Its sandbox fails the same verification and is removed all the same.
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    let s = env.run(&[
        "restore",
        "--sandbox",
        "--spool-dir",
        scratch.to_str().expect("utf8"),
    ]);
    assert_eq!(s.code, 7, "{}\n{}", s.stdout, s.stderr);
    assert!(s.stdout.contains("MISMATCH database"), "{}", s.stdout);
    assert_eq!(
        std::fs::read_dir(&scratch).expect("scratch").count(),
        0,
        "sandbox left behind"
    );
}

#[test]
fn bad_input_fails_clearly_and_writes_no_snapshot() {
    let env = Env::new();
    env.init();
    // A path that does not exist: nothing is created there.
    configure(&env, "nowhere.db", "");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert!(
        !env.path("nowhere.db").exists(),
        "an empty database was created"
    );

    // A file that is not a database.
    std::fs::write(
        env.path("notes.db"),
        "just some text, not SQLite\n".repeat(100),
    )
    .expect("write");
    configure(&env, "notes.db", "");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not a database"), "{}", r.stderr);

    // A database another process holds an exclusive lock on.
    let db = env.path("locked.db");
    create_sample(&db);
    let holder = Connection::open(&db).expect("open");
    holder
        .execute_batch(
            "PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; INSERT INTO items (b) VALUES ('held');",
        )
        .expect("lock");
    configure(&env, "locked.db", "busy_timeout_secs = 1\n");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("locked"), "{}", r.stderr);
    holder.execute_batch("ROLLBACK").expect("release");

    // A key of another kind in the section names the file, line and the kind it belongs to.
    configure(&env, "locked.db", "exclude = [\"x\"]\n");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("bulwark.toml:4") && r.stderr.contains("belongs to files/config"),
        "{}",
        r.stderr
    );

    configure(&env, "locked.db", "");
    let snaps = env.ok(&["snapshots", "--json"]).json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
}

#[test]
fn a_kind_specific_flag_names_the_source_latest_means() {
    let env = Env::new();
    create_sample(&env.path("app.db"));
    common::write_sample_tree(&env.path("data"));
    std::fs::write(
        env.path("bulwark.toml"),
        "[sources.app]\nkind = \"sqlite\"\npath = \"app.db\"\n\n\
         [sources.docs]\nkind = \"files\"\npaths = [\"data\"]\n",
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    // Without a flag, "latest" of two sources is ambiguous.
    let r = env.run(&["restore", "--target", "out"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ambiguous"), "{}", r.stderr);
    // --include is a files flag: only the files source takes it.
    let r = env
        .ok(&["--json", "restore", "--target", "out", "--include", "*.log"])
        .json();
    assert_eq!(r["outcome"]["source"], "docs", "{r}");
}
