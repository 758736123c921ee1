//! Physical base backups, the WAL archive and point-in-time recovery against a real
//! PostgreSQL 15 whose `archive_command` is `bulwark wal-push`. Every recovery is started and
//! checked with exact row counts and sums.

mod common;

use std::time::{Duration, Instant};

use common::pitr::{
    archiving_server, gaps, insert, ledger, recover, switch_and_wait_archived, wal_status, LEDGER,
};
use common::Env;

/// Base backup + archived WAL, then point-in-time recovery to a timestamp between two known
/// states and to a named restore point.
#[test]
fn point_in_time_recovery_to_a_timestamp_and_a_named_restore_point() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    insert(&pg, pg.port, 1, 1000);
    env.ok(&["backup"]);
    insert(&pg, pg.port, 1001, 1500);
    let between = pg.sql("postgres", "SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    insert(&pg, pg.port, 1501, 3000);
    pg.sql(
        "postgres",
        "SELECT pg_create_restore_point('before-cleanup')",
    );
    pg.sql("postgres", "DELETE FROM ledger WHERE n % 2 = 0");
    switch_and_wait_archived(&pg, pg.port);
    assert_eq!(gaps(&wal_status(&env)), 0);

    for (n, (flag, value, expected)) in [
        ("--target-time", between.as_str(), ledger(1500)),
        ("--target-name", "before-cleanup", ledger(3000)),
    ]
    .into_iter()
    .enumerate()
    {
        let (server, report) = recover(
            &env,
            &pg,
            &format!("restored{n}"),
            &[flag, value, "--no-archive"],
        );
        assert_eq!(server.sql(LEDGER), expected, "{flag} {value}: {report}");
        assert_eq!(report["report"]["timeline"], 2, "{report}");
    }
}

/// The archive survives a storage outage (PostgreSQL retries, nothing is lost), retention
/// after forgetting the first base backup deletes only WAL no kept base needs and leaves a
/// restorable chain, and a recovery after an earlier recovery follows the new timeline.
#[test]
fn storage_outage_retention_and_recovery_across_timelines() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    insert(&pg, pg.port, 1, 1000);
    env.ok(&["backup"]);
    let first_base = env.ok(&["snapshots", "--json"]).json()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Storage outage: the timeline's directory in the archive stops accepting writes.
    let timeline_dir = std::path::Path::new(&env.repo()).join("wal/pg/00000001");
    let mode = |m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&timeline_dir, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    mode(0o555);
    insert(&pg, pg.port, 1001, 2000);
    pg.sql("postgres", "SELECT pg_switch_wal()");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.sql("postgres", "SELECT failed_count FROM pg_stat_archiver") == "0" {
        assert!(
            Instant::now() < deadline,
            "wal-push never failed during the outage"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A base backup taken meanwhile would be unusable: it gives up instead of waiting forever.
    let failed = env.run(&["backup"]);
    assert!(
        failed.code != 0 && failed.stderr.contains("PostgreSQL cannot archive WAL"),
        "{}",
        failed.stderr
    );
    let snapshots = env.ok(&["snapshots", "--json"]).json();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1), "{snapshots}");
    mode(0o755);
    insert(&pg, pg.port, 2001, 2100);
    switch_and_wait_archived(&pg, pg.port);
    let status = wal_status(&env);
    assert_eq!(
        gaps(&status),
        0,
        "a segment was lost in the outage: {status}"
    );

    insert(&pg, pg.port, 2101, 3000);
    env.ok(&["backup"]);
    insert(&pg, pg.port, 3001, 3500);
    switch_and_wait_archived(&pg, pg.port);

    // Retention: forget the first base backup; prune deletes the WAL only it needed.
    let before = wal_status(&env)["files"].as_u64().expect("files");
    let second = env.ok(&["snapshots", "--json"]).json();
    let start_wal = second[1]["facts"]["postgres"]["physical"]["start_wal"]
        .as_str()
        .unwrap_or_else(|| panic!("second base backup's start: {second}"))
        .to_string();
    env.ok(&["forget", &first_base]);
    let dry = env.ok(&["prune", "--dry-run", "--json"]).json();
    assert_eq!(
        wal_status(&env)["files"].as_u64(),
        Some(before),
        "a dry run deleted WAL"
    );
    let pruned = env.ok(&["prune", "--json"]).json();
    let deleted = pruned["wal"][0]["files_deleted"].as_u64().expect("deleted");
    assert!(deleted > 0, "nothing expired: {pruned}");
    assert_eq!(dry["wal"][0]["files_deleted"], deleted, "{dry}");
    assert_eq!(pruned["wal"][0]["kept_from"], start_wal[8..], "{pruned}");
    let status = wal_status(&env);
    assert_eq!(status["files"].as_u64(), Some(before - deleted), "{status}");
    assert_eq!(status["timelines"][0]["first"], start_wal, "{status}");
    assert_eq!(gaps(&status), 0, "{status}");
    // A second prune finds nothing more to expire.
    let again = env.ok(&["prune", "--json"]).json();
    assert_eq!(again["wal"][0]["files_deleted"], 0, "{again}");

    // A copy carries the WAL its base backup needs (a base without its WAL restores nothing).
    let offsite = env.path("offsite").to_string_lossy().into_owned();
    env.ok(&[
        "--repo",
        &offsite,
        "init",
        "--copy-params-from",
        &env.repo(),
    ]);
    let copied = env.ok(&["--json", "copy", "--to", &offsite]).json();
    assert_eq!(copied["wal"]["files_copied"], status["files"], "{copied}");
    let copied_status = env
        .ok(&["--repo", &offsite, "wal", "status", "--json"])
        .json();
    assert_eq!(
        copied_status["timelines"], status["timelines"],
        "{copied_status}"
    );

    // The chain left is restorable: recover to the newest WAL, keep archiving (timeline 2),
    // and write more on the new timeline.
    let (first, report) = recover(&env, &pg, "recovered-once", &[]);
    assert_eq!(first.sql(LEDGER), ledger(3500), "{report}");
    assert_eq!(report["report"]["timeline"], 2, "{report}");
    insert(&pg, first.port, 3501, 4000);
    switch_and_wait_archived(&pg, first.port);
    drop(first);

    // Recovering the same base again follows the history to timeline 2 and its new rows.
    let (second, report) = recover(&env, &pg, "recovered-twice", &["--no-archive"]);
    assert_eq!(second.sql(LEDGER), ledger(4000), "{report}");
    assert_eq!(report["report"]["timeline"], 3, "{report}");
    drop(second);

    // Asked for, recovery follows the original timeline instead of the newest.
    let (original, report) = recover(
        &env,
        &pg,
        "original-timeline",
        &["--no-archive", "--target-timeline", "1"],
    );
    assert_eq!(original.sql(LEDGER), ledger(3500), "{report}");
    assert_eq!(report["report"]["plan"]["timeline"], 1, "{report}");
    let histories = wal_status(&env)["histories"].clone();
    assert!(
        histories
            .as_array()
            .is_some_and(|h| h.iter().any(|n| n == "00000002.history")),
        "{histories}"
    );
}
