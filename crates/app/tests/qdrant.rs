//! Qdrant connector against a real Qdrant server (see common/qdrant.rs for how one is found).
//! Restored collections are judged by scrolling source and copy through the REST API and
//! comparing every point, and by comparing the collections' configurations.

mod common;

use common::qdrant::{assert_same_points, Qdrant};
use common::{cutting_proxy, free_port, Env};
use engine::connectors::qdrant::collection::Definition;
use engine::connectors::qdrant::verify::{self, Probe};
use serde_json::{json, Value};

/// A repository and a bulwark.toml with the given qdrant sources (`name`, extra TOML).
fn env_for(url: &str, sources: &[(&str, &str)]) -> Env {
    let env = Env::new();
    env.init();
    let config: String = sources
        .iter()
        .map(|(name, extra)| {
            format!("[sources.{name}]\nkind = \"qdrant\"\nurl = \"{url}\"\n{extra}\n")
        })
        .collect();
    std::fs::write(env.path("bulwark.toml"), config).expect("config");
    env
}

fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("collections = [{}]\n", quoted.join(", "))
}

/// Deterministic floats in [-1, 1).
fn floats(seed: u64) -> impl FnMut() -> f32 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn vec_of(r: &mut impl FnMut() -> f32, n: usize) -> Vec<f32> {
    (0..n).map(|_| r()).collect()
}

/// Named dense vectors (cosine, on-disk euclid), a multi-vector, a sparse vector, payload
/// indexes of four kinds, quantization, two shards and an alias.
fn create_docs(q: &Qdrant, n: usize) -> String {
    let mut r = floats(7);
    let points: Vec<Value> = (0..n)
        .map(|i| {
            let id = if i % 3 == 2 {
                json!(format!("{:08x}-1111-4222-8333-{:012x}", i, i * 7919))
            } else {
                json!(i as u64 + 1)
            };
            let mut v = serde_json::Map::new();
            v.insert("text".into(), json!(vec_of(&mut r, 8)));
            if i % 5 != 0 {
                v.insert("image".into(), json!(vec_of(&mut r, 4)));
            }
            let rows: Vec<Vec<f32>> = (0..1 + i % 3).map(|_| vec_of(&mut r, 4)).collect();
            v.insert("colbert".into(), json!(rows));
            let mut idx: Vec<u32> = (0..1 + i % 6)
                .map(|k| (k as u32 * 37 + i as u32 * 11) % 1000)
                .collect();
            idx.sort_unstable();
            idx.dedup();
            let vals: Vec<f32> = idx.iter().map(|_| r().abs() + 0.01).collect();
            v.insert("bm25".into(), json!({ "indices": idx, "values": vals }));
            let payload = if i % 17 == 0 {
                json!({})
            } else {
                let lang = ["en", "de", "fr"][i % 3];
                json!({
                    "lang": lang,
                    "year": 2000 + (i % 25),
                    "title": format!("document number {i} about vectors"),
                    "nested": { "tags": ["a", i.to_string()], "score": i as f64 / 7.0 },
                    "nothing": null
                })
            };
            json!({ "id": id, "vector": v, "payload": payload })
        })
        .collect();
    let name = q.create(
        "docs",
        json!({
            "vectors": {
                "text": { "size": 8, "distance": "Cosine" },
                "image": { "size": 4, "distance": "Euclid", "on_disk": true },
                "colbert": { "size": 4, "distance": "Dot",
                             "multivector_config": { "comparator": "max_sim" } }
            },
            "sparse_vectors": { "bm25": { "modifier": "idf" } },
            "hnsw_config": { "m": 8, "ef_construct": 64 },
            "quantization_config": { "scalar": { "type": "int8", "quantile": 0.99, "always_ram": true } },
            "optimizers_config": { "indexing_threshold": 1000 },
            "shard_number": 2
        }),
        &points,
    );
    for (field, schema) in [
        ("lang", json!("keyword")),
        ("year", json!("integer")),
        ("nested.score", json!("float")),
        (
            "title",
            json!({ "type": "text", "tokenizer": "word", "lowercase": true }),
        ),
    ] {
        q.call(
            "PUT",
            &format!("/collections/{name}/index?wait=true"),
            Some(json!({ "field_name": field, "field_schema": schema })),
        );
    }
    q.call(
        "POST",
        "/collections/aliases",
        Some(json!({ "actions": [{ "create_alias": { "collection_name": name, "alias_name": format!("{name}_live") } }] })),
    );
    name
}

/// One unnamed vector, UUID ids only.
fn create_plain(q: &Qdrant, base: &str, n: usize, dim: usize) -> String {
    let mut r = floats(11);
    let points: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("{:08x}-aaaa-4bbb-8ccc-{:012x}", i * 2654435761 % 0xffff_ffff, i),
                "vector": vec_of(&mut r, dim),
                "payload": { "i": i, "group": i % 100 }
            })
        })
        .collect();
    q.create(
        base,
        json!({ "vectors": { "size": dim, "distance": "Dot" } }),
        &points,
    )
}

/// Asserts every restored collection in a `restore --json` report passed verification.
fn assert_verified(report: &Value) {
    for c in report["report"]["collections"]
        .as_array()
        .expect("collections")
    {
        let v = &c["verify"];
        assert_eq!(v["count_ok"], true, "{c:#}");
        let some = v["points"].as_u64().expect("points") > 0;
        assert_eq!(v["sampled"].as_u64().expect("sampled") > 0, some, "{c:#}");
        assert_eq!(v["mismatches"], json!([]), "{c:#}");
        assert_eq!(v["queries"].as_u64().expect("queries") > 0, some, "{c:#}");
        assert_eq!(v["min_overlap"].as_f64(), Some(1.0), "{c:#}");
    }
}

/// The settings a restore must carry over, as the server reports them.
fn settings(q: &Qdrant, name: &str) -> Value {
    let info = q.info(name);
    let c = &info["config"];
    let schema: serde_json::Map<String, Value> = info["payload_schema"]
        .as_object()
        .expect("schema")
        .iter()
        .map(|(k, v)| (k.clone(), json!([v["data_type"], v["params"]])))
        .collect();
    json!({
        "params": c["params"],
        "hnsw": c["hnsw_config"],
        "quantization": c["quantization_config"],
        "optimizer": c["optimizer_config"],
        "schema": schema,
    })
}

#[test]
#[ignore = "needs a Qdrant server: QDRANT_URL, QDRANT_BIN or `qdrant` on PATH (scripts/test.sh runs these when one is found)"]
fn both_modes_restore_every_kind_of_vector_with_settings_indexes_and_aliases() {
    let q = Qdrant::start();
    let docs = create_docs(&q, 3000);
    let plain = create_plain(&q, "plain", 500, 16);
    let empty = create_plain(&q, "empty", 0, 4);
    let env = env_for(
        &q.url,
        &[(
            "vectors",
            &format!(
                "modes = [\"logical\", \"snapshot\"]\n{}",
                list(&[&docs, &plain, &empty])
            ),
        )],
    );
    let backup = env.ok(&["--json", "backup"]).json();
    assert!(
        backup[0]["summary"]["warnings"].is_null(),
        "no warnings: {backup:#}"
    );
    let snapshots = q.call("GET", &format!("/collections/{docs}/snapshots"), None);
    assert_eq!(snapshots, json!([]), "the server-side snapshot is deleted");

    // Default: every collection, from the server snapshot, as <name>__restored.
    let r = env.ok(&["--json", "restore", "--target", &q.url]).json();
    assert_verified(&r);
    for name in [&docs, &plain, &empty] {
        let copy = format!("{name}__restored");
        assert_same_points(&q.all_points(name), &q.all_points(&copy));
    }
    assert_eq!(
        settings(&q, &docs),
        settings(&q, &format!("{docs}__restored"))
    );

    // From the logical points: the collection is created from its recorded definition.
    let logical = format!("{docs}_logical");
    let args = [
        "--json",
        "restore",
        "--target",
        &q.url,
        "--collection",
        &docs,
        "--mode",
        "logical",
        "--target-collection",
        &logical,
    ];
    let r = env.ok(&args).json();
    assert_verified(&r);
    assert_eq!(r["report"]["collections"][0]["points"], 3000);
    assert_same_points(&q.all_points(&docs), &q.all_points(&logical));
    assert_eq!(settings(&q, &docs), settings(&q, &logical));
    assert_eq!(
        r["report"]["collections"][0]["warnings"][0]
            .as_str()
            .map(|w| w.contains("_live")),
        Some(true),
        "aliases stay with the live collection: {r:#}"
    );

    // An existing target is refused, shown by --dry-run, and replaced only when asked.
    q.call(
        "POST",
        &format!("/collections/{logical}/points/delete?wait=true"),
        Some(json!({ "points": [1, 2, 4] })),
    );
    let refused = env.run(&args);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("--replace"), "{}", refused.stderr);
    assert_eq!(q.count(&logical), 2997, "a refused restore changes nothing");
    let mut dry = args.to_vec();
    dry.extend(["--replace", "--dry-run"]);
    let plan = env.ok(&dry).json();
    assert_eq!(plan["report"]["collections"][0]["replaced"], true);
    assert_eq!(q.count(&logical), 2997, "a dry run changes nothing");
    let mut replace = args.to_vec();
    replace.push("--replace");
    assert_verified(&env.ok(&replace).json());
    assert_eq!(q.count(&logical), 3000);

    // The collection is lost: restored under its own name, its alias comes back too.
    let original = q.all_points(&docs);
    q.call("DELETE", &format!("/collections/{docs}"), None);
    let r = env
        .ok(&[
            "--json",
            "restore",
            "--target",
            &q.url,
            "--collection",
            &docs,
            "--target-collection",
            &docs,
        ])
        .json();
    assert_verified(&r);
    assert_same_points(&original, &q.all_points(&docs));
    let aliases = q.call("GET", &format!("/collections/{docs}/aliases"), None);
    assert_eq!(aliases["aliases"][0]["alias_name"], format!("{docs}_live"));
}

#[test]
#[ignore = "needs a Qdrant server: QDRANT_URL, QDRANT_BIN or `qdrant` on PATH (scripts/test.sh runs these when one is found)"]
fn verification_names_missing_and_altered_points_and_lost_neighbours() {
    let q = Qdrant::start();
    let docs = create_docs(&q, 600);
    let client = q.client();
    let def = Definition::read(client, &docs).expect("definition");
    let fp = Probe::before(client, &def, 20, 5)
        .expect("probe")
        .finish(client)
        .expect("fingerprint");
    assert_eq!(fp.samples.len(), 20);
    assert_eq!(fp.queries.len(), 5);
    assert_eq!(
        fp.changed_samples + fp.changed_queries,
        0,
        "nothing wrote meanwhile"
    );
    let ok = verify::verify(client, &docs, &fp, (600, 600), 1.0).expect("verify");
    assert!(ok.ok(), "{ok:#?}");

    // Lose a sampled point and the best hit of the first search; alter another sampled point.
    let (lost, altered) = (&fp.samples[0].id, &fp.samples[1].id);
    let neighbour = &fp.queries[0].expected[0].id;
    assert_ne!(altered, neighbour, "the test needs them apart");
    q.call(
        "POST",
        &format!("/collections/{docs}/points/delete?wait=true"),
        Some(json!({ "points": [lost, neighbour] })),
    );
    q.call(
        "POST",
        &format!("/collections/{docs}/points/payload?wait=true"),
        Some(json!({ "payload": { "lang": "xx" }, "points": [altered] })),
    );
    let gone = if lost == neighbour { 1 } else { 2 };
    let bad = verify::verify(client, &docs, &fp, (600, 600), 1.0).expect("verify");
    assert!(!bad.ok());
    assert!(!bad.count_ok);
    assert_eq!(bad.points, 600 - gone);
    assert!(
        bad.mismatches.contains(&format!("point {lost} is missing")),
        "{:?}",
        bad.mismatches
    );
    assert!(
        bad.mismatches
            .contains(&format!("point {altered}: payload differs")),
        "{:?}",
        bad.mismatches
    );
    assert!(
        bad.min_overlap < 1.0 && !bad.low_overlap.is_empty(),
        "{bad:#?}"
    );
}

#[test]
#[ignore = "needs a Qdrant server: QDRANT_URL, QDRANT_BIN or `qdrant` on PATH (scripts/test.sh runs these when one is found)"]
fn a_hundred_thousand_points_round_trip_and_an_unchanged_day_costs_little() {
    let q = Qdrant::start();
    let big = create_plain(&q, "big", 100_000, 32);
    let env = env_for(
        &q.url,
        &[
            (
                "big",
                &format!("modes = [\"snapshot\", \"logical\"]\n{}", list(&[&big])),
            ),
            ("daily", &list(&[&big])),
        ],
    );
    env.ok(&["backup", "big"]);
    for mode in ["snapshot", "logical"] {
        let target = format!("{big}_{mode}");
        let r = env
            .ok(&[
                "--json",
                "restore",
                "--source",
                "big",
                "--target",
                &q.url,
                "--mode",
                mode,
                "--target-collection",
                &target,
            ])
            .json();
        assert_verified(&r);
        assert_eq!(q.count(&target), 100_000, "{mode}");
        q.call("DELETE", &format!("/collections/{target}"), None);
    }

    // The points were stored by the first backup already: another day without changes
    // stores only the new fingerprint and definition.
    let unchanged = env.ok(&["--json", "backup", "daily"]).json();
    let summary = &unchanged[0]["summary"];
    let (added, read) = (
        summary["data_added"].as_u64().expect("data_added"),
        summary["bytes"].as_u64().expect("bytes"),
    );
    assert!(read > 15_000_000, "the points were read: {summary}");
    assert!(
        added * 50 < read,
        "an unchanged collection adds {added} of {read} bytes"
    );
}

#[test]
#[ignore = "needs a Qdrant server: QDRANT_URL, QDRANT_BIN or `qdrant` on PATH (scripts/test.sh runs these when one is found)"]
fn a_connection_cut_midway_fails_the_backup_in_both_modes() {
    let q = Qdrant::start();
    let name = create_plain(&q, "cut", 20_000, 32);
    let proxy = cutting_proxy(
        q.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port"),
        1 << 20,
    );
    for mode in ["logical", "snapshot"] {
        let env = env_for(
            &format!("http://127.0.0.1:{proxy}"),
            &[(
                "vectors",
                &format!("modes = [\"{mode}\"]\n{}", list(&[&name])),
            )],
        );
        let r = env.run(&["backup"]);
        assert_ne!(r.code, 0, "{mode}: {}", r.stdout);
        assert!(r.stderr.contains("Qdrant at"), "{mode}: {}", r.stderr);
        let listed = env.ok(&["--json", "snapshots"]).json();
        assert_eq!(listed, json!([]), "{mode}: no snapshot is recorded");
        assert_eq!(
            q.call("GET", &format!("/collections/{name}/snapshots"), None),
            json!([]),
            "{mode}: the server-side snapshot is deleted after the failure"
        );
    }
}

#[test]
#[ignore = "needs a Qdrant server: QDRANT_URL, QDRANT_BIN or `qdrant` on PATH (scripts/test.sh runs these when one is found)"]
fn api_keys_unreachable_servers_and_missing_collections_are_explained() {
    let q = Qdrant::own(Some("s3cret-key"));
    let name = create_plain(&q, "keyed", 50, 4);

    let env = env_for(
        &q.url,
        &[("vectors", "password_env = \"TEST_QDRANT_KEY\"\n")],
    );
    let mut wrong = env;
    wrong.set("TEST_QDRANT_KEY", "not-the-key");
    let r = wrong.run(&["backup"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("API key"), "{}", r.stderr);
    assert!(!r.stderr.contains("not-the-key"), "the key is never shown");

    // Every collection by default; the key from a file.
    let env = env_for(&q.url, &[("vectors", "password_file = \"key\"\n")]);
    std::fs::write(env.path("key"), "s3cret-key\n").expect("key file");
    env.ok(&["backup"]);
    let mut restore = Env {
        dir: env.dir,
        extra: Vec::new(),
        as_uid: None,
    };
    let r = restore.run(&["restore", "--target", &q.url]);
    assert_ne!(r.code, 0, "a restore without the key fails");
    restore.set("QDRANT_API_KEY", "s3cret-key");
    assert_verified(
        &restore
            .ok(&["--json", "restore", "--target", &q.url])
            .json(),
    );
    assert_eq!(q.count(&format!("{name}__restored")), 50);

    let gone = env_for(
        &format!("http://127.0.0.1:{}", free_port()),
        &[("vectors", "")],
    );
    let r = gone.run(&["backup"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("cannot connect"), "{}", r.stderr);

    let mut missing = env_for(&q.url, &[("vectors", &list(&["nope"]))]);
    missing.set("QDRANT_API_KEY", "s3cret-key");
    std::fs::write(
        missing.path("bulwark.toml"),
        format!("[sources.vectors]\nkind = \"qdrant\"\nurl = \"{}\"\npassword_env = \"QDRANT_API_KEY\"\ncollections = [\"nope\"]\n", q.url),
    )
    .expect("config");
    let r = missing.run(&["backup"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("'nope' does not exist"), "{}", r.stderr);

    let bad = Env::new();
    std::fs::write(
        bad.path("bulwark.toml"),
        "[sources.v]\nkind = \"qdrant\"\nurl = \"ftp://x\"\n",
    )
    .expect("config");
    let r = bad.run(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(":3:"), "names the line: {}", r.stderr);
}
