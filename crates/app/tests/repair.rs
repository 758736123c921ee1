//! Ways back from damage: a damaged index file affects only the packs it describes and
//! `repair index` rebuilds it from the packs; `repair snapshots` rewrites snapshots that lost
//! data so the rest stays restorable.

mod common;

use std::path::{Path, PathBuf};

use common::{digest, files_under, restored, Env};

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).expect("write");
}

fn tree(env: &Env, name: &str, seed: u64) -> PathBuf {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..5 {
        std::fs::write(
            dir.join(format!("f{i}.bin")),
            common::pseudo_random(300_000, seed * 10 + i),
        )
        .expect("write");
    }
    dir
}

#[test]
fn a_damaged_index_file_spares_other_snapshots_and_repair_index_rebuilds_it() {
    let env = Env::new();
    env.init();
    let a = tree(&env, "a", 1);
    let b = tree(&env, "b", 2);
    env.ok(&["backup", "--name", "a", a.to_str().expect("utf8")]);
    let indexes = files_under(&env.path("repo/index"));
    env.ok(&["backup", "--name", "b", b.to_str().expect("utf8")]);
    let b_index: Vec<PathBuf> = files_under(&env.path("repo/index"))
        .into_iter()
        .filter(|p| !indexes.contains(p))
        .collect();
    assert_eq!(b_index.len(), 1, "{b_index:?}");
    flip(&b_index[0], 60);

    // Snapshot a is untouched by b's index.
    env.ok(&["restore", "--source", "a", "--target", "out-a"]);
    assert_eq!(digest(&restored(&env.path("out-a"), &a)), digest(&a));
    let r = env.run(&["restore", "--source", "b", "--target", "out-b"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let check = env.run(&["check"]);
    assert_eq!(check.code, 6, "{}", check.stdout);
    let name = b_index[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(check.stdout.contains(&name), "{}", check.stdout);

    // Snapshots are not rewritten while an index file hides intact data.
    let early = env.run(&["repair", "snapshots"]);
    assert_eq!(early.code, 6, "{}", early.stderr);
    assert!(
        early.stderr.contains("repair index` first"),
        "{}",
        early.stderr
    );
    let dry = env.ok(&["--json", "repair", "index", "--dry-run"]).json();
    assert_eq!(dry["index_files_damaged"], 1, "{dry}");
    assert!(b_index[0].exists(), "a dry run changed the index");
    let done = env.ok(&["--json", "repair", "index"]).json();
    assert_eq!(
        done["lost_packs"].as_array().map(Vec::len),
        Some(0),
        "{done}"
    );
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "--source", "b", "--target", "out-b2"]);
    assert_eq!(digest(&restored(&env.path("out-b2"), &b)), digest(&b));
}

#[test]
fn repair_snapshots_leaves_out_lost_files_and_keeps_the_rest_restorable() {
    let env = Env::new();
    env.init();
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("victim.bin"), common::pseudo_random(2 << 20, 9)).expect("write");
    std::fs::write(data.join("bystander.txt"), "intact\n".repeat(1000)).expect("write");
    env.ok(&["backup", data.to_str().expect("utf8")]);
    std::fs::write(data.join("later.txt"), "later\n").expect("write");
    env.ok(&["backup", data.to_str().expect("utf8")]);
    let mut packs = files_under(&env.path("repo/data"));
    packs.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let largest = packs.last().expect("a pack").clone();
    let len = std::fs::metadata(&largest).expect("meta").len() as usize;
    flip(&largest, len / 3);

    // Without reading data nothing is missing; reading finds the damage in both snapshots.
    let plain = env
        .ok(&["--json", "repair", "snapshots", "--dry-run"])
        .json();
    assert_eq!(
        plain["repaired"].as_array().map(Vec::len),
        Some(0),
        "{plain}"
    );
    let dry = env.run(&["--json", "repair", "snapshots", "--dry-run", "--read-data"]);
    assert_eq!(dry.code, 6, "{}", dry.stderr);
    let dry = dry.json();
    let found = dry["repaired"].as_array().expect("repaired");
    assert_eq!(found.len(), 2, "{dry}");
    for s in found {
        assert!(
            s["lost"][0]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("victim.bin")),
            "{s}"
        );
        assert!(s["repaired_as"].is_null(), "{s}");
    }
    assert_eq!(
        env.ok(&["--json", "snapshots"])
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let done = env
        .ok(&["--json", "repair", "snapshots", "--read-data", "--forget"])
        .json();
    let snaps = env.ok(&["--json", "snapshots"]).json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps}");
    assert!(
        snaps.as_array().expect("a").iter().all(|s| s["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "repaired"))),
        "{snaps}"
    );
    let newest = done["repaired"][1]["repaired_as"]
        .as_str()
        .expect("id")
        .to_string();
    // The repaired snapshot restores what survived and says what it lacks (exit 4).
    let r = env.run(&["restore", "--snapshot", &newest, "--target", "out"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("victim.bin"), "{}", r.stderr);
    let out = restored(&env.path("out"), &data);
    assert_eq!(
        std::fs::read_to_string(out.join("bystander.txt")).expect("read"),
        "intact\n".repeat(1000)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("later.txt")).expect("read"),
        "later\n"
    );
    assert!(!out.join("victim.bin").exists());
    // With the originals forgotten, prune drops the damaged data and check is clean again.
    env.ok(&["prune", "--exclusive"]);
    env.ok(&["check", "--read-data"]);
}
