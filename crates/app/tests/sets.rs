//! `bulwark sets` and `bulwark set show`: each backup run's record, complete or partial, with
//! the sources that failed, each source's consistency point and the system it ran on.

mod common;

use common::redis::Redis;
use common::{free_port, write_sample_tree, Env};

#[test]
fn a_set_records_its_sources_points_failures_and_system() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    redis.cli(&["SET", "k", "v"]);
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
             [sources.down]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
             [sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n",
            redis.port(),
            free_port()
        ),
    )
    .expect("config");
    env.init();
    let partial = env.run(&["backup"]);
    assert_eq!(partial.code, 1, "{}", partial.stderr);
    env.ok(&["backup", "cache", "uploads"]);

    let sets = env.ok(&["--json", "sets"]).json();
    let sets = sets.as_array().expect("sets");
    assert_eq!(sets.len(), 2, "{sets:?}");
    let (newest, first) = (&sets[0], &sets[1]);
    assert_eq!(newest["complete"], true, "{newest}");
    assert_eq!(first["complete"], false, "{first}");
    let down = first["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == "down")
        .expect("down");
    assert!(
        down["snapshot"].is_null() && down["error"].is_string(),
        "{first}"
    );
    let text = env.ok(&["sets"]).stdout;
    assert!(
        text.contains("PARTIAL") && text.contains("failed or partial: down"),
        "{text}"
    );

    let id = newest["set_id"].as_str().expect("id");
    let shown = env.ok(&["--json", "set", "show", &id[..8]]).json();
    let cache = shown["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == "cache")
        .expect("cache");
    assert!(
        cache["point"]["offset"].is_u64(),
        "the replication offset: {shown}"
    );
    assert!(cache["point"]["replid"].is_string(), "{shown}");
    let system = &shown["system"];
    assert!(
        !system["os"].as_str().unwrap_or_default().is_empty(),
        "{shown}"
    );
    assert!(
        system["kernel"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Linux"),
        "{shown}"
    );
    let config = env.path("bulwark.toml");
    let hash = blake3::hash(&std::fs::read(&config).expect("config"));
    assert_eq!(
        system["config_files"][config.to_str().expect("utf8")],
        hash.to_hex().as_str(),
        "{shown}"
    );
    let r = env.run(&["set", "show", "ffffffff"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
