//! PostgreSQL servers whose `archive_command` is `bulwark wal-push`, and point-in-time
//! recoveries of them with `restore --pitr --start`.

use std::time::{Duration, Instant};

use super::postgres::{Flavor, PgServer, Restored};
use super::{free_port, Env, Run};

/// A repository, a config with one physical postgres source `pg`, and a server archiving into
/// it. The server runs wal-push as the postgres user, so that user owns the test directory.
pub fn archiving_server(env: &Env) -> Option<PgServer> {
    env.init();
    let archive = format!(
        "archive_mode = on\narchive_command = '{} --config {} wal-push %p'",
        env!("CARGO_BIN_EXE_bulwark"),
        env.path("bulwark.toml").display()
    );
    let pg = PgServer::start_with(Flavor::Debian15, &[&archive])?;
    std::fs::write(env.path("repo-password"), format!("{}\n", super::PASSWORD)).expect("pw");
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[repositories.main]\nurl = \"{}\"\npassword_file = \"repo-password\"\n\n\
             [sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\nmodes = [\"physical\"]\n\
             wal_spool_dir = \"spool\"\narchive_wait_secs = 2\n",
            env.repo(),
            pg.url(),
            pg.password_file().display()
        ),
    )
    .expect("config");
    chown_postgres(env.dir.path());
    pg.sql("postgres", "CREATE TABLE ledger (n int)");
    Some(pg)
}

/// Beside the `pg` source of [`archiving_server`]: a SQLite source `app` (`notes` rows), the
/// Redis source `cache` (`sessions` keys) and a files source `uploads`; backed up once with
/// 1000 ledger rows, then 1001..=`ledger_after` written to the WAL only.
pub fn whole_stack(
    env: &Env,
    pg: &PgServer,
    redis: &super::redis::Redis,
    sessions: u32,
    notes: u32,
    ledger_after: u32,
) {
    for i in 0..sessions {
        redis.cli(&["SET", &format!("session:{i}"), &format!("user {i}")]);
    }
    super::sqlite_notes(&env.path("app.db"), notes);
    super::write_sample_tree(&env.path("data"));
    env.append_config(&format!(
        "\n[sources.app]\nkind = \"sqlite\"\npath = \"app.db\"\n\n\
         [sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
         [sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n",
        redis.port()
    ));
    insert(pg, pg.port, 1, 1000);
    env.ok(&["backup"]);
    insert(pg, pg.port, 1001, ledger_after);
    switch_and_wait_archived(pg, pg.port);
    chown_postgres(env.dir.path());
}

pub fn chown_postgres(path: &std::path::Path) {
    let chown = std::process::Command::new("chown")
        .args(["-R", "postgres"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(chown.success());
}

pub fn insert(pg: &PgServer, port: u16, from: u32, to: u32) {
    pg.sql_at(
        port,
        "postgres",
        &format!("INSERT INTO ledger SELECT generate_series({from}, {to})"),
    );
}

/// "count sum" of the ledger rows 1..=n.
pub fn ledger(n: u64) -> String {
    format!("{n} {}", n * (n + 1) / 2)
}

pub const LEDGER: &str = "SELECT count(*) || ' ' || sum(n) FROM ledger";

/// Closes the current segment and waits until the server on `port` has archived it.
pub fn switch_and_wait_archived(pg: &PgServer, port: u16) {
    pg.sql_at(port, "postgres", "SELECT pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(90);
    while pg.sql_at(
        port,
        "postgres",
        "SELECT last_archived_wal >= pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver",
    ) != "t"
    {
        assert!(
            Instant::now() < deadline,
            "archiving stalled on port {port}; the server's log ends:\n{}",
            pg.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `restore --pitr --start` into a new directory; returns the running cluster and the report.
pub fn recover<'a>(
    env: &Env,
    pg: &'a PgServer,
    name: &str,
    args: &[&str],
) -> (Restored<'a>, serde_json::Value) {
    let (restored, run) = try_recover(env, pg, name, args);
    assert_eq!(run.code, 0, "restore --pitr failed: {}", run.stderr);
    (restored, run.json())
}

/// `restore --pitr --start` into a new directory, whatever its outcome. The cluster, if one
/// was started, is stopped when the returned `Restored` is dropped.
pub fn try_recover<'a>(
    env: &Env,
    pg: &'a PgServer,
    name: &str,
    args: &[&str],
) -> (Restored<'a>, Run) {
    let dir = env.path(name);
    let port = free_port();
    let restored = Restored {
        server: pg,
        dir: dir.clone(),
        port,
    };
    let mut all = vec![
        "--repo".to_string(),
        "main".into(),
        "restore".into(),
        "--pitr".into(),
        "--target".into(),
        dir.to_string_lossy().into_owned(),
        "--start".into(),
        "--port".into(),
        port.to_string(),
        "--json".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    (restored, env.run(&all))
}

pub fn wal_status(env: &Env) -> serde_json::Value {
    env.ok(&["wal", "status", "--json"]).json()
}

pub fn gaps(status: &serde_json::Value) -> usize {
    status["timelines"]
        .as_array()
        .expect("timelines")
        .iter()
        .map(|t| t["gaps"].as_array().map_or(0, Vec::len))
        .sum()
}
