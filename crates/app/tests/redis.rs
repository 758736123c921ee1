//! Redis connector against real redis-server processes (Debian's Redis 7). Restores are
//! judged by Redis itself: `DEBUG DIGEST` of the source and the restored server must match.

mod common;

use std::path::Path;

use common::redis::Redis;
use common::{cutting_proxy, free_port, Env};

/// A repository and a bulwark.toml with one redis source named `cache`.
fn env_for(url: &str, password: Option<&str>, extra: &str) -> Env {
    let env = Env::new();
    env.init();
    let mut config = format!("[sources.cache]\nkind = \"redis\"\nurl = \"{url}\"\n{extra}");
    if let Some(pw) = password {
        std::fs::write(env.path("redis-pw"), pw).expect("password file");
        config.push_str(&format!(
            "password_file = \"{}\"\n",
            env.path("redis-pw").display()
        ));
    }
    std::fs::write(env.path("bulwark.toml"), config).expect("config");
    env
}

/// Every type in its compact and its large encoding, big and incompressible values,
/// expiries, three databases, a stream with consumer groups and a function library.
fn populate(r: &Redis) {
    r.eval(
        "redis.call('SET', 'str:plain', 'hello world') \
         redis.call('SET', 'str:int', '123456789') \
         redis.call('SET', 'str:neg', '-42') \
         redis.call('SET', 'str:lzf', string.rep('abcdefgh', 4096)) \
         redis.call('SET', 'str:20mb', string.rep('0123456789abcdef', 1310720)) \
         local t = {} local x = 12345 \
         for i = 1, 262144 do x = (x * 1103515245 + 12345) % 2147483648 \
           t[i] = string.char(math.floor(x / 65536) % 256) end \
         redis.call('SET', 'str:random', table.concat(t)) \
         redis.call('RPUSH', 'list:small', 'a', 'b', '1', '-1', '300', '70000', '-9000000000') \
         for i = 1, 200000 do redis.call('RPUSH', 'list:big', 'item-' .. i) end \
         redis.call('SADD', 'set:intset', '1', '2', '3', '-5', '100000', '5000000000') \
         redis.call('SADD', 'set:small', 'a', 'b', 'c') \
         for i = 1, 1000 do redis.call('SADD', 'set:big', 'member-' .. i) end \
         redis.call('ZADD', 'zset:small', '1', 'a', '2.5', 'b', '-3', 'c') \
         for i = 1, 500 do redis.call('ZADD', 'zset:big', i * 0.5, 'm' .. i) end \
         redis.call('ZADD', 'zset:big', 'inf', 'top', '-inf', 'bottom') \
         redis.call('HSET', 'hash:small', 'f1', 'v1', 'f2', '2') \
         for i = 1, 1000 do redis.call('HSET', 'hash:big', 'field' .. i, 'value' .. i) end \
         redis.call('HSET', 'hash:longval', 'f', string.rep('v', 100)) \
         redis.call('SET', 'ttl:hour', 'soon gone') redis.call('EXPIRE', 'ttl:hour', 3600) \
         redis.call('RPUSH', 'ttl:list', 'x') redis.call('PEXPIRE', 'ttl:list', 900000) \
         for i = 1, 200 do redis.call('XADD', 'stream', '*', 'a', i, 'b', 'x' .. i) end \
         for i = 1, 20 do redis.call('XADD', 'stream', '*', 'other', i) end \
         return 1",
    );
    // Plain (unpacked) quicklist nodes hold elements above a threshold only DEBUG can lower.
    r.cli(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000"]);
    r.eval("redis.call('RPUSH', 'list:plain', string.rep('p', 5000), 'small') return 1");
    let first = r.cli(&["XRANGE", "stream", "-", "+", "COUNT", "1"]);
    let first_id = first.lines().next().expect("an entry").to_string();
    r.cli(&["XDEL", "stream", &first_id]);
    r.cli(&["XGROUP", "CREATE", "stream", "g1", "0"]);
    r.cli(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "5",
        "STREAMS",
        "stream",
        ">",
    ]);
    r.cli(&["XGROUP", "CREATECONSUMER", "stream", "g1", "bob"]);
    r.cli(&["XGROUP", "CREATE", "stream", "g2", "$"]);
    r.eval(
        "for i = 1, 100 do redis.call('SELECT', 1) redis.call('SET', 'k:' .. i, i) end return 1",
    );
    r.eval("redis.call('SELECT', 5) redis.call('HSET', 'db5:hash', 'a', 'b') redis.call('SET', 'db5:str', 'x') return 1");
    r.cli(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=mylib\nredis.register_function('echo1', function(keys, args) return args[1] end)",
    ]);
}

/// Stops a daemonized server that `restore --start` left running.
struct Started(u16);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::process::Command::new("redis-cli")
            .args(["-p", &self.0.to_string(), "SHUTDOWN", "NOSAVE"])
            .output();
    }
}

fn assert_verified(report: &serde_json::Value, keys: u64) {
    let v = &report["verify"];
    assert_eq!(v["mismatches"], serde_json::json!([]), "{report}");
    assert_eq!(v["sampled"].as_u64(), Some(keys), "{report}");
    for db in v["databases"].as_array().expect("databases") {
        assert_eq!(db["ok"], true, "{report}");
    }
}

#[test]
fn every_type_and_encoding_round_trips_live_into_a_directory_and_a_sandbox() {
    // The source keeps Redis's default 5 s diskless-sync delay: backups must cope with it.
    let Some(mut src) = Redis::start(&[]) else {
        return;
    };
    src.cli(&[
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">backup-pw",
        "+psync",
        "+replconf",
        "+ping",
        "+info",
        "+config|get",
    ]);
    src.cli(&["CONFIG", "SET", "requirepass", "admin-pw"]);
    src.login("default", "admin-pw");
    populate(&src);
    let digest = src.digest();
    let total: u64 = [0, 1, 5].iter().map(|db| src.dbsize(*db)).sum();

    let url = format!("redis://backup@127.0.0.1:{}", src.port());
    let env = env_for(&url, Some("backup-pw"), "");
    let backup = env.ok(&["backup", "--json"]);
    assert!(!backup.stdout.contains("backup-pw"), "password leaked");
    let snaps = env.ok(&["snapshots", "--json"]).json();
    let census = &snaps[0]["facts"]["redis"]["census"];
    for db in [0, 1, 5] {
        assert_eq!(
            census["databases"][db.to_string()]["keys"].as_u64(),
            Some(src.dbsize(db)),
            "{census}"
        );
    }
    assert_eq!(census["databases"]["0"]["types"]["stream"], 1, "{census}");
    assert_eq!(census["functions"], 1, "{census}");

    // Live, into an empty server.
    let dst = Redis::start(&[]).expect("second server");
    let r = env
        .ok(&[
            "restore",
            "--source",
            "cache",
            "--target",
            &dst.url(),
            "--json",
        ])
        .json();
    assert_verified(&r["report"], total);
    assert_eq!(r["report"]["restored"].as_u64(), Some(total), "{r}");
    assert_eq!(dst.digest(), digest);
    let ttl: i64 = dst.cli(&["PTTL", "ttl:hour"]).parse().expect("PTTL");
    assert!((3_500_000..=3_600_000).contains(&ttl), "TTL kept: {ttl}");
    assert!(dst.cli(&["FUNCTION", "LIST"]).contains("mylib"));

    // A server that has the keys: refused unless told what to do.
    let r = env.run(&["restore", "--source", "cache", "--target", &dst.url()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("--flush"), "{}", r.stderr);
    dst.cli(&["SET", "str:plain", "tampered"]);
    let r = env.run(&[
        "restore",
        "--source",
        "cache",
        "--target",
        &dst.url(),
        "--skip-existing",
    ]);
    assert_eq!(r.code, 7, "kept key differs: {}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("MISMATCH db 0 key str:plain"),
        "{}",
        r.stdout
    );
    env.ok(&[
        "restore",
        "--source",
        "cache",
        "--target",
        &dst.url(),
        "--replace",
    ]);
    assert_eq!(dst.digest(), digest);
    dst.cli(&["-n", "1", "SET", "stray", "x"]);
    env.ok(&[
        "restore",
        "--source",
        "cache",
        "--target",
        &dst.url(),
        "--flush",
    ]);
    assert_eq!(
        dst.digest(),
        digest,
        "--flush empties the restored databases"
    );

    // As files: a server of our own loads them to the same digest.
    let files = tempfile::tempdir().expect("tempdir");
    env.ok(&[
        "restore",
        "--source",
        "cache",
        "--target",
        &files.path().to_string_lossy(),
    ]);
    let loaded = Redis::start_in(files, &[]);
    assert_eq!(loaded.digest(), digest);

    // As files started by bulwark, compared with the backup.
    let port = free_port();
    let started_dir = env.path("started");
    let r = env.run(&[
        "restore",
        "--source",
        "cache",
        "--target",
        &started_dir.to_string_lossy(),
        "--start",
        "--port",
        &port.to_string(),
        "--json",
    ]);
    let _stop = Started(port);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_verified(&r.json()["report"], total);

    // A sandbox: restored, checked and removed.
    let r = env
        .ok(&["restore", "--source", "cache", "--sandbox", "--json"])
        .json();
    assert_verified(&r["report"], total);
    assert_eq!(r["report"]["keys"].as_u64(), Some(total));
}

#[test]
fn a_sync_cut_midway_fails_the_backup_in_both_framings() {
    for diskless in ["yes", "no"] {
        let Some(src) = Redis::start(&[
            "--repl-diskless-sync",
            diskless,
            "--repl-diskless-sync-delay",
            "0",
        ]) else {
            return;
        };
        // 4 MiB of incompressible data, so a cut at 1 MiB is well inside the RDB.
        src.eval(
            "local x = 7 for k = 1, 16 do local t = {} \
               for i = 1, 262144 do x = (x * 1103515245 + 12345) % 2147483648 \
                 t[i] = string.char(math.floor(x / 65536) % 256) end \
               redis.call('SET', 'blob' .. k, table.concat(t)) end return 1",
        );
        let proxy = cutting_proxy(src.port(), 1 << 20);
        let env = env_for(&format!("redis://127.0.0.1:{proxy}"), None, "");
        let r = env.run(&["backup"]);
        assert_ne!(r.code, 0, "diskless={diskless}: {}", r.stdout);
        assert!(
            r.stderr.contains("closed the replication connection after"),
            "diskless={diskless}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("the backup is discarded"), "{}", r.stderr);
        let snaps = env.ok(&["snapshots", "--json"]).json();
        assert_eq!(
            snaps,
            serde_json::json!([]),
            "no snapshot from a cut stream"
        );

        // Straight to the server, the same backup is whole.
        let env = env_for(&src.url(), None, "");
        env.ok(&["backup"]);
        let snaps = env.ok(&["snapshots", "--json"]).json();
        assert_eq!(
            snaps[0]["facts"]["redis"]["diskless"],
            diskless == "yes",
            "{snaps}"
        );
        let r = env
            .ok(&["restore", "--source", "cache", "--sandbox", "--json"])
            .json();
        assert_verified(&r["report"], 16);
    }
}

#[test]
fn append_only_files_are_captured_and_load_on_their_own() {
    let Some(src) = Redis::start(&["--appendonly", "yes"]) else {
        return;
    };
    src.eval(
        "for i = 1, 1000 do redis.call('SET', 'k' .. i, i) end redis.call('DEL', 'k1') return 1",
    );
    src.cli(&["-n", "2", "LPUSH", "q", "job1", "job2"]);
    let digest = src.digest();
    let env = env_for(
        &src.url(),
        None,
        &format!("data_dir = \"{}\"\n", src.data_dir().display()),
    );
    env.ok(&["backup"]);
    let listing = env.ok(&["ls", "latest"]).stdout;
    assert!(
        listing.contains("redis/appendonlydir/appendonly.aof.manifest"),
        "{listing}"
    );
    assert!(listing.contains(".incr.aof"), "{listing}");

    let files = tempfile::tempdir().expect("tempdir");
    env.ok(&[
        "restore",
        "--source",
        "cache",
        "--target",
        &files.path().to_string_lossy(),
    ]);
    // Without the RDB, the server can only have its data from the AOF.
    std::fs::remove_file(files.path().join("dump.rdb")).expect("rdb restored");
    let loaded = Redis::start_in(files, &["--appendonly", "yes"]);
    assert_eq!(loaded.digest(), digest);
}

#[test]
fn login_failures_and_missing_permissions_are_explained() {
    let Some(mut src) = Redis::start(&[]) else {
        return;
    };
    src.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">reader-pw",
        "+ping",
        "+info",
        "+config|get",
    ]);
    src.cli(&["CONFIG", "SET", "requirepass", "right-pw"]);
    src.login("default", "right-pw");

    let env = env_for(&src.url(), Some("wrong-pw"), "");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("rejected the login"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("wrong-pw"),
        "password leaked: {}",
        r.stderr
    );

    let url = format!("redis://reader@127.0.0.1:{}", src.port());
    let env = env_for(&url, Some("reader-pw"), "");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("+psync"),
        "says what to grant: {}",
        r.stderr
    );

    let env = env_for(&format!("redis://127.0.0.1:{}", free_port()), None, "");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot connect"), "{}", r.stderr);
    assert!(Path::new(&env.repo()).exists());
}
