//! `bulwark recover --scenario`: a dry run changes nothing; a whole-stack disaster (PostgreSQL
//! data directory removed, Redis flushed, files and SQLite file deleted) comes back with one
//! command, verified; a target that does not answer stops the plan before anything is
//! touched; a failed step stops the run and a rerun continues after the steps it finished; an
//! interrupted run is recorded as interrupted.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pitr::{
    archiving_server, chown_postgres, insert, ledger, switch_and_wait_archived, whole_stack, LEDGER,
};
use common::redis::Redis;
use common::{digest, free_port, write_sample_tree, Env};

fn sqlite_rows(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .expect("open")
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .expect("count")
}

#[test]
fn a_full_disaster_is_recovered_by_one_command() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    // The recovered cluster goes back where the server's data lived.
    env.append_config(&format!(
        "recover_data_dir = \"{}\"\n",
        pg.data_dir().display()
    ));
    let db = env.path("app.db");
    // Rows 1001..=1600 are written after the backup: only the WAL archive holds them.
    whole_stack(&env, &pg, &redis, 300, 400, 1600);
    let files_before = digest(&env.path("data"));
    let redis_before = redis.digest();

    // Over live data, even with --replace, a running server's data directory is never
    // written over: the plan says so and touches nothing.
    let live = env.run(&[
        "--repo",
        "main",
        "recover",
        "--scenario",
        "full_disaster",
        "--replace",
        "--dry-run",
    ]);
    assert_eq!(live.code, 1, "{}\n{}", live.stdout, live.stderr);
    assert!(
        live.stdout.contains("PROBLEM") && live.stdout.contains("is not empty"),
        "{}",
        live.stdout
    );
    assert_eq!(redis.digest(), redis_before);
    assert_eq!(digest(&env.path("data")), files_before);
    assert_eq!(pg.sql("postgres", LEDGER), ledger(1600));

    // The disaster.
    pg.stop();
    std::fs::remove_dir_all(pg.data_dir()).expect("remove the data directory");
    redis.cli(&["FLUSHALL"]);
    std::fs::remove_dir_all(env.path("data")).expect("remove files");
    std::fs::remove_file(&db).expect("remove sqlite");
    let redis_empty = redis.digest();

    // The dry run plans every step and changes nothing.
    let dry = env.ok(&[
        "--repo",
        "main",
        "recover",
        "--scenario",
        "full_disaster",
        "--dry-run",
    ]);
    assert!(
        dry.stdout.contains("point-in-time recovery") && dry.stdout.contains("live restore"),
        "{}",
        dry.stdout
    );
    assert_eq!(redis.digest(), redis_empty);
    assert!(!env.path("data").exists() && !db.exists() && !pg.data_dir().exists());

    let r = env.ok(&[
        "--repo",
        "main",
        "--json",
        "recover",
        "--scenario",
        "full_disaster",
    ]);
    let out = r.json();
    assert_eq!(out["record"]["result"], "complete", "{out}");
    for step in out["record"]["steps"].as_array().expect("steps") {
        assert_eq!(step["result"], "recovered", "{out}");
    }
    assert_eq!(
        pg.sql("postgres", LEDGER),
        ledger(1600),
        "WAL replayed to its end"
    );
    assert_eq!(redis.digest(), redis_before);
    assert_eq!(digest(&env.path("data")), files_before);
    assert_eq!(sqlite_rows(&db), 400);
}

#[test]
fn a_set_is_recovered_exactly_to_its_restore_point() {
    let env = Env::new();
    let Some(pg) = archiving_server(&env) else {
        return;
    };
    env.append_config(&format!(
        "recover_data_dir = \"{}\"\n",
        pg.data_dir().display()
    ));
    insert(&pg, pg.port, 1, 1000);
    let backup = env.ok(&["--json", "backup"]).json();
    let set = backup[0]["set_id"].as_str().expect("set id").to_string();
    // After the set: in the archive, but not part of the set.
    insert(&pg, pg.port, 1001, 1500);
    switch_and_wait_archived(&pg, pg.port);
    chown_postgres(env.dir.path());
    let snaps = env.ok(&["--json", "snapshots"]).json();
    assert_eq!(
        snaps[0]["facts"]["postgres"]["physical"]["set_point"]["name"],
        format!("bulwark-set-{}", &set[..32]),
        "{snaps}"
    );
    // A drill of the set replays to its point and checks that replay stopped there.
    let drill = env
        .ok(&[
            "--repo",
            "main",
            "--json",
            "drill",
            "pg",
            "--set",
            &set[..8],
        ])
        .json();
    assert_eq!(drill["record"]["result"], "passed", "{drill}");

    pg.stop();
    std::fs::remove_dir_all(pg.data_dir()).expect("remove the data directory");
    let recover = |extra: &[&str]| {
        let mut args = vec![
            "--repo",
            "main",
            "recover",
            "--scenario",
            "database_failure",
            "--set",
            &set[..8],
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };

    // A damaged pack stops the recovery midway: the data directory holds part of the base
    // backup and the marker of an unfinished recovery. The rerun names it and wants
    // --replace; with the pack mended and --replace it clears the directory and recovers.
    let pack = env.largest_pack();
    let good = std::fs::read(&pack).expect("pack");
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x40;
    std::fs::write(&pack, &bad).expect("damage");
    let r = recover(&[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(pg.data_dir().join("bulwark-recovery-unfinished").exists());
    std::fs::write(&pack, &good).expect("mend");
    let r = recover(&[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("did not finish: run again with --replace"),
        "{}",
        r.stdout
    );
    let r = recover(&["--replace"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!pg.data_dir().join("bulwark-recovery-unfinished").exists());
    assert_eq!(
        pg.sql("postgres", LEDGER),
        ledger(1000),
        "stopped at the set"
    );
}

#[test]
fn a_plan_with_a_problem_touches_nothing_and_a_rerun_continues_after_a_failure() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    for i in 0..100 {
        redis.cli(&["SET", &format!("k{i}"), "v"]);
    }
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    let config = |port: u16| {
        format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n\n\
             [sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n\n\
             [scenarios.app]\nsources = [\"cache\", \"uploads\"]\n"
        )
    };
    std::fs::write(env.path("bulwark.toml"), config(redis.port())).expect("config");
    env.init();
    env.ok(&["backup"]);
    let files_before = digest(&env.path("data"));
    let redis_before = redis.digest();
    redis.cli(&["FLUSHALL"]);
    std::fs::remove_dir_all(env.path("data")).expect("remove files");

    // Unknown scenario: the valid ones are listed.
    let r = env.run(&["recover", "--scenario", "nope"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("full_disaster"), "{}", r.stderr);

    // A Redis that does not answer: the plan stops before the files are touched.
    std::fs::write(env.path("bulwark.toml"), config(free_port())).expect("config");
    let r = env.run(&["recover", "--scenario", "app"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing was touched"), "{}", r.stderr);
    assert!(r.stdout.contains("does not answer"), "{}", r.stdout);
    assert!(!env.path("data").exists(), "files were restored anyway");
    std::fs::write(env.path("bulwark.toml"), config(redis.port())).expect("config");

    // A damaged pack fails the files step after the cache was recovered: the run stops.
    let pack = env.largest_pack();
    let good = std::fs::read(&pack).expect("pack");
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x10;
    std::fs::write(&pack, &bad).expect("damage");
    let r = env.run(&["recover", "--scenario", "app"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("cache (redis): recovered and verified"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("uploads (files): FAILED"), "{}", r.stdout);
    assert!(r.stdout.contains("damaged data in pack"), "{}", r.stdout);
    assert_eq!(redis.digest(), redis_before);

    // The pack mended, the same command continues: the cache is not restored again (it now
    // holds keys, which would need --replace), the files are.
    std::fs::write(&pack, &good).expect("mend");
    let r = env.run(&["recover", "--scenario", "app"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("cache (redis): already recovered by an earlier run"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("uploads (files): recovered and verified"),
        "{}",
        r.stdout
    );
    assert_eq!(digest(&env.path("data")), files_before);

    // Done: a new run starts afresh, and the data now in place needs --replace.
    let r = env.run(&["recover", "--scenario", "app", "--dry-run"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("pass --replace"), "{}", r.stdout);
    env.ok(&["recover", "--scenario", "app", "--replace"]);
    assert_eq!(redis.digest(), redis_before);
}

/// The recovery records stored in the repository.
fn recovery_records(env: &Env) -> Vec<serde_json::Value> {
    use engine::repo::Repository;
    use engine::store::{ObjectKind, StorageOptions, Store};
    let store = Store::open(&env.repo(), &StorageOptions::default()).expect("store");
    let repo = Repository::open(store, common::PASSWORD).expect("open");
    repo.store()
        .list(ObjectKind::Recovery)
        .expect("list")
        .iter()
        .map(|o| {
            repo.load_json(ObjectKind::Recovery, &o.name)
                .expect("record")
        })
        .collect()
}

/// Ctrl-C while a step cannot end (the target Redis holds every write with CLIENT PAUSE):
/// after the grace the run is recorded as interrupted, that step interrupted and the next not
/// run, exit 130; the same command then does the interrupted step again and the rest.
#[test]
fn an_interrupted_recovery_is_recorded_as_interrupted_and_a_rerun_finishes_it() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    redis.cli(&["DEBUG", "POPULATE", "2000"]);
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
             [sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n\n\
             [scenarios.app]\nsources = [\"cache\", \"uploads\"]\n",
            redis.port()
        ),
    )
    .expect("config");
    env.init();
    env.ok(&["backup"]);
    let files_before = digest(&env.path("data"));
    let redis_before = redis.digest();
    redis.cli(&["FLUSHALL"]);
    std::fs::remove_dir_all(env.path("data")).expect("remove files");

    redis.cli(&["CLIENT", "PAUSE", "90000", "WRITE"]);
    let child = env
        .command()
        .args(["recover", "--scenario", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bulwark runs");
    // The state file says the cache step has begun.
    let state = env.path("state").join("recover-app.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("cache")) {
        assert!(Instant::now() < deadline, "the recovery never began");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    redis.cli(&["CLIENT", "UNPAUSE"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("recorded as interrupted"), "{stderr}");
    let records = recovery_records(&env);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["result"], "interrupted", "{r}");
    assert_eq!(r["steps"][0]["source"], "cache", "{r}");
    assert_eq!(r["steps"][0]["result"], "interrupted", "{r}");
    assert_eq!(r["steps"][1]["result"], "not_run", "{r}");
    assert!(!env.path("data").exists(), "the files step ran");

    let r = env.run(&["recover", "--scenario", "app", "--replace"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("begun by an earlier run that stopped: done again"),
        "{}",
        r.stdout
    );
    assert_eq!(redis.digest(), redis_before);
    assert_eq!(digest(&env.path("data")), files_before);
    assert_eq!(recovery_records(&env).len(), 2);
}
