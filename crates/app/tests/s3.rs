//! Against a real S3-compatible server (Garage) started by the harness.

mod common;

use common::garage::{self, Garage};
use common::{digest, pseudo_random, restored, write_sample_tree, Env};

fn s3_env(g: &Garage, bucket: &str, prefix: &str) -> Env {
    let mut env = Env::new();
    for (k, v) in g.env() {
        env.set(&k, &v);
    }
    env.set("BULWARK_REPOSITORY", &format!("s3://{bucket}/{prefix}"));
    env
}

#[test]
fn s3_round_trip_check_and_copy_from_local() {
    let Some(g) = Garage::start() else { return };
    g.bucket("bulwark-a");
    let env = s3_env(&g, "bulwark-a", "prod/repo");
    let data = env.path("data");
    write_sample_tree(&data);
    env.init();
    let r = env.run(&["init"]);
    assert_eq!(r.code, 1, "init twice refuses: {}", r.stderr);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    env.ok(&["backup", data.to_str().expect("utf8")]);
    std::fs::write(data.join("logs/app.log"), "changed\n").expect("write");
    let second = env
        .ok(&["--json", "backup", data.to_str().expect("utf8")])
        .json();
    assert_eq!(second[0]["summary"]["files_unchanged"], 4);
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));

    // With credentials that may only read (a disaster copy often is), the restore takes no
    // lock, says so, and restores all the same.
    g.read_only_key("bulwark-a");
    let mut reader = s3_env(&g, "bulwark-a", "prod/repo");
    reader.set("AWS_ACCESS_KEY_ID", garage::READ_ONLY_KEY);
    reader.set("AWS_SECRET_ACCESS_KEY", garage::READ_ONLY_SECRET);
    let r = reader.ok(&["restore", "--target", "out-ro"]);
    assert!(r.stderr.contains("without a lock"), "{}", r.stderr);
    assert_eq!(
        digest(&data),
        digest(&restored(&reader.path("out-ro"), &data))
    );
    let refused = reader.run(&["backup", data.to_str().expect("utf8")]);
    assert_ne!(refused.code, 0, "a read-only key cannot back up");

    // Local primary, S3 copy: a new S3 repository created with the local one's parameters.
    let local = env.path("local-repo").to_string_lossy().into_owned();
    env.ok(&["--repo", &local, "init"]);
    env.ok(&["--repo", &local, "backup", data.to_str().expect("utf8")]);
    env.ok(&[
        "--repo",
        "s3://bulwark-a/offsite",
        "init",
        "--copy-params-from",
        &local,
    ]);
    let copied = env
        .ok(&[
            "--json",
            "--repo",
            &local,
            "copy",
            "--to",
            "s3://bulwark-a/offsite",
        ])
        .json();
    assert!(copied["snapshots"][0]["copied_as"].is_string(), "{copied}");
    let again = env
        .ok(&[
            "--json",
            "--repo",
            &local,
            "copy",
            "--to",
            "s3://bulwark-a/offsite",
        ])
        .json();
    assert!(
        again["snapshots"][0]["copied_as"].is_null(),
        "a second copy transfers nothing: {again}"
    );
    env.ok(&["--repo", "s3://bulwark-a/offsite", "check", "--read-data"]);
    env.ok(&[
        "--repo",
        "s3://bulwark-a/offsite",
        "restore",
        "--target",
        "out2",
    ]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out2"), &data)));
}

#[test]
fn unreachable_endpoint_is_retried_then_fails_clearly() {
    let Some(g) = Garage::start() else { return };
    let mut env = s3_env(&g, "bulwark-b", "r");
    // Nothing listens on port 1.
    env.set("BULWARK_S3_ENDPOINT", "http://127.0.0.1:1");
    env.set("BULWARK_STORAGE_RETRIES", "2");
    env.set("BULWARK_STORAGE_RETRY_DELAY_MS", "50");
    let r = env.run(&["snapshots"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.matches("retrying").count(), 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot open repository at s3://bulwark-b/r"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    assert!(
        !r.stderr.contains(common::garage::SECRET_KEY),
        "no secrets in errors"
    );
}

#[test]
fn wrong_credentials_fail_without_leaking_them() {
    let Some(g) = Garage::start() else { return };
    g.bucket("bulwark-c");
    let mut env = s3_env(&g, "bulwark-c", "r");
    env.set(
        "AWS_SECRET_ACCESS_KEY",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    );
    env.set("BULWARK_STORAGE_RETRIES", "0");
    let r = env.run(&["init"]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("ffffffffffffffff"), "{}", r.stderr);
}

/// A slim container has no CA certificates: a plain `http://` endpoint (MinIO or Garage on
/// a private network) works without them, and an `https://` one is a clear error, not a
/// panic in the HTTP client.
#[test]
fn no_ca_certificates_on_the_system_is_no_panic() {
    let Some(g) = Garage::start() else { return };
    g.bucket("bulwark-d");
    let mut env = s3_env(&g, "bulwark-d", "r");
    env.set("SSL_CERT_FILE", "/dev/null");
    env.set("SSL_CERT_DIR", "/nonexistent");
    env.init();
    let data = env.path("data");
    write_sample_tree(&data);
    env.ok(&["backup", data.to_str().expect("utf8")]);
    env.set("BULWARK_S3_ENDPOINT", "https://127.0.0.1:1");
    let r = env.run(&["snapshots"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot set up HTTPS") && r.stderr.contains("ca-certificates"),
        "{}",
        r.stderr
    );
}

/// Services that name the bucket in the host (AWS S3's default, Huawei OBS) need
/// `virtual_host_style = true`: requests go to `BUCKET.host`. Garage answers those under its
/// root domain `.s3.garage.localhost`, which resolves to loopback where nss-myhostname is
/// installed (scripts/install-deps.sh installs it).
#[test]
fn virtual_host_style_names_the_bucket_in_the_host() {
    use std::net::ToSocketAddrs;
    let host = "bulwark-v.s3.garage.localhost";
    if (host, 80).to_socket_addrs().is_err() {
        eprintln!("SKIPPED: {host} does not resolve (install libnss-myhostname); the virtual-host test did not run");
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the virtual-host test"
        );
        return;
    }
    let Some(g) = Garage::start() else { return };
    g.bucket("bulwark-v");
    let port = g.endpoint.rsplit(':').next().expect("a port").to_string();
    let mut env = Env::new();
    let config_file = env.path("bulwark.toml");
    let config = |endpoint: &str| {
        std::fs::write(
            &config_file,
            format!(
                "[repositories.main]\nurl = \"s3://bulwark-v/r\"\nendpoint = \"{endpoint}\"\n\
                 region = \"garage\"\nvirtual_host_style = true\n"
            ),
        )
        .expect("config");
    };
    config(&format!("http://s3.garage.localhost:{port}"));
    for (k, v) in g.env() {
        if k.starts_with("AWS_") {
            env.set(&k, &v);
        }
    }
    env.set("BULWARK_CONFIG", &config_file.to_string_lossy());
    env.set("BULWARK_REPOSITORY", "main");
    env.set("BULWARK_STORAGE_RETRIES", "0");
    let data = env.path("data");
    write_sample_tree(&data);
    env.init();
    env.ok(&["backup", data.to_str().expect("utf8")]);
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));

    // The bucket really travels in the host: against an address no bucket name can prefix,
    // the same settings cannot reach it.
    config(&format!("http://127.0.0.1:{port}"));
    let r = env.run(&["snapshots"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("bulwark-v.127.0.0.1"), "{}", r.stderr);
}

/// `init --pack-size`: packs above 16 MiB go up as multipart uploads, parts side by side;
/// the default 8 MiB packs stay one PUT each. Either way what was saved restores and checks.
#[test]
fn large_packs_go_up_in_parts_and_read_back() {
    let Some(g) = Garage::start() else { return };
    g.bucket("bulwark-m");
    let env = s3_env(&g, "bulwark-m", "big");
    let data = env.path("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // Incompressible, so the packs reach their size.
    std::fs::write(data.join("weights.bin"), pseudo_random(70 << 20, 7)).expect("write");
    let r = env.run(&["init", "--pack-size", "65"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("4 to 64"), "{}", r.stderr);
    env.ok(&["init", "--pack-size", "32"]);
    env.ok(&["backup", data.to_str().expect("utf8")]);
    let requests = g.requests();
    let starts = requests.iter().filter(|l| l.contains("?uploads")).count();
    let parts = requests
        .iter()
        .filter(|l| l.contains("PUT") && l.contains("partNumber="))
        .count();
    // Two full 32 MiB packs in four 8 MiB parts each; the rest of the data is one small pack.
    assert!(
        starts >= 2 && parts >= 8,
        "{starts} uploads, {parts} parts: {requests:#?}"
    );
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "--target", "out"]);
    assert_eq!(digest(&data), digest(&restored(&env.path("out"), &data)));

    let before = g.requests().len();
    let small = s3_env(&g, "bulwark-m", "default");
    small.init();
    small.ok(&["backup", data.to_str().expect("utf8")]);
    let later = &g.requests()[before..];
    assert!(
        !later.iter().any(|l| l.contains("uploadId=")),
        "8 MiB packs are single PUTs: {later:#?}"
    );
}
