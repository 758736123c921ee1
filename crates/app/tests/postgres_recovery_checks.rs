//! Point-in-time recoveries that must not report success on the wrong data: a gap in the WAL
//! archive, a damaged WAL object, a target before the chosen base backup. Real PostgreSQL 15
//! archiving through `bulwark wal-push`; every outcome is checked with exact row counts.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::pitr::{
    archiving_server, chown_postgres, insert, ledger, switch_and_wait_archived, try_recover, LEDGER,
};
use common::postgres::PgServer;
use common::Env;

/// A base backup of rows 1..=1000, then `batches` batches of 500 rows, each alone in its own
/// archived segment. Returns the base backup's snapshot id and each batch's segment.
fn base_and_batches(env: &Env, pg: &PgServer, batches: u32) -> (String, Vec<String>) {
    insert(pg, pg.port, 1, 1000);
    env.ok(&["backup"]);
    let id = env.ok(&["snapshots", "--json"]).json()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut segments = Vec::new();
    for k in 0..batches {
        insert(pg, pg.port, 1001 + k * 500, 1000 + (k + 1) * 500);
        segments.push(pg.sql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())"));
        switch_and_wait_archived(pg, pg.port);
    }
    (id, segments)
}

fn archived(env: &Env, segment: &str) -> PathBuf {
    PathBuf::from(env.repo()).join(format!("wal/pg/{}/{segment}", &segment[..8]))
}

/// Stale or foreign output must not be mistaken for a restored cluster.
fn assert_nothing_laid_out(dir: &std::path::Path) {
    assert!(
        !dir.join("PG_VERSION").exists(),
        "{} was laid out",
        dir.display()
    );
}

#[test]
fn a_gap_refuses_recovery_and_allow_gap_stops_at_it_and_says_so() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    let (id, segments) = base_and_batches(&env, &pg, 4);
    std::fs::remove_file(archived(&env, &segments[2])).expect("remove a segment");

    // `check` finds the missing segment without reading data, and names the base backup.
    let check = env.run(&["check"]);
    assert_eq!(check.code, 6, "{}\n{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains(&segments[2]) && check.stdout.contains(&id[..8]),
        "{}",
        check.stdout
    );

    // restore_command: a segment missing before archived ones is a gap, not the end of WAL.
    let dest = env.path("fetched");
    let fetch = env.run(&["wal-fetch", &segments[2], dest.to_str().expect("utf8")]);
    assert_eq!(fetch.code, 128, "{}", fetch.stderr);
    assert!(fetch.stderr.contains("gap"), "{}", fetch.stderr);
    let fetch = env.run(&[
        "wal-fetch",
        "--allow-gap",
        &segments[2],
        dest.to_str().expect("utf8"),
    ]);
    assert_eq!(fetch.code, 1, "{}", fetch.stderr);
    chown_postgres(env.dir.path());

    // Refused before anything is written, naming the segment; a dry run says the same.
    let dry = env.run(&[
        "--repo",
        "main",
        "restore",
        "--pitr",
        "--dry-run",
        "--target",
        env.path("dry").to_str().expect("utf8"),
    ]);
    assert_eq!(dry.code, 6, "{}", dry.stderr);
    assert!(dry.stderr.contains(&segments[2]), "{}", dry.stderr);
    let (refused, run) = try_recover(&env, &pg, "refused", &[]);
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(run.stderr.contains(&segments[2]), "{}", run.stderr);
    assert_nothing_laid_out(&refused.dir);

    // Asked for, the recovery stops at the gap, and says so (exit 4).
    let (short, run) = try_recover(&env, &pg, "short", &["--allow-gap"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let report = run.json();
    assert_eq!(
        report["report"]["plan"]["stops_at_gap"], segments[1],
        "{report}"
    );
    assert_eq!(short.sql(LEDGER), ledger(2000), "{report}");
}

#[test]
fn a_damaged_wal_object_aborts_recovery_and_check_read_data_names_it() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    let (id, segments) = base_and_batches(&env, &pg, 3);
    let path = archived(&env, &segments[1]);
    let mut bytes = std::fs::read(&path).expect("read object");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0x5a);
    std::fs::write(&path, bytes).expect("damage object");

    let check = env.run(&["check", "--read-data"]);
    assert_eq!(check.code, 6, "{}\n{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains(&segments[1])
            && check.stdout.contains("damaged")
            && check.stdout.contains(&id[..8]),
        "{}",
        check.stdout
    );

    let dest = env.path("fetched");
    let fetch = env.run(&["wal-fetch", &segments[1], dest.to_str().expect("utf8")]);
    assert_eq!(fetch.code, 128, "{}", fetch.stderr);
    assert!(fetch.stderr.contains(&segments[1]), "{}", fetch.stderr);
    chown_postgres(env.dir.path());

    // PostgreSQL aborts recovery instead of ending it at the damaged segment.
    let (_aborted, run) = try_recover(&env, &pg, "aborted", &[]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let aborted = format!("could not restore file \"{}\" from archive", segments[1]);
    assert!(
        run.stderr.contains(&aborted) && run.stderr.contains("authentication failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_target_before_the_chosen_base_backup_is_refused() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    let before = pg.sql("postgres", "SELECT now()");
    let lsn_before = pg.sql("postgres", "SELECT pg_current_wal_lsn()");
    std::thread::sleep(Duration::from_millis(1100));
    let (id, segments) = base_and_batches(&env, &pg, 1);

    for (flag, value) in [("--target-time", &before), ("--target-lsn", &lsn_before)] {
        let (refused, run) = try_recover(&env, &pg, "refused", &["--snapshot", &id, flag, value]);
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(
            run.stderr.contains("before this base backup"),
            "{}",
            run.stderr
        );
        assert_nothing_laid_out(&refused.dir);
    }
    // Without --snapshot no base backup finished before that time.
    let (_, run) = try_recover(&env, &pg, "none", &["--target-time", &before]);
    assert_ne!(run.code, 0, "{}", run.stdout);

    // `wal status`: the age of the newest segment is the whole span since it was archived.
    let newest = archived(&env, &segments[0]);
    let touched = std::process::Command::new("touch")
        .args(["-m", "-d", "2 hours ago"])
        .arg(&newest)
        .status()
        .expect("touch");
    assert!(touched.success());
    let status = env.ok(&["wal", "status", "--json"]).json();
    assert_eq!(status["newest"], segments[0], "{status}");
    let age = status["newest_age_secs"].as_f64().expect("age");
    assert!((7190.0..7300.0).contains(&age), "{status}");
}
