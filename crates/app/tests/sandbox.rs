//! Sandboxes: a restore into something throwaway, verified, then removed, whether the
//! verification passed, failed, or the run was interrupted. Real files, SQLite, a real
//! redis-server, a real PostgreSQL cluster and recovery; "removed" is checked by looking at the
//! scratch directory and for processes still running in it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pitr::{archiving_server, chown_postgres, insert, switch_and_wait_archived};
use common::postgres::{Flavor, PgServer};
use common::redis::Redis;
use common::{pseudo_random, write_sample_tree, Env};

/// A repository with one backup of a redis source reading `src`.
fn backed_up_redis(src: &Redis) -> Env {
    let env = Env::new();
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
            src.port()
        ),
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    env
}

/// A shell script standing in for redis-server.
fn executable(path: &Path, script: impl AsRef<[u8]>) {
    std::fs::write(path, script).expect("script");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A process of ours that runs in `dir` (servers run in their data directory).
fn process_in(dir: &Path) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let cwd = std::fs::read_link(p.path().join("cwd")).ok()?;
        cwd.starts_with(dir)
            .then(|| p.file_name().to_string_lossy().parse::<i32>().ok())
            .flatten()
    })
}

/// The scratch directory is empty and no server runs in it.
fn assert_nothing_left(scratch: &Path) {
    assert!(
        entries(scratch).is_empty(),
        "left behind: {:?}",
        entries(scratch)
    );
    if let Some(pid) = process_in(scratch) {
        panic!("a sandbox server (process {pid}) still runs");
    }
}

/// Starts `restore --sandbox` with `extra` arguments, interrupts it (SIGINT) once `ready`
/// holds, and checks that it exits 130 and leaves nothing in `scratch`, no server either.
fn interrupt_sandbox(env: &Env, scratch: &Path, extra: &[&str], ready: impl Fn() -> bool) {
    let child = env
        .command()
        .args(["restore", "--sandbox", "--spool-dir"])
        .arg(scratch)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bulwark runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "the sandbox never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_nothing_left(scratch);
}

/// True once a sandbox directory under `scratch` holds something.
fn sandbox_filled(scratch: &Path) -> bool {
    entries(scratch)
        .iter()
        .any(|d| !entries(&scratch.join(d)).is_empty())
}

#[test]
fn a_files_sandbox_is_verified_item_by_item_and_removed() {
    let env = Env::new();
    let data = env.path("data");
    write_sample_tree(&data);
    env.init();
    env.ok(&["backup", data.to_str().expect("utf8")]);
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    let r = env
        .ok(&[
            "--json",
            "restore",
            "--sandbox",
            "--spool-dir",
            scratch.to_str().expect("utf8"),
        ])
        .json();
    let outcome = &r["outcome"];
    assert_eq!(outcome["sandbox"], true, "{r}");
    assert_eq!(outcome["kind"], "files", "{r}");
    let checked = outcome["verdict"]["checked"].as_u64().expect("checked");
    assert!(checked >= 5, "every item is compared: {r}");
    assert_eq!(
        outcome["verdict"]["mismatches"],
        serde_json::json!([]),
        "{r}"
    );
    assert_nothing_left(&scratch);

    // A byte flipped in the largest pack (file data): a file does not restore as it was
    // backed up, and the sandbox goes all the same.
    let pack = env.largest_pack();
    let mut bytes = std::fs::read(&pack).expect("pack");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&pack, bytes).expect("damage");
    let bad = env.run(&[
        "restore",
        "--sandbox",
        "--spool-dir",
        scratch.to_str().expect("utf8"),
    ]);
    // Exit 4: restored incompletely, the damaged file named.
    assert_eq!(bad.code, 4, "{}\n{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("blob.bin: damaged data in pack"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("could NOT be restored"),
        "{}",
        bad.stderr
    );
    assert_nothing_left(&scratch);
}

#[test]
fn an_interrupted_files_sandbox_is_removed() {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir(&data).expect("data");
    for i in 0..160u64 {
        std::fs::write(data.join(format!("f{i:03}")), pseudo_random(1 << 20, i)).expect("write");
    }
    env.init();
    env.ok(&["backup", data.to_str().expect("utf8")]);
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    // Interrupted once the sandbox holds restored data.
    interrupt_sandbox(&env, &scratch, &[], || sandbox_filled(&scratch));
}

#[test]
fn a_redis_sandbox_that_loads_other_data_fails_verification_and_is_removed() {
    let Some(src) = Redis::start(&[]) else {
        return;
    };
    for i in 0..50 {
        src.cli(&["SET", &format!("key:{i}"), &format!("value {i}")]);
    }
    // Another server's RDB: what a restore path that wrote the wrong bytes would load.
    let other = Redis::start(&[]).expect("second server");
    other.cli(&["SET", "intruder", "x"]);
    other.cli(&["SAVE"]);
    let other_rdb = other.dir.path().join("dump.rdb");

    let mut env = backed_up_redis(&src);
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");

    // A good sandbox first: verified and removed.
    let good = env
        .ok(&[
            "--json",
            "restore",
            "--sandbox",
            "--spool-dir",
            scratch.to_str().expect("utf8"),
        ])
        .json();
    assert_eq!(
        good["outcome"]["verdict"]["mismatches"],
        serde_json::json!([]),
        "{good}"
    );
    assert_eq!(good["outcome"]["items"], 50, "{good}");
    assert_nothing_left(&scratch);

    let wrapper = env.path("redis-server-swapping-rdb");
    executable(
        &wrapper,
        format!(
            "#!/bin/sh\nprev=\"\"\nfor a in \"$@\"; do [ \"$prev\" = \"--dir\" ] && dir=\"$a\"; prev=\"$a\"; done\ncp '{}' \"$dir/dump.rdb\"\nexec redis-server \"$@\"\n",
            other_rdb.display()
        ),
    );
    env.set("BULWARK_REDIS_SERVER", wrapper.to_str().expect("utf8"));
    let bad = env.run(&[
        "restore",
        "--sandbox",
        "--spool-dir",
        scratch.to_str().expect("utf8"),
    ]);
    assert_eq!(bad.code, 7, "{}\n{}", bad.stdout, bad.stderr);
    assert!(bad.stdout.contains("MISMATCH"), "{}", bad.stdout);
    assert!(
        bad.stderr.contains("differs from the backup"),
        "{}",
        bad.stderr
    );
    assert_nothing_left(&scratch);
}

#[test]
fn a_postgres_sandbox_recovers_the_base_backup_and_is_removed() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    insert(&pg, pg.port, 1, 1000);
    env.ok(&["backup"]);
    insert(&pg, pg.port, 1001, 1500);
    switch_and_wait_archived(&pg, pg.port);
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    chown_postgres(env.dir.path());
    let r = env.run(&[
        "--repo",
        "main",
        "--json",
        "restore",
        "--sandbox",
        "--spool-dir",
        scratch.to_str().expect("utf8"),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = r.json();
    assert_eq!(out["outcome"]["sandbox"], true, "{out}");
    assert_eq!(out["outcome"]["verdict"]["checked"], 1, "{out}");
    assert!(
        out["outcome"]["timings"]["ready_secs"].as_f64().is_some(),
        "{out}"
    );
    assert_nothing_left(&scratch);
}

#[test]
fn an_interrupted_redis_sandbox_stops_its_server_and_is_removed() {
    let Some(src) = Redis::start(&[]) else {
        return;
    };
    src.cli(&["DEBUG", "POPULATE", "3000"]);
    let mut env = backed_up_redis(&src);
    // A server that loads slowly (1 ms a key), so the interrupt comes while it loads.
    let wrapper = env.path("slow-redis-server");
    executable(
        &wrapper,
        "#!/bin/sh\nexec redis-server \"$@\" --key-load-delay 1000\n",
    );
    env.set("BULWARK_REDIS_SERVER", wrapper.to_str().expect("utf8"));
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    // Redis renames its process, but it runs in its --dir: found by its working directory.
    // Interrupted while it loads, a moment after it started.
    let started = std::cell::Cell::new(None::<Instant>);
    interrupt_sandbox(&env, &scratch, &[], || {
        if started.get().is_none() && process_in(&scratch).is_some() {
            started.set(Some(Instant::now()));
        }
        started
            .get()
            .is_some_and(|t| t.elapsed() > Duration::from_millis(300))
    });
}

/// A repository with a logical backup of `pg` (two tables) and a scratch directory the
/// sandbox server's user can reach.
fn backed_up_postgres(pg: &PgServer) -> (Env, std::path::PathBuf) {
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql("postgres", "CREATE ROLE reader");
    pg.sql(
        "app",
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 3000) g; \
         CREATE TABLE tags (note int, tag text); ALTER TABLE tags OWNER TO reader; \
         INSERT INTO tags SELECT g, 't' || (g % 7) FROM generate_series(1, 500) g;",
    );
    let env = Env::new();
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n",
            pg.url(),
            pg.password_file().display()
        ),
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    chown_postgres(env.dir.path());
    (env, scratch)
}

/// The server tools of `pg`, with pg_restore replaced by a shell script.
fn tools_with_pg_restore(env: &Env, pg: &PgServer, script: &str) -> std::path::PathBuf {
    let tools = env.path("tools");
    std::fs::create_dir(&tools).expect("tools");
    for tool in std::fs::read_dir(&pg.bin).expect("bin").flatten() {
        if tool.file_name() != "pg_restore" {
            std::os::unix::fs::symlink(tool.path(), tools.join(tool.file_name())).expect("link");
        }
    }
    executable(&tools.join("pg_restore"), script);
    chown_postgres(&tools);
    tools
}

#[test]
fn a_postgres_logical_sandbox_is_verified_in_a_throwaway_cluster_and_removed() {
    let Some(pg) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    let (env, scratch) = backed_up_postgres(&pg);
    let spool = scratch.to_str().expect("utf8");
    let good = env
        .ok(&["--json", "restore", "--sandbox", "--spool-dir", spool])
        .json();
    let outcome = &good["outcome"];
    assert_eq!(outcome["sandbox"], true, "{good}");
    assert_eq!(outcome["unit"], "databases", "{good}");
    assert_eq!(
        outcome["verdict"]["mismatches"],
        serde_json::json!([]),
        "{good}"
    );
    assert!(
        outcome["verdict"]["checked"].as_u64() >= Some(2),
        "both tables of app are checked: {good}"
    );
    assert_nothing_left(&scratch);

    // A pg_restore that loads the schema but no rows: the verdict names the tables.
    let tools = tools_with_pg_restore(
        &env,
        &pg,
        &format!(
            "#!/bin/sh\nexec {} --schema-only \"$@\"\n",
            pg.bin.join("pg_restore").display()
        ),
    );
    let tools = tools.to_str().expect("utf8");
    let bad = env.run(&[
        "restore",
        "--sandbox",
        "--spool-dir",
        spool,
        "--pg-bin-dir",
        tools,
    ]);
    assert_eq!(bad.code, 7, "{}\n{}", bad.stdout, bad.stderr);
    assert!(
        bad.stdout.contains("MISMATCH public.notes"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stderr.contains("differs from the backup"),
        "{}",
        bad.stderr
    );
    assert_nothing_left(&scratch);

    // No server to run: a clear error, nothing left.
    let missing = env.run(&[
        "restore",
        "--sandbox",
        "--spool-dir",
        spool,
        "--pg-bin-dir",
        "/nonexistent",
    ]);
    assert_eq!(missing.code, 2, "{}\n{}", missing.stdout, missing.stderr);
    assert!(missing.stderr.contains("initdb"), "{}", missing.stderr);
    assert_nothing_left(&scratch);
}

#[test]
fn an_interrupted_postgres_sandbox_stops_its_cluster_and_is_removed() {
    let Some(pg) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    let (env, scratch) = backed_up_postgres(&pg);
    // A pg_restore that says it started and then waits for bulwark to go.
    let started = env.path("pg_restore-started");
    let tools = tools_with_pg_restore(
        &env,
        &pg,
        &format!(
            "#!/bin/sh\ntouch '{}'\nwhile kill -0 $PPID 2>/dev/null; do sleep 0.1; done\nexit 1\n",
            started.display()
        ),
    );
    let tools = tools.to_str().expect("utf8");
    interrupt_sandbox(&env, &scratch, &["--pg-bin-dir", tools], || {
        let going = started.exists();
        assert!(
            !going || process_in(&scratch).is_some(),
            "the sandbox cluster runs"
        );
        going
    });
}

#[test]
fn an_interrupted_sqlite_sandbox_is_removed() {
    let env = Env::new();
    let db = env.path("big.db");
    {
        let c = rusqlite::Connection::open(&db).expect("create");
        c.execute_batch("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
            .expect("schema");
        for i in 0..160u64 {
            c.execute(
                "INSERT INTO blobs VALUES (?1, ?2)",
                rusqlite::params![i as i64, pseudo_random(1 << 20, i)],
            )
            .expect("insert");
        }
    }
    std::fs::write(
        env.path("bulwark.toml"),
        "[sources.app]\nkind = \"sqlite\"\npath = \"big.db\"\n",
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).expect("scratch");
    // Interrupted once the sandbox's file is being written.
    interrupt_sandbox(&env, &scratch, &[], || sandbox_filled(&scratch));
}
