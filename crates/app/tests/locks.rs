//! Repository locks as a user meets them: files in `locks/` that cannot be read, operations
//! refused by a lock (exit 10, nothing reported done that was not), waiting with
//! `--retry-lock`, locks left by killed processes, and maintenance refusing a skewed clock.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;

fn locks(env: &Env) -> Vec<PathBuf> {
    std::fs::read_dir(env.path("repo/locks"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Waits until some process holds a lock on the repository (a backup just started).
fn wait_for_a_lock(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while locks(env).is_empty() {
        assert!(Instant::now() < deadline, "the backup took no lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn age(path: &Path, ago: &str) {
    let touched = std::process::Command::new("touch")
        .args(["-m", "-d", ago])
        .arg(path)
        .status()
        .expect("touch");
    assert!(touched.success());
}

fn sample(env: &Env) -> String {
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("a.txt"), "a\n").expect("write");
    data.to_string_lossy().into_owned()
}

#[test]
fn unreadable_lock_files_are_judged_by_age_and_unlock_removes_them() {
    let env = Env::new();
    env.init();
    let data = sample(&env);
    let dir = env.path("repo/locks");
    std::fs::create_dir_all(&dir).expect("locks/");
    let damaged = dir.join("ab".repeat(32));
    for (path, content) in [
        (dir.join("foo"), &b"not a lock"[..]),
        (damaged.clone(), &b""[..]),
    ] {
        std::fs::write(&path, content).expect("write lock");
        // Fresh, it may be a lock nobody can read: a backup waits for nobody and says why.
        let r = env.run(&["backup", &data]);
        assert_eq!(r.code, 10, "{}", r.stderr);
        assert!(
            r.stderr.contains("unreadable lock file") && r.stderr.contains("unlock --remove-all"),
            "{}",
            r.stderr
        );
        // Old, it is stale: ignored, and plain `unlock` removes it.
        age(&path, "2 hours ago");
        env.ok(&["backup", &data]);
        env.ok(&["prune"]);
        env.ok(&["unlock"]);
        assert!(!path.exists(), "{} not removed", path.display());
    }
    std::fs::write(&damaged, b"\x00garbage").expect("write lock");
    env.ok(&["unlock", "--remove-all"]);
    assert!(locks(&env).is_empty());
    env.ok(&["backup", &data]);
}

#[test]
fn refused_operations_exit_10_report_nothing_undone_and_can_wait() {
    let env = Env::new();
    env.init();
    let data = sample(&env);
    for _ in 0..3 {
        env.ok(&["backup", &data]);
    }
    // A lock nobody can read counts as exclusive while young (a stand-in for a running prune).
    let held = env.path("repo/locks").join("cd".repeat(32));
    std::fs::write(&held, b"held").expect("lock");
    let r = env.run(&["backup", &data]);
    assert_eq!(r.code, 10, "a backup refused by a lock: {}", r.stderr);

    // forget decides, then locks, then reports: refused, it claims nothing.
    let r = env.run(&["forget", "--keep-last", "1"]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(!r.stdout.contains("removed"), "{}", r.stdout);
    assert_eq!(
        env.ok(&["snapshots", "--json"])
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // With --retry-lock it waits until the lock goes, then does the work.
    let releaser = {
        let held = held.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::remove_file(held).expect("release");
        })
    };
    let started = Instant::now();
    let r = env.ok(&[
        "--retry-lock",
        "30s",
        "--json",
        "forget",
        "--keep-last",
        "1",
        "--prune",
    ]);
    releaser.join().expect("releaser");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "did not wait"
    );
    let report = r.json();
    let removed = report["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["keep"] == false)
        .count();
    assert_eq!(removed, 2, "{report}");
    assert!(
        report["prune"]["packs_before"].as_u64().is_some(),
        "{report}"
    );

    // An interrupted `forget --prune` (forget done, prune not) is finished by running it again.
    env.ok(&["backup", &data]);
    env.ok(&["forget", "--keep-last", "1"]);
    let again = env
        .ok(&["--json", "forget", "--keep-last", "1", "--prune"])
        .json();
    assert!(again["prune"].is_object(), "{again}");
}

#[test]
fn locks_of_killed_processes_do_not_pile_up() {
    let env = Env::new();
    env.init();
    let data = sample(&env);
    for _ in 0..3 {
        let mut child = env
            .command()
            .args([
                "-q",
                "backup",
                "--stdin-from-command",
                "sleep 30",
                "--name",
                "slow",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        wait_for_a_lock(&env);
        child.kill().expect("kill");
        child.wait().expect("reap");
    }
    assert!(!locks(&env).is_empty(), "a killed backup leaves its lock");
    // The next lock taken on this host clears the ones whose process is gone.
    env.ok(&["backup", &data]);
    assert!(locks(&env).is_empty(), "{:?}", locks(&env));
}

/// A restore takes a shared lock: an exclusive operation's lock (here a lock file nobody can
/// read, which counts as one) refuses it before it writes anything, and `--retry-lock` waits.
#[test]
fn a_restore_waits_for_an_exclusive_lock() {
    let env = Env::new();
    env.init();
    let data = sample(&env);
    env.ok(&["backup", &data]);
    let held = env.path("repo/locks").join("ef".repeat(32));
    std::fs::write(&held, b"held").expect("lock");
    let r = env.run(&["restore", "--target", "out"]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.stderr.contains("unreadable lock file"), "{}", r.stderr);
    assert!(!env.path("out").exists(), "nothing restored under the lock");

    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        std::fs::remove_file(held).expect("release");
    });
    env.ok(&["--retry-lock", "30s", "restore", "--target", "out"]);
    releaser.join().expect("releaser");
    let restored = common::restored(&env.path("out"), Path::new(&data));
    assert_eq!(
        std::fs::read_to_string(restored.join("a.txt")).expect("restored"),
        "a\n"
    );
    assert!(locks(&env).is_empty(), "the restore's lock is gone");
}

/// libfaketime, which `scripts/install-deps.sh` installs (Debian's `faketime`).
fn libfaketime() -> PathBuf {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|dir| Path::new(dir).join("faketime/libfaketime.so.1"))
    .find(|p| p.exists())
    .expect("libfaketime.so.1 (Debian package faketime; scripts/install-deps.sh installs it)")
}

/// Maintenance takes ages from the storage's clock, so it refuses to run on a host whose clock
/// is more than five minutes off that of the storage (here the local disk's file times, with
/// bulwark's own clock moved by libfaketime), leaves nothing behind, and runs within it.
#[test]
fn maintenance_refuses_a_clock_far_from_the_storages() {
    let mut env = Env::new();
    env.init();
    let data = sample(&env);
    env.ok(&["backup", &data]);
    std::fs::write(Path::new(&data).join("a.txt"), "changed\n").expect("write");
    env.ok(&["backup", &data]);
    env.ok(&["forget", "--keep-last", "1"]);
    let marks_dir = env.path("repo/marks");
    let marks = || {
        std::fs::read_dir(&marks_dir)
            .map(|d| d.count())
            .unwrap_or(0)
    };
    env.set("LD_PRELOAD", &libfaketime().to_string_lossy());
    for skew in ["+10m", "-10m"] {
        env.set("FAKETIME", skew);
        let refused = env.run(&["prune"]);
        assert_eq!(refused.code, 2, "{skew}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("differ by") && refused.stderr.contains("Fix the clock"),
            "{skew}: {}",
            refused.stderr
        );
        assert_eq!(marks(), 0, "{skew}: nothing marked");
        assert!(locks(&env).is_empty(), "{skew}: no lock left");
    }
    env.set("FAKETIME", "+2m");
    env.ok(&["prune"]);
    assert_eq!(
        marks(),
        1,
        "within five minutes, prune marks the unused pack"
    );
}

/// A backup on a host whose clock runs two hours slow writes lock times that look stale; the
/// storage's time of the lock file shows that it is alive, so `prune --exclusive` (which would
/// delete what that backup has not indexed yet) waits for it instead of passing over it.
#[test]
fn a_live_lock_from_a_host_whose_clock_runs_slow_still_holds() {
    let env = Env::new();
    env.init();
    let mut holder = env
        .command()
        .args(["-q", "backup", "--stdin", "--stdin-filename", "dump.sql"])
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", "-2h")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    wait_for_a_lock(&env);
    let r = env.run(&["prune", "--exclusive"]);
    assert_eq!(r.code, 10, "prune passed over a live lock: {}", r.stderr);
    assert!(r.stderr.contains("locked by 'backup'"), "{}", r.stderr);

    std::io::Write::write_all(
        holder.stdin.as_mut().expect("stdin"),
        b"insert into t values (1);\n",
    )
    .expect("feed the backup");
    drop(holder.stdin.take());
    let out = holder.wait_with_output().expect("backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["prune", "--exclusive"]);
}
