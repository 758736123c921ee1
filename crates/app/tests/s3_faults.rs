//! Storage faults between Bulwark and a real S3 server (Garage): 503s, 500s after the server
//! acted, connection resets, truncated answers and slow answers, at random. Every command
//! completes (retries are bounded and logged) or fails cleanly; afterwards, read directly, the
//! repository is intact and every snapshot that was reported saved restores exactly.

mod common;

use std::collections::BTreeMap;

use common::faults::FaultyProxy;
use common::garage::Garage;
use common::{digest, restored, write_sample_tree, Env};

fn env_for(g: &Garage, endpoint: &str) -> Env {
    let mut env = Env::new();
    for (k, v) in g.env() {
        env.set(&k, &v);
    }
    env.set("BULWARK_S3_ENDPOINT", endpoint);
    env.set("BULWARK_REPOSITORY", "s3://faulty/repo");
    env.set("BULWARK_STORAGE_RETRIES", "10");
    env.set("BULWARK_STORAGE_RETRY_DELAY_MS", "20");
    env
}

/// A command through the faults: it succeeds, or fails with an error message (never a panic).
fn attempt(env: &Env, args: &[&str], log: &mut String) -> Option<common::Run> {
    let r = env.run(args);
    log.push_str(&r.stderr);
    assert!(
        !r.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        r.stderr
    );
    if r.code == 0 {
        Some(r)
    } else {
        assert!(
            r.stderr.contains("error:"),
            "{args:?} failed silently: {}",
            r.stderr
        );
        None
    }
}

#[test]
fn storage_faults_never_corrupt_the_repository_or_lose_a_saved_snapshot() {
    let Some(g) = Garage::start() else { return };
    g.bucket("faulty");
    let upstream: u16 = g
        .env()
        .into_iter()
        .find(|(k, _)| k == "BULWARK_S3_ENDPOINT")
        .and_then(|(_, v)| v.rsplit(':').next().and_then(|p| p.parse().ok()))
        .expect("garage port");
    let proxy = FaultyProxy::start(upstream, 0x5eed, 12);
    let direct = env_for(&g, &format!("http://127.0.0.1:{upstream}"));
    let faulty = env_for(&g, &proxy.endpoint());
    let data = faulty.path("data");
    write_sample_tree(&data);
    for i in 0..3 {
        std::fs::write(
            data.join(format!("blob-{i}.bin")),
            common::pseudo_random(3 << 20, 70 + i),
        )
        .expect("write");
    }
    direct.init();

    let mut log = String::new();
    let mut saved: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for round in 0..5 {
        std::fs::write(data.join("logs/app.log"), format!("round {round}\n")).expect("write");
        let path = data.to_str().expect("utf8");
        if let Some(r) = attempt(&faulty, &["--json", "backup", path], &mut log) {
            let id = r.json()[0]["snapshot"].as_str().expect("id").to_string();
            saved.insert(id, digest(&data));
        }
    }
    assert!(
        saved.len() >= 3,
        "retries should carry most backups through:\n{log}"
    );
    for (n, (id, expected)) in saved.iter().enumerate() {
        let out = faulty.path(&format!("out{n}"));
        let target = out.to_str().expect("utf8");
        if attempt(
            &faulty,
            &["restore", "--snapshot", id, "--target", target],
            &mut log,
        )
        .is_some()
        {
            assert_eq!(&digest(&restored(&out, &data)), expected, "snapshot {id}");
        }
    }
    attempt(&faulty, &["check", "--read-data"], &mut log);
    if attempt(
        &faulty,
        &["forget", "--keep-last", "3", "--prune"],
        &mut log,
    )
    .is_some()
    {
        let kept: Vec<String> = direct
            .ok(&["--json", "snapshots"])
            .json()
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|s| s["id"].as_str().map(String::from))
            .collect();
        saved.retain(|id, _| kept.contains(id));
    }
    eprintln!(
        "injected {} faults into {} requests; {} of 5 backups saved",
        proxy.faults(),
        proxy
            .counts
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        saved.len()
    );
    assert!(
        proxy.faults() >= 10,
        "only {} faults injected",
        proxy.faults()
    );
    assert!(log.contains("retrying"), "retries are logged:\n{log}");

    // Read directly: nothing corrupt, nothing a snapshot needs is missing, every saved
    // snapshot restores exactly.
    direct.ok(&["check", "--read-data"]);
    for (n, (id, expected)) in saved.iter().enumerate() {
        let out = direct.path(&format!("direct{n}"));
        direct.ok(&[
            "restore",
            "--snapshot",
            id,
            "--target",
            out.to_str().expect("utf8"),
        ]);
        assert_eq!(&digest(&restored(&out, &data)), expected, "snapshot {id}");
    }
}
