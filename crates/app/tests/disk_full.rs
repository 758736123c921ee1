//! A repository disk that fills up: the backup fails with a clear error, commits nothing, and
//! everything already in the repository stays intact.

mod common;

use common::{Env, Tmpfs};

#[test]
fn backup_onto_a_full_disk_fails_clearly_and_loses_nothing() {
    let mut env = Env::new();
    let mount = env.path("small-disk");
    let Some(_disk) = Tmpfs::mount(&mount, "4m") else {
        return;
    };
    env.set(
        "BULWARK_REPOSITORY",
        mount.join("repo").to_str().expect("utf8"),
    );
    env.set("BULWARK_STORAGE_RETRIES", "1");
    env.set("BULWARK_STORAGE_RETRY_DELAY_MS", "10");
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("small.bin"), common::pseudo_random(200_000, 1)).expect("write");
    env.init();
    env.ok(&["backup", "--name", "small", data.to_str().expect("utf8")]);

    let big = env.path("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    std::fs::write(
        big.join("large.bin"),
        common::pseudo_random(12 * 1024 * 1024, 2),
    )
    .expect("write");
    let r = env.run(&["backup", "--name", "big", big.to_str().expect("utf8")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    // The cause survives however much the source still has to give when the disk fills.
    let many = env.path("many");
    std::fs::create_dir_all(&many).expect("mkdir");
    for i in 0..48 {
        std::fs::write(
            many.join(format!("part-{i:02}.bin")),
            common::pseudo_random(1024 * 1024, 100 + i),
        )
        .expect("write");
    }
    for args in [
        vec!["backup", "--name", "many", many.to_str().expect("utf8")],
        vec![
            "backup",
            "--stdin-from-command",
            "head -c 64000000 /dev/urandom",
        ],
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("No space left on device"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("pipeline stopped"),
            "{args:?}: {}",
            r.stderr
        );
    }

    // Direct writes remove their own partial file; a buffered write (filesystems without
    // O_DIRECT) or a crash mid-write leaves one in .tmp, which an exclusive prune frees (no
    // other writer can be using it then): stand one in.
    let tmp = mount.join("repo/.tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    std::fs::write(tmp.join("partial-write"), vec![0u8; 4096]).expect("write");
    let two_phase = env.ok(&["--json", "prune"]).json();
    assert_eq!(two_phase["temp_bytes_removed"], 0, "{two_phase}");
    assert_eq!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 1);
    let pruned = env.ok(&["--json", "prune", "--exclusive"]).json();
    assert!(
        pruned["temp_bytes_removed"].as_u64().expect("n") >= 4096,
        "{pruned}"
    );
    assert_eq!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
    std::fs::write(big.join("large.bin"), common::pseudo_random(1024 * 1024, 3)).expect("write");
    env.ok(&["backup", "--name", "big", big.to_str().expect("utf8")]);

    let snaps = env.ok(&["--json", "snapshots", "--source", "small"]).json();
    assert_eq!(snaps.as_array().expect("a").len(), 1);
    let all = env.ok(&["--json", "snapshots"]).json();
    assert_eq!(
        all.as_array().expect("a").len(),
        2,
        "the failed backup left no snapshot, the retry did"
    );
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "--source", "small", "--target", "out"]);
    let restored = common::restored(&env.path("out"), &data);
    assert_eq!(
        std::fs::read(restored.join("small.bin")).expect("read"),
        common::pseudo_random(200_000, 1)
    );
}
