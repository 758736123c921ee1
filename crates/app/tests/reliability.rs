//! Faults: killed backups, flipped bytes, concurrent writers, locks.

mod common;

use std::time::Duration;

use common::{digest, restored, Env};

fn big_tree(env: &Env) -> std::path::PathBuf {
    let data = env.path("data");
    std::fs::create_dir_all(data.join("blobs")).expect("mkdir");
    for i in 0..12 {
        std::fs::write(
            data.join(format!("blobs/{i:02}.bin")),
            common::pseudo_random(6 * 1024 * 1024, i),
        )
        .expect("write");
    }
    for i in 0..200 {
        std::fs::write(
            data.join(format!("small-{i:03}.txt")),
            format!("row {i}\n").repeat(50),
        )
        .expect("write");
    }
    data
}

/// A quiet backup of `data`, running in the background.
fn spawn_backup(env: &Env, data: &std::path::Path) -> std::process::Child {
    env.command()
        .args(["-q", "backup", data.to_str().expect("utf8")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
}

#[test]
fn sigkill_at_any_moment_leaves_a_repository_that_check_accepts() {
    let env = Env::new();
    let data = big_tree(&env);
    env.init();
    for delay_ms in [5u64, 40, 120, 250, 400, 700] {
        let mut child = spawn_backup(&env, &data);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let check = env.run(&["check", "--read-data"]);
        assert_eq!(
            check.code, 0,
            "after kill at {delay_ms} ms:\n{}",
            check.stdout
        );
    }
    // A stale lock from a killed process never blocks the next backup.
    env.ok(&["backup", data.to_str().expect("utf8")]);
    env.ok(&["prune", "--exclusive"]);
    let check = env.ok(&["check", "--read-data"]);
    assert!(
        !check.stdout.contains("not in any index"),
        "prune removed leftovers: {}",
        check.stdout
    );
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));
}

#[test]
fn flipped_byte_is_found_by_check_and_fails_only_the_affected_file() {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(
        data.join("victim.bin"),
        common::pseudo_random(2 * 1024 * 1024, 9),
    )
    .expect("write");
    // A duplicate shares every chunk with the victim: both must be reported and withheld.
    std::fs::write(
        data.join("victim-copy.bin"),
        common::pseudo_random(2 * 1024 * 1024, 9),
    )
    .expect("write");
    std::fs::write(data.join("bystander.txt"), "intact\n".repeat(1000)).expect("write");
    env.init();
    env.ok(&["backup", data.to_str().expect("utf8")]);
    // Flip one byte in the middle of the largest pack (the one holding victim.bin's data).
    let mut packs: Vec<_> = walk_files(&env.path("repo/data"));
    packs.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let pack = packs.last().expect("a pack");
    let mut bytes = std::fs::read(pack).expect("read pack");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x40;
    std::fs::write(pack, bytes).expect("write pack");

    assert_eq!(
        env.run(&["check"]).code,
        0,
        "structure alone cannot see a flipped byte"
    );
    let r = env.run(&["--json", "check", "--read-data"]);
    assert_eq!(r.code, 6, "{}", r.stdout);
    let report = r.json();
    let affected = report["affected"].as_array().expect("affected");
    assert_eq!(affected.len(), 1, "{report}");
    let paths: Vec<&str> = affected[0]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[0].ends_with("victim-copy.bin") && paths[1].ends_with("victim.bin"),
        "{paths:?}"
    );

    let r = env.run(&["restore", "--target", "out"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("victim.bin") && r.stderr.contains("not restored"),
        "{}",
        r.stderr
    );
    let out = restored(&env.path("out"), &data);
    assert_eq!(
        std::fs::read_to_string(out.join("bystander.txt")).expect("restored"),
        "intact\n".repeat(1000)
    );
    assert!(
        !out.join("victim.bin").exists(),
        "a damaged file is not left behind looking restored"
    );
    assert!(
        !out.join("victim-copy.bin").exists(),
        "nor is a file sharing the damaged chunk"
    );
    let staged: Vec<_> = walk_files(&env.path("out"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".bulwark-restore-"))
        .collect();
    assert!(staged.is_empty(), "staging files left behind: {staged:?}");
    assert!(
        r.stderr.contains("2 file(s) could NOT be restored"),
        "{}",
        r.stderr
    );
}

#[test]
fn two_backups_at_once_both_land() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    for (dir, seed) in [(&a, 1u64), (&b, 2)] {
        std::fs::create_dir_all(dir).expect("mkdir");
        for i in 0..4 {
            std::fs::write(
                dir.join(format!("{i}.bin")),
                common::pseudo_random(5 * 1024 * 1024, seed * 100 + i),
            )
            .expect("write");
        }
        // Shared content: both writers may store it; the repository must stay consistent.
        std::fs::write(
            dir.join("shared.bin"),
            common::pseudo_random(3 * 1024 * 1024, 77),
        )
        .expect("write");
    }
    env.init();
    let spawn = |dir: &std::path::Path, name: &str| {
        env.command()
            .args(["-q", "backup", "--name", name, dir.to_str().expect("utf8")])
            .output()
            .expect("run")
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a, "a"));
        let hb = s.spawn(|| spawn(&b, "b"));
        (ha.join().expect("a"), hb.join().expect("b"))
    });
    assert!(
        ra.status.success(),
        "{}",
        String::from_utf8_lossy(&ra.stderr)
    );
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
    assert_eq!(
        env.ok(&["--json", "snapshots"])
            .json()
            .as_array()
            .expect("a")
            .len(),
        2
    );
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "--source", "a", "--target", "out"]);
    env.ok(&["restore", "--source", "b", "--target", "out"]);
    assert_eq!(digest(&a), digest(&restored(&env.path("out"), &a)));
    assert_eq!(digest(&b), digest(&restored(&env.path("out"), &b)));
    env.ok(&["prune", "--max-unused", "0%"]);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn exclusive_operations_wait_for_live_locks_and_ignore_dead_ones() {
    let env = Env::new();
    let data = big_tree(&env);
    env.init();
    // A backup holds a shared lock while it runs; an exclusive prune must refuse with exit 10
    // (a two-phase prune runs beside it: the two-phase tests cover that).
    let mut child = spawn_backup(&env, &data);
    let mut saw_locked = false;
    for _ in 0..100 {
        if std::fs::read_dir(env.path("repo/locks"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
        {
            let r = env.run(&["prune", "--exclusive"]);
            if r.code == 10 {
                assert!(r.stderr.contains("locked by 'backup'"), "{}", r.stderr);
                saw_locked = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.wait().expect("wait").success());
    assert!(saw_locked, "prune ran while a backup held its lock");
    // After the backup, no lock remains and prune proceeds.
    env.ok(&["prune", "--exclusive"]);
}

/// Every file under `dir` (none if it does not exist yet).
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A repository and a directory holding `a.txt` ("first").
fn one_file_repository() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("a.txt"), "first\n").expect("write");
    env.init();
    (env, data)
}

#[test]
fn one_damaged_snapshot_does_not_stop_backups_or_other_restores() {
    let (env, data) = one_file_repository();
    env.ok(&["backup", "--name", "old", data.to_str().expect("utf8")]);
    let snaps = walk_files(&env.path("repo/snapshots"));
    std::fs::write(&snaps[0], b"garbage").expect("damage the manifest");

    let r = env.ok(&[
        "backup",
        "--name",
        "new",
        data.to_str().expect("utf8"),
        "--json",
    ]);
    assert!(
        r.stderr.contains("unreadable snapshot manifest"),
        "{}",
        r.stderr
    );
    let id = r.json()[0]["snapshot"].as_str().expect("id").to_string();
    env.ok(&["restore", "--snapshot", &id, "--target", "out"]);
    assert_eq!(
        std::fs::read_to_string(restored(&env.path("out"), &data).join("a.txt")).expect("read"),
        "first\n"
    );
    let check = env.run(&["check"]);
    assert_eq!(check.code, 6, "{}", check.stdout);
    assert!(
        check.stdout.contains("content does not match its name"),
        "{}",
        check.stdout
    );
    let prune = env.run(&["prune"]);
    assert_eq!(
        prune.code, 6,
        "prune must not guess what the damaged snapshot used: {}",
        prune.stderr
    );
}

/// "latest" never falls back silently to an older snapshot past a damaged manifest that may be
/// the newest; the user can name one, ask for the newest readable one, or forget the damaged
/// manifest by id. A damaged manifest older than the newest readable snapshot is no obstacle.
#[test]
fn latest_refuses_to_pass_over_a_damaged_manifest_that_may_be_newer() {
    let (env, data) = one_file_repository();
    let path = data.to_str().expect("utf8");
    env.ok(&["backup", "--name", "docs", path]);
    std::fs::write(data.join("a.txt"), "second\n").expect("write");
    let newest = env.ok(&["backup", "--name", "docs", path, "--json"]).json()[0]["snapshot"]
        .as_str()
        .expect("id")
        .to_string();
    let manifest = env.path("repo/snapshots").join(&newest);
    let mut bytes = std::fs::read(&manifest).expect("manifest");
    bytes[40] ^= 0x01;
    std::fs::write(&manifest, bytes).expect("flip a bit");

    for args in [
        vec!["restore", "--target", "out"],
        vec!["ls", "latest"],
        vec!["diff", "latest", "latest"],
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, 6, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&newest) && r.stderr.contains("latest-readable"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!env.path("out").exists(), "{args:?} restored something");
    }
    let by_id = env.run(&["restore", "--snapshot", &newest[..12], "--target", "out"]);
    assert_eq!(by_id.code, 6, "{}", by_id.stderr);
    assert!(by_id.stderr.contains("is damaged"), "{}", by_id.stderr);

    // Asked for explicitly, the newest readable snapshot (the first one) is restored.
    env.ok(&[
        "restore",
        "--snapshot",
        "latest-readable",
        "--target",
        "out",
    ]);
    assert_eq!(
        std::fs::read_to_string(restored(&env.path("out"), &data).join("a.txt")).expect("read"),
        "first\n"
    );
    // Retention refuses to judge; forgetting the damaged manifest by id is the way out.
    let policy = env.run(&["forget", "--keep-last", "5"]);
    assert_eq!(policy.code, 6, "{}", policy.stderr);
    env.ok(&["forget", &newest[..12]]);
    assert!(!manifest.exists());
    env.ok(&["restore", "--target", "out2"]);

    // A damaged manifest written well before the newest readable snapshot cannot be newer.
    let older = walk_files(&env.path("repo/snapshots"));
    std::fs::write(&older[0], b"garbage").expect("damage");
    let touched = std::process::Command::new("touch")
        .args(["-m", "-d", "1 hour ago"])
        .arg(&older[0])
        .status()
        .expect("touch");
    assert!(touched.success());
    env.ok(&["backup", "--name", "docs", path]);
    env.ok(&["restore", "--target", "out3"]);
}

/// A damaged repository config or key file is named as such (exit 6), never blamed on the
/// password or shown as a raw storage error; a changed byte anywhere in a key file counts.
#[test]
fn damaged_config_and_key_files_are_named() {
    let mut env = Env::new();
    env.init();
    let config = env.path("repo/config");
    let original = std::fs::read(&config).expect("config");
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x01;
    for (what, bytes) in [
        ("flipped", Some(flipped)),
        ("truncated", Some(original[..original.len() / 2].to_vec())),
        ("empty", Some(Vec::new())),
        ("missing", None),
    ] {
        match bytes {
            Some(b) => std::fs::write(&config, b).expect("write"),
            None => std::fs::remove_file(&config).expect("remove"),
        }
        let r = env.run(&["snapshots"]);
        assert_eq!(r.code, 6, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("repository config"),
            "{what}: {}",
            r.stderr
        );
    }
    std::fs::write(&config, &original).expect("restore config");
    env.ok(&["snapshots"]);

    // Two keys; the first one's label gets a changed byte (its wrapped key is intact).
    let first = walk_files(&env.path("repo/keys"));
    assert_eq!(first.len(), 1);
    env.set("BULWARK_NEW_PASSWORD", "second password");
    env.ok(&["key", "add", "--label", "ops"]);
    let text = std::fs::read_to_string(&first[0]).expect("key file");
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("json");
    let user = format!("\"username\": {}", parsed["username"]);
    assert!(text.contains(&user), "{text}");
    let changed = text.replacen(&user, "\"username\": \"mallory\"", 1);
    std::fs::write(&first[0], changed).expect("damage key file");
    let r = env.run(&["snapshots"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr.contains("damaged") && !r.stderr.contains("wrong password"),
        "{}",
        r.stderr
    );
    // The intact key still opens the repository.
    env.set("BULWARK_PASSWORD", "second password");
    env.ok(&["snapshots"]);
}

fn packs(env: &Env) -> usize {
    walk_files(&env.path("repo/data")).len()
}

/// A backup killed after uploading some packs (and before indexing them) is resumed: the
/// next run verifies those packs and reuses their data instead of uploading it again.
#[test]
fn a_killed_backup_is_resumed_by_reusing_its_verified_packs() {
    let full = Env::new();
    let data = big_tree(&full);
    full.init();
    let uninterrupted = full
        .ok(&["--json", "backup", data.to_str().expect("utf8")])
        .json()[0]["summary"]["stored_added"]
        .as_u64()
        .expect("stored");

    let env = Env::new();
    let data = big_tree(&env);
    env.init();
    let mut child = spawn_backup(&env, &data);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while packs(&env) < 2 {
        assert!(std::time::Instant::now() < deadline, "no pack was uploaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        walk_files(&env.path("repo/snapshots")).is_empty(),
        "the backup finished"
    );

    let resumed = env
        .ok(&["--json", "backup", data.to_str().expect("utf8")])
        .json();
    let s = &resumed[0]["summary"];
    let reused = s["resumed_bytes"].as_u64().unwrap_or(0);
    let stored = s["stored_added"].as_u64().expect("stored");
    assert!(reused > 0, "nothing reused: {s}");
    assert!(
        stored + reused / 2 < uninterrupted,
        "uploaded again what was there: {s}"
    );
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));
}
