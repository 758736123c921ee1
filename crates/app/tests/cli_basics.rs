//! End-to-end: the real binary on a local repository.

mod common;

use common::{digest, restored, write_sample_tree, Env};

#[test]
fn backup_restore_round_trip_preserves_content_and_metadata() {
    let env = Env::new();
    let data = env.path("data");
    write_sample_tree(&data);
    env.init();
    let out = env
        .ok(&["--json", "backup", data.to_str().expect("utf8")])
        .json();
    let summary = &out[0]["summary"];
    assert_eq!(summary["files"], 5);
    assert_eq!(summary["partial"], false);
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));
    assert_eq!(env.ok(&["check", "--read-data"]).code, 0);
    // `ls` shows what the snapshot holds, one JSON object per line with --json.
    let listing = env.ok(&["--json", "ls", "--include", "*.txt"]).stdout;
    let names: Vec<String> = listing
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json line")["path"]
                .as_str()
                .expect("path")
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names
        .iter()
        .any(|n| n.ends_with("uploads/2026/11/report.txt")));
    let human = env.ok(&["ls"]).stdout;
    assert!(
        human.contains("latest-report -> uploads/2026/11/report.txt"),
        "{human}"
    );
}

#[test]
fn second_backup_reuses_unchanged_files_and_stores_only_changes() {
    let env = Env::new();
    let data = env.path("data");
    write_sample_tree(&data);
    env.init();
    env.ok(&["backup", data.to_str().expect("utf8")]);
    std::fs::write(data.join("logs/app.log"), "rotated\n").expect("write");
    std::fs::write(data.join("new.txt"), "hello\n").expect("write");
    let out = env
        .ok(&["--json", "backup", data.to_str().expect("utf8")])
        .json();
    let s = &out[0]["summary"];
    assert_eq!(s["files_unchanged"], 4, "{s}");
    assert_eq!(s["files_changed"], 1, "{s}");
    assert_eq!(s["files_new"], 1, "{s}");
    assert!(
        s["bytes_read"].as_u64().expect("n") < 100,
        "only the two small files were read: {s}"
    );
    let diff = env.ok(&["--json", "snapshots"]).json();
    let (a, b) = (
        diff[0]["id"].as_str().expect("id"),
        diff[1]["id"].as_str().expect("id"),
    );
    let changes = env.ok(&["--json", "diff", a, b]).json();
    let paths: Vec<String> = changes
        .as_array()
        .expect("array")
        .iter()
        .filter(|c| c["kind"] != "metadata")
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap_or(""),
                c["path"].as_str().unwrap_or("")
            )
        })
        .collect();
    let base = data.strip_prefix("/").expect("abs").display().to_string();
    assert_eq!(
        paths,
        vec![
            format!("modified {base}/logs/app.log"),
            format!("added {base}/new.txt")
        ]
    );
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));
}

#[test]
fn restore_include_and_dry_run() {
    let env = Env::new();
    let data = env.path("data");
    write_sample_tree(&data);
    env.init();
    env.ok(&["backup", data.to_str().expect("utf8")]);
    let dry = env
        .ok(&["--json", "restore", "--target", "dry", "--dry-run"])
        .json();
    assert_eq!(dry["report"]["files"], 5);
    assert!(!env.path("dry").exists(), "dry run writes nothing");
    env.ok(&["restore", "--target", "part", "--include", "*.log"]);
    let got = restored(&env.path("part"), &data);
    assert!(got.join("logs/app.log").exists());
    assert!(!got.join("secret.env").exists());
}

#[test]
fn wrong_password_and_missing_repository_have_their_own_exit_codes() {
    let mut env = Env::new();
    // A mistyped or unmounted path is not created by any command but init.
    for args in [
        &["snapshots"][..],
        &["backup", "."],
        &["check"],
        &["unlock"],
    ] {
        let r = env.run(args);
        assert_eq!(r.code, 5, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
        assert!(
            !env.path("repo").exists(),
            "{args:?} created the repository path"
        );
    }
    let file = env.path("a-file");
    std::fs::write(&file, b"x").expect("file");
    let r = env.run(&["--repo", file.to_str().expect("utf8"), "snapshots"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("not a directory"), "{}", r.stderr);
    env.init();
    env.set("BULWARK_PASSWORD", "not the password");
    let r = env.run(&["snapshots"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("wrong password"), "{}", r.stderr);
    assert!(!r.stderr.contains(common::PASSWORD));
}

#[test]
fn keys_add_list_remove_and_passwd() {
    let mut env = Env::new();
    env.init();
    env.set("BULWARK_NEW_PASSWORD", "second password");
    env.ok(&["key", "add", "--label", "ops"]);
    let keys = env.ok(&["--json", "key", "list"]).json();
    assert_eq!(keys.as_array().expect("array").len(), 2);
    let other = keys
        .as_array()
        .expect("a")
        .iter()
        .find(|k| k["current"] == false)
        .expect("other key");
    let id = other["id"].as_str().expect("id").to_string();
    // The second password opens the repository too.
    let mut second = Env {
        dir: tempfile::tempdir().expect("tmp"),
        extra: env.extra.clone(),
        as_uid: None,
    };
    second.set("BULWARK_REPOSITORY", &env.repo());
    second.set("BULWARK_PASSWORD", "second password");
    second.ok(&["snapshots"]);
    env.ok(&["key", "remove", &id[..8]]);
    assert_eq!(second.run(&["snapshots"]).code, 3);
    env.set("BULWARK_NEW_PASSWORD", "third password");
    env.ok(&["key", "passwd"]);
    assert_eq!(
        env.run(&["snapshots"]).code,
        3,
        "old password no longer works"
    );
    env.set("BULWARK_PASSWORD", "third password");
    env.ok(&["snapshots"]);
}

#[test]
fn forget_policy_dry_run_then_prune_keeps_restorable_data() {
    let env = Env::new();
    let data = env.path("data");
    write_sample_tree(&data);
    env.init();
    for i in 0..4 {
        std::fs::write(data.join("counter.txt"), format!("{i}\n").repeat(100_000)).expect("write");
        env.ok(&["backup", data.to_str().expect("utf8")]);
    }
    let before = std::fs::read_dir(env.path("repo/snapshots"))
        .expect("dir")
        .count();
    let dry = env
        .ok(&["--json", "forget", "--keep-last", "2", "--dry-run"])
        .json();
    let would = dry["decisions"]
        .as_array()
        .expect("a")
        .iter()
        .filter(|d| d["keep"] == false)
        .count();
    assert_eq!(would, 2);
    assert_eq!(
        std::fs::read_dir(env.path("repo/snapshots"))
            .expect("dir")
            .count(),
        before,
        "dry run deletes nothing"
    );
    // Every pack is read, whichever of the backups' index files lists it.
    let index_files = std::fs::read_dir(env.path("repo/index"))
        .expect("dir")
        .count();
    assert!(index_files > 1, "{index_files} index file(s)");
    let full = env.ok(&["--json", "check", "--read-data"]).json();
    assert_eq!(full["packs_read"], full["packs"], "{full}");
    env.ok(&["forget", "--keep-last", "2"]);
    assert_eq!(
        env.ok(&["--json", "snapshots"])
            .json()
            .as_array()
            .expect("a")
            .len(),
        2
    );
    // Two phases: the first prune marks what the forgotten snapshots alone used, frees
    // nothing, and the data stays readable; once the mark is older than the grace period (0 s
    // here) and no backup that could use it runs, the next prune deletes it.
    let marked = env.ok(&["--json", "prune", "--max-unused", "0%"]).json();
    assert_eq!(marked["bytes_freed"], 0, "{marked}");
    assert!(marked["packs_marked"].as_u64().expect("n") > 0, "{marked}");
    let pending = env.ok(&["--json", "maintenance"]).json();
    assert_eq!(
        pending["marks"].as_array().expect("marks").len(),
        1,
        "{pending}"
    );
    let waiting = env.ok(&["--json", "prune", "--max-unused", "0%"]).json();
    assert_eq!(
        waiting["packs_pending"], marked["packs_marked"],
        "{waiting}"
    );
    assert_eq!(waiting["bytes_freed"], 0, "{waiting}");
    env.ok(&["check", "--read-data"]);
    let pruned = env
        .ok(&["--json", "prune", "--max-unused", "0%", "--grace", "0s"])
        .json();
    assert_eq!(pruned["packs_deleted"], marked["packs_marked"], "{pruned}");
    assert!(pruned["bytes_freed"].as_u64().expect("n") > 0, "{pruned}");
    let none = env.ok(&["--json", "maintenance"]).json();
    assert!(
        none["marks"].as_array().expect("marks").is_empty(),
        "{none}"
    );
    // Nothing unused is left: a second prune, even at 0%, rewrites nothing.
    let again = env.ok(&["--json", "prune", "--max-unused", "0%"]).json();
    assert_eq!(again["packs_repacked"], 0, "{again}");
    assert_eq!(again["bytes_freed"], 0, "{again}");
    let check = env.run(&["check", "--read-data"]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    let subset = env
        .ok(&["--json", "check", "--read-data-subset", "50%"])
        .json();
    let (read, packs) = (
        subset["packs_read"].as_u64().expect("n"),
        subset["packs"].as_u64().expect("n"),
    );
    assert!(
        read >= 1 && read < packs.max(2),
        "read {read} of {packs} packs"
    );
    assert_eq!(env.run(&["check", "--read-data-subset", "0%"]).code, 2);
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));
    let stats = env.ok(&["--json", "stats"]).json();
    assert!(
        stats["dedup_ratio"].as_f64().expect("f") > 1.5,
        "two near-identical snapshots dedup: {stats}"
    );
}

#[test]
fn stdin_and_command_streams() {
    let env = Env::new();
    env.init();
    let mut child = env
        .command()
        .args([
            "backup",
            "--stdin",
            "--stdin-filename",
            "dump.sql",
            "--name",
            "db",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all("INSERT INTO t VALUES (1);\n".repeat(10000).as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());
    env.ok(&[
        "backup",
        "--stdin-from-command",
        "seq 1 100000",
        "--stdin-filename",
        "seq.txt",
        "--name",
        "seq",
    ]);
    env.ok(&["restore", "--source", "seq", "--target", "out"]);
    let expected: String = (1..=100000).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(env.path("out/seq.txt")).expect("restored"),
        expected
    );
    env.ok(&["restore", "--source", "db", "--target", "out"]);
    assert_eq!(
        std::fs::read(env.path("out/dump.sql"))
            .expect("restored")
            .len(),
        260000
    );
}

#[test]
fn a_command_that_dies_midway_fails_the_backup_and_writes_no_snapshot() {
    let env = Env::new();
    env.init();
    let r = env.run(&[
        "backup",
        "--stdin-from-command",
        "seq 1 200000; echo dump broke >&2; exit 3",
        "--name",
        "db",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("exited with status 3") && r.stderr.contains("dump broke"),
        "{}",
        r.stderr
    );
    let r = env.run(&[
        "backup",
        "--stdin-from-command",
        "head -c 5000000 /dev/zero; kill -9 $$",
        "--name",
        "db",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("killed by a signal"), "{}", r.stderr);
    assert_eq!(
        env.ok(&["--json", "snapshots"])
            .json()
            .as_array()
            .expect("a")
            .len(),
        0
    );
    assert_eq!(env.run(&["check"]).code, 0);
}

#[test]
fn unreadable_file_makes_a_partial_snapshot_and_exit_4() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::new();
    // Root reads everything: run bulwark as an unprivileged user to meet a permission error.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        env.as_uid = Some(65534);
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
    }
    env.init();
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("ok.txt"), "fine").expect("write");
    std::fs::write(data.join("locked.txt"), "secret").expect("write");
    std::fs::set_permissions(
        data.join("locked.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    let r = env.run(&["--json", "backup", data.to_str().expect("utf8")]);
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    let s = &r.json()[0]["summary"];
    assert_eq!(s["partial"], true);
    assert!(
        s["errors"][0]["path"]
            .as_str()
            .expect("path")
            .ends_with("locked.txt"),
        "{s}"
    );
    assert_eq!(s["files"], 1, "the readable file is in the snapshot");
    let list = env.ok(&["snapshots"]).stdout;
    assert!(list.contains("(partial)"), "{list}");
    // Restoring it says what was never backed up (exit 4), rather than passing for complete.
    let out = env.path("out");
    let r = env.run(&["restore", "--target", out.to_str().expect("utf8")]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("partial") && r.stderr.contains("locked.txt"),
        "{}",
        r.stderr
    );
    // A path that does not exist is a clear error, not a panic.
    let r = env.run(&["backup", data.join("missing").to_str().expect("utf8")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("missing") && r.stderr.contains("No such file"),
        "{}",
        r.stderr
    );
}

/// Every path under `dir`, relative to it, files and directories alike.
fn tree_paths(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(dir).expect("under").display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// A restore of literal paths seeks to them in the item list instead of reading it whole:
/// the first, a middle and the last file, a directory, a name that sorts between siblings
/// (`a` against `a-b` and `a.txt`), overlapping targets and a missing path each bring back
/// exactly what a full scan with the same filter does.
#[test]
fn restoring_literal_paths_finds_exactly_them_among_many_files() {
    let env = Env::new();
    let data = env.path("data");
    for d in 0..60 {
        let dir = data.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..250 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}")).expect("write");
        }
    }
    for p in ["a/b/c.txt", "a/z.txt", "a-b/x.txt", "a.txt", "b.txt"] {
        let path = data.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, p).expect("write");
    }
    env.init();
    env.ok(&["backup", data.to_str().expect("utf8")]);
    let stored = data
        .strip_prefix("/")
        .expect("absolute")
        .display()
        .to_string();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("first", vec!["a/b/c.txt"]),
        ("middle", vec!["d031/f128.txt"]),
        ("last", vec!["d059/f249.txt"]),
        ("directory", vec!["d017"]),
        ("between siblings", vec!["a"]),
        (
            "overlapping",
            vec!["d002", "d002/f007.txt", "d040/f000.txt"],
        ),
        ("missing", vec!["d031/nope.txt", "zzz/nope"]),
        ("glob under a directory", vec!["d045/f1*"]),
    ];
    for (i, (what, wanted)) in cases.iter().enumerate() {
        let mut args = vec!["--json".to_string(), "restore".into(), "--target".into()];
        args.push(format!("seek-{i}"));
        for w in wanted {
            args.extend(["--include".into(), format!("/{stored}/{w}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok(&args);
        // The same selection by patterns that start with a glob (`{tmp}/…`), which could
        // match anywhere: the whole list is read.
        let (first, rest) = stored.split_once('/').expect("a nested path");
        let mut scan = vec![
            "--json".to_string(),
            "restore".into(),
            "--target".into(),
            format!("scan-{i}"),
        ];
        for w in wanted {
            scan.extend(["--include".into(), format!("{{{first}}}/{rest}/{w}")]);
        }
        let scan: Vec<&str> = scan.iter().map(String::as_str).collect();
        env.ok(&scan);
        // Parents of what was asked for are created either way; compare what was asked for.
        let asked = |target: &str| -> std::collections::BTreeSet<String> {
            tree_paths(&restored(&env.path(target), &data))
                .into_iter()
                .filter(|p| {
                    wanted.iter().any(|w| match w.strip_suffix('*') {
                        Some(start) => p.starts_with(start),
                        None => p == w || p.starts_with(&format!("{w}/")),
                    })
                })
                .collect()
        };
        let sought = asked(&format!("seek-{i}"));
        let scanned = asked(&format!("scan-{i}"));
        assert_eq!(sought, scanned, "{what}");
        let expected_files = wanted
            .iter()
            .map(|w| match *w {
                "d017" | "d002" => 250,
                "a" => 2,
                "d045/f1*" => 100,
                w if w.contains("nope") => 0,
                _ => 1,
            })
            .sum::<usize>()
            - if *what == "overlapping" { 1 } else { 0 };
        let files = sought.iter().filter(|p| p.ends_with(".txt")).count();
        assert_eq!(files, expected_files, "{what}: {sought:?}");
    }
    let a = tree_paths(&restored(&env.path("seek-4"), &data));
    assert!(a.contains("a/b/c.txt") && a.contains("a/z.txt"), "{a:?}");
    assert!(
        !a.iter().any(|p| p.starts_with("a-b") || p == "a.txt"),
        "{a:?}"
    );
}

/// A repository of 100,000 chunks and more keeps its index's table in the cache directory:
/// written by the open that read every index file, then used (not rewritten) while only a
/// small index file comes beside it; `--no-cache` (or BULWARK_NO_CACHE) leaves none. Restores read the same data
/// either way.
#[test]
fn a_large_repository_keeps_its_index_in_the_local_cache() {
    let env = Env::new();
    let data = env.path("data");
    // One chunk per file: 101,000 chunks.
    for d in 0..101 {
        let dir = data.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}")).expect("write");
        }
    }
    env.init();
    let data_arg = data.to_str().expect("utf8");
    env.ok(&["-q", "--no-cache", "backup", data_arg]);
    let by_env = env
        .command()
        .env("BULWARK_NO_CACHE", "1")
        .args(["-q", "backup", data_arg])
        .status()
        .expect("bulwark runs");
    assert!(by_env.success());
    let cache = env.path("cache/index");
    assert!(
        !cache.exists(),
        "--no-cache or BULWARK_NO_CACHE wrote a cache"
    );

    std::fs::write(data.join("d000/new"), "new").expect("write");
    env.ok(&["-q", "backup", data_arg]);
    let files: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache written")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::read(&files[0]).expect("cache file");
    assert!(written.len() > 101_000 * 32, "{} bytes", written.len());

    // Restoring two files loads the whole index all the same (restoring 101,000 would take
    // the test a minute).
    let wanted = ["d000/new", "d100/f999"];
    for (target, cached) in [("cached", true), ("uncached", false)] {
        let includes: Vec<String> = wanted
            .iter()
            .map(|w| format!("{}/{w}", data.display()))
            .collect();
        let mut args = vec!["-q", "restore", "--target", target];
        if !cached {
            args.insert(0, "--no-cache");
        }
        for i in &includes {
            args.extend(["--include", i]);
        }
        env.ok(&args);
        for w in wanted {
            let got = std::fs::read(restored(&env.path(target), &data).join(w)).expect("restored");
            assert_eq!(
                got,
                std::fs::read(data.join(w)).expect("source"),
                "{target}: {w}"
            );
        }
    }
    assert_eq!(
        std::fs::read(&files[0]).expect("cache file"),
        written,
        "the cache was rebuilt though it covers all but one small index file"
    );
}
