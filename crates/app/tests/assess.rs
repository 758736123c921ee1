//! `bulwark assess` and `bulwark scenarios` against a real Redis, real files and a repository:
//! the stack graded against its targets, each finding with what to do, the exit code by grade.

mod common;

use std::time::Duration;

use common::redis::Redis;
use common::{free_port, write_sample_tree, Env};

fn config(redis: &Redis) -> String {
    format!(
        // The disk's free space would grade the files sources by the machine running the test.
        "[sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\nrpo = \"1h\"\n\
         min_free_percent = 0\n\n\
         [sources.logs]\nkind = \"files\"\npaths = [\"data\"]\nrpo = \"5s\"\n\
         min_free_percent = 0\n\n\
         [sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
         [sources.down]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
         [scenarios.app]\nsources = [\"uploads\", \"cache\"]\n",
        redis.port(),
        free_port()
    )
}

fn service<'a>(a: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    a["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name}: {a}"))
}

#[test]
fn assess_grades_sources_against_their_targets() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    redis.cli(&["SET", "k", "v"]);
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    std::fs::write(env.path("bulwark.toml"), config(&redis)).expect("config");
    env.init();
    env.ok(&["backup", "uploads", "cache", "logs"]);
    // Never drilled: the backups are not proven to restore.
    let undrilled = env.run(&["--json", "assess", "--scenario", "app"]);
    assert_eq!(undrilled.code, 8, "{}", undrilled.stdout);
    assert!(
        undrilled
            .stdout
            .contains("bulwark drill --scenario redis_failure"),
        "{}",
        undrilled.stdout
    );
    env.ok(&["drill", "--scenario", "app"]);
    // Never checked: the repository is not proven readable.
    let unchecked = env.run(&["--json", "assess", "--scenario", "app"]);
    assert_eq!(unchecked.code, 8, "{}", unchecked.stdout);
    assert!(
        unchecked.stdout.contains("never checked"),
        "{}",
        unchecked.stdout
    );
    env.ok(&["check"]);

    let healthy = env.ok(&["--json", "assess", "--scenario", "app"]).json();
    assert_eq!(healthy["overall_status"], "healthy", "{healthy}");
    let cache = service(&healthy, "cache");
    assert_eq!(cache["details"]["health"]["role"], "master", "{healthy}");
    assert_eq!(cache["details"]["targets"]["rpo_secs"], 86400, "{healthy}");
    assert_eq!(
        cache["details"]["last_drill"]["result"], "passed",
        "{healthy}"
    );
    assert_eq!(healthy["repository"]["reachable"], true, "{healthy}");
    assert!(
        healthy["repository"]["snapshots"].as_u64() >= Some(3),
        "{healthy}"
    );
    assert_eq!(
        healthy["recommendations"],
        serde_json::json!([]),
        "{healthy}"
    );

    // A check that finds damage makes the repository critical.
    let pack = env.largest_pack();
    let good = std::fs::read(&pack).expect("pack");
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&pack, &bad).expect("damage");
    assert_eq!(env.run(&["check", "--read-data"]).code, 6);
    let damaged = env.run(&["--json", "assess", "--scenario", "app"]);
    assert_eq!(damaged.code, 9, "{}", damaged.stdout);
    let damaged = damaged.json();
    assert_eq!(damaged["repository"]["status"], "critical", "{damaged}");
    assert_eq!(
        damaged["repository"]["last_check"]["ok"], false,
        "{damaged}"
    );
    std::fs::write(&pack, &good).expect("mend");
    env.ok(&["check", "--read-data"]);

    // A backup older than its RPO target: degraded, exit 8, with the way out.
    std::thread::sleep(Duration::from_millis(5500));
    let late = env.run(&["--json", "assess", "logs", "uploads"]);
    assert_eq!(late.code, 8, "{}\n{}", late.stdout, late.stderr);
    let late = late.json();
    assert_eq!(late["overall_status"], "degraded", "{late}");
    assert_eq!(service(&late, "logs")["status"], "degraded", "{late}");
    assert_eq!(service(&late, "uploads")["status"], "healthy", "{late}");
    assert!(
        late["recommendations"][0]
            .as_str()
            .expect("recommendation")
            .contains("bulwark backup logs"),
        "{late}"
    );

    // A Redis that does not answer (and was never backed up): critical, exit 9.
    let down = env.run(&["--json", "assess", "down", "cache"]);
    assert_eq!(down.code, 9, "{}\n{}", down.stdout, down.stderr);
    let down = down.json();
    assert_eq!(down["overall_status"], "critical", "{down}");
    let gone = service(&down, "down");
    assert_eq!(gone["status"], "critical", "{down}");
    assert!(
        gone["findings"][0]["problem"]
            .as_str()
            .expect("problem")
            .contains("unreachable"),
        "{down}"
    );
    assert_eq!(service(&down, "cache")["status"], "healthy", "{down}");
    let text = env.run(&["assess", "down"]).stdout;
    assert!(text.contains("recover --scenario redis_failure"), "{text}");

    // An unreadable repository is a critical finding; the sources are still probed.
    let norepo = env.run(&["--repo", "/nonexistent/repo", "--json", "assess", "cache"]);
    assert_eq!(norepo.code, 9, "{}\n{}", norepo.stdout, norepo.stderr);
    let norepo = norepo.json();
    assert_eq!(norepo["repository"]["reachable"], false, "{norepo}");
    assert_eq!(
        service(&norepo, "cache")["details"]["health"]["reachable"],
        true,
        "{norepo}"
    );

    // Unknown names list the valid ones.
    let r = env.run(&["assess", "--scenario", "nope"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("full_disaster"), "{}", r.stderr);
    let r = env.run(&["assess", "nope"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("uploads"), "{}", r.stderr);
}

#[test]
fn scenarios_list_built_in_and_configured_orders() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let env = Env::new();
    std::fs::write(env.path("bulwark.toml"), config(&redis)).expect("config");
    let all = env.ok(&["--json", "scenarios"]).json();
    let sources = |name: &str| {
        all.as_array()
            .expect("list")
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["sources"].clone())
            .unwrap_or_else(|| panic!("no scenario {name}: {all}"))
    };
    assert_eq!(
        sources("redis_failure"),
        serde_json::json!(["cache", "down"])
    );
    assert_eq!(
        sources("full_disaster"),
        serde_json::json!(["cache", "down", "logs", "uploads"]),
        "caches before files"
    );
    assert_eq!(sources("app"), serde_json::json!(["uploads", "cache"]));
    assert_eq!(sources("vector_failure"), serde_json::json!([]));
}
