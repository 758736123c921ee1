//! `bulwark health`: every kind probed through the same interface, against real servers,
//! with the recovery point each can be brought back to.

mod common;

use common::pitr::{archiving_server, insert, switch_and_wait_archived};
use common::redis::Redis;
use common::{free_port, write_sample_tree, Env};

#[test]
fn files_and_redis_report_reachability_roles_and_recovery_points() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let env = Env::new();
    let data = env.path("data");
    write_sample_tree(&data);
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\nmin_free_percent = 0\n\n\
             [sources.gone]\nkind = \"files\"\npaths = [\"data\", \"missing\"]\n\
             min_free_percent = 100\n\n\
             [sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
             [sources.down]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
            redis.port(),
            free_port()
        ),
    )
    .expect("config");
    env.init();
    env.ok(&["backup", "uploads", "cache"]);

    let ok = env.ok(&["--json", "health", "uploads", "cache"]).json();
    let by = |name: &str| {
        ok.as_array()
            .expect("list")
            .iter()
            .find(|s| s["source"] == name)
            .cloned()
            .expect(name)
    };
    let uploads = by("uploads");
    assert_eq!(uploads["health"]["reachable"], true, "{uploads}");
    assert_eq!(
        uploads["health"]["warnings"],
        serde_json::json!([]),
        "{uploads}"
    );
    assert!(
        uploads["health"]["details"]["free_bytes"].is_object(),
        "{uploads}"
    );
    assert_eq!(uploads["recovery_point"]["via"], "snapshot", "{uploads}");
    assert!(uploads["recovery_point_age_secs"].as_f64().expect("age") < 600.0);
    // The oldest point is the end of the oldest snapshot, and stays so as newer ones come.
    let first = env
        .ok(&["--json", "snapshots", "--source", "uploads"])
        .json()[0]["time"]
        .clone();
    assert_eq!(uploads["oldest_point"], first, "{uploads}");
    env.ok(&["backup", "uploads"]);
    let again = env.ok(&["--json", "health", "uploads"]).json()[0].clone();
    assert_eq!(again["oldest_point"], first, "{again}");
    assert_ne!(
        again["recovery_point"]["snapshot"],
        uploads["recovery_point"]["snapshot"]
    );
    let cache = by("cache");
    assert_eq!(cache["health"]["role"], "master", "{cache}");
    assert!(cache["health"]["version"].as_str().is_some(), "{cache}");
    assert_eq!(
        cache["health"]["details"]["rdb_last_bgsave_status"], "ok",
        "{cache}"
    );
    assert!(cache["recovery_point"]["snapshot"].is_string(), "{cache}");

    // A missing path and a server that does not answer: exit 1, each named.
    let bad = env.run(&["--json", "health", "gone", "down"]);
    assert_eq!(bad.code, 1, "{}\n{}", bad.stdout, bad.stderr);
    let states = bad.json();
    let gone = &states[0];
    assert_eq!(gone["source"], "down", "sorted by name: {states}");
    assert_eq!(gone["health"]["reachable"], false, "{states}");
    assert!(gone["health"]["error"].is_string(), "{states}");
    assert!(
        gone["recovery_point"].is_null() && gone["oldest_point"].is_null(),
        "never backed up: {states}"
    );
    let missing = &states[1];
    assert_eq!(missing["health"]["reachable"], false, "{states}");
    let warnings: Vec<&str> = missing["health"]["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("missing does not exist")),
        "{states}"
    );
    // No filesystem has all of its space free: min_free_percent = 100 always warns.
    assert!(warnings.iter().any(|w| w.contains("free (")), "{states}");
}

#[test]
fn postgres_reports_the_archiver_and_recovers_to_the_newest_archived_wal() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    insert(&pg, pg.port, 1, 100);
    env.ok(&["backup"]);
    let after_base = env.ok(&["--json", "health"]).json();
    let base_point = after_base[0]["recovery_point"]["time"]
        .as_str()
        .expect("point")
        .to_string();
    insert(&pg, pg.port, 101, 200);
    switch_and_wait_archived(&pg, pg.port);
    let h = env.ok(&["--json", "health"]).json();
    let pgstate = &h[0];
    assert_eq!(pgstate["health"]["role"], "primary", "{h}");
    assert!(
        pgstate["health"]["details"]["archived_count"]
            .as_u64()
            .expect("count")
            > 0,
        "{h}"
    );
    assert_eq!(pgstate["health"]["warnings"], serde_json::json!([]), "{h}");
    assert_eq!(pgstate["recovery_point"]["via"], "wal", "{h}");
    let wal_point = pgstate["recovery_point"]["time"]
        .as_str()
        .expect("point")
        .to_string();
    assert!(wal_point > base_point, "{base_point} .. {wal_point}");

    // An unreadable WAL archive: health still answers, the recovery point falls back to the
    // newest snapshot and says why.
    let timeline = std::path::PathBuf::from(env.repo()).join("wal/pg/00000001");
    for segment in std::fs::read_dir(&timeline).expect("archive").flatten() {
        let mut bytes = std::fs::read(segment.path()).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle..middle + 64].fill(0x5a);
        std::fs::write(segment.path(), bytes).expect("damage");
    }
    let h = env.ok(&["--json", "health"]).json();
    assert_eq!(h[0]["recovery_point"]["via"], "snapshot", "{h}");
    // The snapshot's start (the first probe may already have seen its WAL archived).
    let fallback = h[0]["recovery_point"]["time"].as_str().expect("point");
    assert!(
        fallback <= base_point.as_str() && fallback < wal_point.as_str(),
        "{h}"
    );
    assert!(h[0]["recovery_point_error"].is_string(), "{h}");
    let text = env.ok(&["health"]).stdout;
    assert!(
        text.contains("recovery point beyond the newest snapshot is unknown"),
        "{text}"
    );
}
