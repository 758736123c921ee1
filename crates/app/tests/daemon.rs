//! `bulwark daemon` and `run-job` against real PostgreSQL and Redis: scheduled backups, checks
//! and retention; a SIGKILL mid-backup (the run recorded as interrupted, the repository clean,
//! the missed slot run once); SIGHUP with a broken config; the API's tokens and roles;
//! a datastore down at job time; `/metrics` checked by Prometheus' own promtool.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{self, of, Daemon, Receiver, ADMIN, READER};
use common::postgres::{Flavor, PgServer};
use common::redis::Redis;
use common::{write_sample_tree, Env, Tmpfs};

fn results(runs: &[&serde_json::Value]) -> Vec<String> {
    runs.iter()
        .map(|r| r["result"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn succeeded(runs: &[serde_json::Value], job: &str) -> usize {
    of(runs, job)
        .iter()
        .filter(|r| r["result"] == "success")
        .count()
}

#[test]
fn scheduled_jobs_run_and_a_sigkilled_backup_is_recorded_interrupted_and_run_again_once() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    let Some(pg) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    pg.sql("postgres", "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 500) g");
    redis.cli(&["SET", "session:1", "alive"]);
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    let port = daemon::port();
    // The slow source: a dump that takes a few seconds, so that a kill lands mid-backup.
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "{}[sources.db]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\n\
             [sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
             [sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n\n\
             [sources.slow]\nkind = \"command\"\ncommand = \"sleep 6; echo late\"\nfilename = \"late.txt\"\n\n\
             [retention]\nkeep_last = 2\n\n\
             [jobs.backup]\nkind = \"backup\"\nsources = [\"db\", \"cache\", \"uploads\"]\nschedule = \"*/3 * * * * *\"\n\n\
             [jobs.verify]\nkind = \"check\"\nschedule = \"*/4 * * * * *\"\n\n\
             [jobs.retention]\nkind = \"retention\"\nschedule = \"*/5 * * * * *\"\n\n\
             [jobs.slow]\nkind = \"backup\"\nsources = [\"slow\"]\nschedule = \"*/30 * * * * *\"\ntimeout = \"5m\"\n",
            daemon::section(port),
            pg.url(),
            pg.password_file().display(),
            redis.port(),
        ),
    )
    .expect("config");
    env.init();

    let d = Daemon::start(&env, port);
    let runs = d.wait_runs("two backups, a check and a retention run", |runs| {
        succeeded(runs, "backup") >= 2
            && succeeded(runs, "verify") >= 1
            && succeeded(runs, "retention") >= 1
    });
    for r in &runs {
        assert_eq!(r["trigger"], "schedule", "{r}");
        assert!(r["slot"].is_string(), "scheduled runs name their slot: {r}");
    }
    let backup = of(&runs, "backup")
        .into_iter()
        .find(|r| r["result"] == "success")
        .expect("a backup");
    let detail = d.json(&format!("/api/runs/{}", backup["id"]));
    let report = detail["report"].to_string();
    for source in ["db", "cache", "uploads"] {
        assert!(
            report.contains(&format!("\"source\":\"{source}\"")),
            "{report}"
        );
    }
    // Retention keeps two snapshots per source.
    let snapshots = env.ok(&["--json", "snapshots", "--source", "cache"]).json();
    assert!(
        snapshots.as_array().map_or(0, |a| a.len()) <= 3,
        "{snapshots}"
    );

    let status = d.json("/api/status");
    let metrics = &status["current_metrics"];
    assert_eq!(metrics["backup_success_rate"], 1.0, "{status}");
    assert!(
        metrics["last_backup_age_hours"].as_f64() < Some(1.0),
        "{status}"
    );
    assert!(
        metrics["disk_space_used_percent"].as_f64() > Some(0.0),
        "{status}"
    );
    let datastores = status["datastores"].as_array().expect("datastores");
    let cache = datastores
        .iter()
        .find(|d| d["name"] == "cache")
        .expect("cache");
    assert!(cache["backups_succeeded"].as_u64() >= Some(2), "{status}");
    assert!(cache["last_success"].is_string(), "{status}");

    // The slow job's slot comes: kill the daemon and the run it started, as a power cut would.
    let running = d.wait_runs("the slow job running", |runs| {
        of(runs, "slow").iter().any(|r| r["result"] == "running")
    });
    let slot = of(&running, "slow")[0]["slot"].clone();
    std::thread::sleep(Duration::from_secs(2));
    let run_job_pids = pids_of("run-job slow");
    assert!(!run_job_pids.is_empty(), "run-job is running");
    d.signal(libc::SIGKILL);
    for pid in run_job_pids {
        // SAFETY: the run-job this test's daemon started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    drop(d);
    std::thread::sleep(Duration::from_secs(1));
    let d = Daemon::start(&env, port);
    let runs = d.wait_runs("the interrupted slot run again", |runs| {
        of(runs, "slow")
            .iter()
            .any(|r| r["result"] == "success" && r["slot"] == slot)
    });
    let slow = of(&runs, "slow");
    let same_slot: Vec<&&serde_json::Value> = slow.iter().filter(|r| r["slot"] == slot).collect();
    assert_eq!(
        results(&same_slot.iter().map(|r| **r).collect::<Vec<_>>()),
        ["success", "interrupted"],
        "the killed run is interrupted, its slot ran once more: {slow:#?}"
    );
    assert!(
        same_slot[1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("killed"),
        "{slow:#?}"
    );
    d.stop();
    env.ok(&["check", "--read-data"]);
    // Each successful run left one snapshot and the killed one none (a later slot may have
    // come and run before the daemon stopped).
    let db = rusqlite::Connection::open(env.path("state/state.db")).expect("state db");
    let successes: i64 = db
        .query_row(
            "SELECT count(*) FROM runs WHERE job = 'slow' AND result = 'success'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    let late = env.ok(&["--json", "snapshots", "--source", "slow"]).json();
    assert_eq!(
        late.as_array().map(|a| a.len() as i64),
        Some(successes),
        "one complete snapshot per successful run: {late}"
    );
}

/// Process ids whose command line contains `needle`.
fn pids_of(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && text.contains("bulwark") {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn the_api_asks_for_tokens_and_roles_and_answers_bad_requests_with_json() {
    let env = Env::new();
    let port = daemon::configure(
        &env,
        "[jobs.nightly]\nkind = \"backup\"\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n",
    );
    let d = Daemon::start(&env, port);
    assert_eq!(d.get("/healthz", None).0, 200);
    assert_eq!(d.get("/api/status", None).0, 401);
    assert_eq!(d.get("/metrics", Some("not-a-token-at-all")).0, 401);
    let (code, body) = d.post("/api/jobs/nightly/run", Some(READER));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    for (method, path, want) in [
        ("POST", "/api/jobs/nope/run", 404),
        ("GET", "/api/runs/xyz", 400),
        ("GET", "/api/runs/999999", 404),
        ("GET", "/api/runs?limit=0", 400),
        ("GET", "/api/runs?limit=abc", 400),
        ("POST", "/api/alerts/12/acknowledge", 404),
        ("POST", "/api/alerts/x/acknowledge", 400),
        ("GET", "/api/nothing", 404),
    ] {
        let (code, body) = match method {
            "POST" => d.post(path, Some(ADMIN)),
            _ => d.get(path, Some(ADMIN)),
        };
        assert_eq!(code, want, "{method} {path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(
            v["error"].is_string(),
            "{method} {path}: JSON error expected, got {body}"
        );
    }
    let jobs = d.json("/api/jobs");
    assert_eq!(jobs[0]["name"], "nightly");
    assert_eq!(jobs[0]["interval_secs"], 86400, "{jobs}");
    assert_eq!(jobs[0]["timezone"], "Europe/Berlin");

    let (code, body) = d.post("/api/jobs/nightly/run", Some(ADMIN));
    assert_eq!(code, 202, "{body}");
    let runs = d.wait_runs("the triggered run", |runs| {
        of(runs, "nightly").iter().any(|r| r["result"] == "success")
    });
    assert_eq!(of(&runs, "nightly")[0]["trigger"], "api:ops");

    // An alert in the store (the alerts issue fires them) is acknowledged by name.
    let db = rusqlite::Connection::open(env.path("state/state.db")).expect("state db");
    db.execute(
        "INSERT INTO alerts (rule, datastore, severity, summary, fired) VALUES ('backup_failed', 'uploads', 'critical', 'x', 1)",
        [],
    )
    .expect("alert");
    let id = db.last_insert_rowid();
    let (code, body) = d.post(&format!("/api/alerts/{id}/acknowledge"), Some(ADMIN));
    assert_eq!(code, 200, "{body}");
    let alerts = d.json("/api/alerts");
    assert_eq!(alerts[0]["acknowledged_by"], "ops", "{alerts}");

    // The audit log names the token for what the API did, and the job for what its run did;
    // the daemon's own events wait for the key and are chained by the next command.
    let audit = env.ok(&["audit", "--json"]).json();
    let entry = |action: &str| {
        audit
            .as_array()
            .and_then(|a| a.iter().find(|e| e["action"] == action))
            .unwrap_or_else(|| panic!("no '{action}' entry in {audit:#}"))
            .clone()
    };
    let trigger = entry("run job");
    assert_eq!(
        (&trigger["actor"], &trigger["via"], &trigger["target"]),
        (&"api:ops".into(), &"api".into(), &"nightly".into()),
        "{trigger}"
    );
    assert!(trigger["chained"].is_string(), "chained later: {trigger}");
    let backup = entry("backup");
    assert_eq!(backup["via"], "job nightly (api:ops)", "{backup}");
    assert_eq!(backup["result"], "success", "{backup}");
    let ack = entry("acknowledge alert");
    assert_eq!(ack["actor"], "api:ops", "{ack}");
    assert_eq!(ack["target"], format!("alert {id}"), "{ack}");
    assert_eq!(env.run(&["audit", "verify"]).code, 0);

    // `bulwark status` asks the daemon with a token of the config and prints its answer.
    let status = env.run(&["status"]);
    assert!(
        [0, 8, 9].contains(&status.code),
        "{}{}",
        status.stdout,
        status.stderr
    );
    assert!(status.stdout.starts_with("overall: "), "{}", status.stdout);
    assert!(status.stdout.contains("\nuploads "), "{}", status.stdout);
    let json = env.run(&["status", "--json"]).json();
    assert_eq!(json["datastores"][0]["name"], "uploads", "{json}");
    let down = env.run(&[
        "status",
        "--url",
        &format!("http://127.0.0.1:{}", daemon::port()),
    ]);
    assert_eq!(down.code, 1);
    assert!(down.stderr.contains("does not answer"), "{}", down.stderr);
    let log = d.log();
    for secret in [ADMIN, READER] {
        assert!(!log.contains(secret), "a token in the log:\n{log}");
    }
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_and_a_good_one_replaces_it() {
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    let port = daemon::port();
    let base = format!(
        "{}[sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n\n",
        daemon::section(port)
    );
    let job = |name: &str, schedule: &str| {
        format!("[jobs.{name}]\nkind = \"backup\"\nschedule = \"{schedule}\"\n")
    };
    std::fs::write(
        env.path("bulwark.toml"),
        format!("{base}{}", job("first", "0 3 * * *")),
    )
    .expect("config");
    env.init();
    let d = Daemon::start(&env, port);
    let broken = format!("{base}{}", job("second", "0 25 * * *"));
    std::fs::write(env.path("bulwark.toml"), &broken).expect("config");
    d.signal(libc::SIGHUP);
    let line = broken
        .lines()
        .position(|l| l.starts_with("schedule"))
        .expect("line")
        + 1;
    d.wait_until("the refusal", || d.log().contains("reload refused"));
    let log = d.log();
    assert!(
        log.contains(&format!("bulwark.toml:{line}:")),
        "file and line: {log}"
    );
    assert!(log.contains("hour '25'"), "{log}");
    assert_eq!(
        d.json("/api/jobs")[0]["name"],
        "first",
        "the old config stays"
    );

    std::fs::write(
        env.path("bulwark.toml"),
        format!("{base}{}", job("second", "0 4 * * *")),
    )
    .expect("config");
    d.signal(libc::SIGHUP);
    d.wait_until("the new config", || {
        d.json("/api/jobs")[0]["name"] == "second"
    });
    assert_eq!(d.stop(), Some(0), "SIGTERM ends the daemon cleanly");
    let audit = env.ok(&["audit", "--json"]).json();
    let reloads: Vec<&str> = audit
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "config reload")
        .filter_map(|e| e["result"].as_str())
        .collect();
    assert_eq!(reloads.len(), 2, "{audit:#}");
    assert!(
        reloads[0].starts_with("refused: ") && reloads[0].contains("hour '25'"),
        "{reloads:?}"
    );
    assert_eq!(reloads[1], "success");
}

#[test]
fn bad_job_config_and_missing_token_files_are_refused_at_start_with_file_and_line() {
    let env = Env::new();
    let files = "[sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n\n";
    for (text, line, words) in [
        (format!("{files}[jobs.x]\nkind = \"backup\"\nschedule = \"61 * * * *\"\n"), 7, "minute '61'"),
        (format!("{files}[jobs.x]\nkind = \"rsync\"\nschedule = \"@daily\"\n"), 6, "unknown job kind"),
        (format!("{files}[jobs.x]\nkind = \"backup\"\nschedule = \"@daily\"\nsources = [\"nope\"]\n"), 8, "no [sources.nope]"),
        (format!("{files}[jobs.x]\nkind = \"backup\"\nschedule = \"@daily\"\ntimezone = \"Mars/Olympus\"\n"), 8, "Mars/Olympus"),
        (format!("{files}[daemon.tokens.ci]\nrole = \"admin\"\ntoken_file = \"missing.token\"\n"), 5, "missing.token"),
        (format!("{files}[daemon]\nlisten = \"0.0.0.0:8081\"\n"), 6, "allow_remote"),
    ] {
        std::fs::write(env.path("bulwark.toml"), &text).expect("config");
        let r = env.run(&["daemon"]);
        assert_eq!(r.code, 2, "{text}\n{}", r.stderr);
        assert!(r.stderr.contains(&format!("bulwark.toml:{line}:")), "line {line}: {}", r.stderr);
        assert!(r.stderr.contains(words), "{words}: {}", r.stderr);
    }
}

#[test]
fn a_datastore_down_at_job_time_fails_the_run_with_the_reason_and_the_next_run_proceeds() {
    let env = Env::new();
    let port = daemon::port();
    let nowhere = common::free_port();
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "{}[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{nowhere}\"\n\n\
             [jobs.backup]\nkind = \"backup\"\nschedule = \"*/2 * * * * *\"\n",
            daemon::section(port)
        ),
    )
    .expect("config");
    env.init();
    let d = Daemon::start(&env, port);
    let runs = d.wait_runs("two failed runs", |runs| {
        of(runs, "backup")
            .iter()
            .filter(|r| r["result"] == "failed")
            .count()
            >= 2
    });
    let failed = of(&runs, "backup")
        .into_iter()
        .find(|r| r["result"] == "failed")
        .expect("failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cache") || error.contains("failed"),
        "{failed}"
    );
    let detail = d.json(&format!("/api/runs/{}", failed["id"]));
    assert!(
        detail["log"]
            .as_str()
            .unwrap_or_default()
            .contains(&nowhere.to_string()),
        "the log excerpt names the server: {detail}"
    );
    let status = d.json("/api/status");
    assert_eq!(
        status["current_metrics"]["backup_success_rate"], 0.0,
        "{status}"
    );
    let metrics = d.get("/metrics", Some(READER)).1;
    assert!(
        metrics.contains("bulwark_datastore_backups_total{datastore=\"cache\",kind=\"redis\",result=\"failure\"}"),
        "{metrics}"
    );
}

/// Runs Prometheus' promtool; None (skipped, loudly) when it is not installed, which fails
/// under CI.
fn promtool(args: &[&str], stdin: &str) -> Option<(bool, String)> {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(args)
        .current_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/prometheus"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: promtool is not installed (Debian package prometheus); Prometheus checks did not run");
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the promtool checks"
        );
        return None;
    };
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

#[test]
fn metrics_pass_promtool_and_the_shipped_alert_rules_pass_their_tests() {
    let Some(redis) = Redis::start(&[]) else {
        return;
    };
    redis.cli(&["SET", "k", "v"]);
    let env = Env::new();
    let port = daemon::configure(
        &env,
        &format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\n\
             [jobs.backup]\nkind = \"backup\"\nschedule = \"*/2 * * * * *\"\n\n\
             [jobs.drill]\nkind = \"drill\"\nscenario = \"full_disaster\"\nschedule = \"*/3 * * * * *\"\n\n\
             [jobs.verify]\nkind = \"check\"\nschedule = \"*/3 * * * * *\"\n",
            redis.port()
        ),
    );
    let d = Daemon::start(&env, port);
    d.wait_runs("a backup, a drill and a check", |runs| {
        succeeded(runs, "backup") >= 1
            && succeeded(runs, "drill") >= 1
            && succeeded(runs, "verify") >= 1
    });
    // The assessment after the last job, so that repository and drill figures are in.
    std::thread::sleep(Duration::from_secs(3));
    let (code, scrape) = d.get("/metrics", Some(READER));
    assert_eq!(code, 200);
    for family in [
        "bulwark_build_info{version=",
        "bulwark_datastore_last_success_timestamp_seconds{datastore=\"cache\",kind=\"redis\"}",
        "bulwark_datastore_backups_total{datastore=\"uploads\",kind=\"files\",result=\"success\"}",
        "bulwark_datastore_recovery_point_timestamp_seconds{datastore=\"cache\"",
        "bulwark_repository_size_bytes ",
        "bulwark_repository_check_ok 1",
        "bulwark_scenario_drill_passed{scenario=\"full_disaster\"} 1",
        "bulwark_job_next_run_timestamp_seconds{job=\"backup\",kind=\"backup\"}",
        "bulwark_job_interval_seconds{job=\"backup\",kind=\"backup\"} 2",
    ] {
        assert!(scrape.contains(family), "{family} missing:\n{scrape}");
    }
    let drills = d.json("/api/drills");
    assert_eq!(drills[0]["scenario"], "full_disaster", "{drills}");
    assert_eq!(drills[0]["result"], "passed", "{drills}");
    let Some((ok, out)) = promtool(&["check", "metrics"], &scrape) else {
        return;
    };
    assert!(ok, "promtool check metrics: {out}\n{scrape}");
    let (ok, out) = promtool(&["test", "rules", "bulwark-alerts.test.yml"], "").expect("promtool");
    assert!(ok, "promtool test rules: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Schemathesis (PyPI) generates requests from the served OpenAPI document, valid and not, with
/// and without the token, and checks every answer against it: status codes, content types,
/// headers and bodies. The state holds real runs and an open alert, so the schemas of runs,
/// jobs, status and alerts are all exercised.
#[test]
fn the_openapi_document_matches_the_running_server() {
    let Some(schemathesis) = tool_on_path("schemathesis") else {
        eprintln!("SKIPPED: schemathesis is not installed (scripts/install-deps.sh installs it from PyPI); the API contract test did not run");
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the API contract test"
        );
        return;
    };
    let env = Env::new();
    let port = daemon::configure(
        &env,
        "[sources.broken]\nkind = \"files\"\npaths = [\"missing\"]\n\n\
             [jobs.backup]\nkind = \"backup\"\nsources = [\"uploads\"]\nschedule = \"*/2 * * * * *\"\n\n\
             [jobs.failing]\nkind = \"backup\"\nsources = [\"broken\"]\nschedule = \"*/3 * * * * *\"\n",
    );
    // An open alert (the alert rules that raise them come with the alerts issue).
    let state = env.path("state");
    std::fs::create_dir_all(&state).expect("state dir");
    {
        let d = Daemon::start(&env, port);
        d.wait_runs("a success and a failure", |runs| {
            succeeded(runs, "backup") >= 1
                && of(runs, "failing").iter().any(|r| r["result"] == "failed")
        });
        d.stop();
    }
    let db = rusqlite::Connection::open(state.join("state.db")).expect("state db");
    db.execute(
        "INSERT INTO alerts (rule, datastore, severity, summary, fired) \
         VALUES ('backup_failed', 'broken', 'critical', 'the backup of <broken> failed', 1.0e9)",
        [],
    )
    .expect("alert");
    drop(db);
    let d = Daemon::start(&env, port);
    let out = std::process::Command::new(schemathesis)
        .args(["run", &format!("http://127.0.0.1:{port}/api/openapi.json")])
        .args(["--checks", "all", "--max-examples", "30", "--workers", "2"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(env.path(""))
        .output()
        .expect("schemathesis runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found the API and its document disagree:\n{text}\n{}",
        d.log()
    );
    let document: serde_json::Value =
        serde_json::from_str(include_str!("../src/web/openapi.json")).expect("the document");
    let operations = document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, item)| item.as_object().into_iter().flatten())
        .filter(|(key, _)| ["get", "post", "put", "delete", "patch"].contains(&key.as_str()))
        .count();
    // Schemathesis (4.32) reports one operation fewer than the document lists; what matters is
    // that it selects all it reports and that the figure follows the document.
    let tested = operations - 1;
    assert!(
        text.contains(&format!("{tested} selected / {tested} total")),
        "the document's {operations} operations tested:\n{text}"
    );
    assert!(
        !text.contains("Missing test data"),
        "every operation reached with real ids:\n{text}"
    );
}

/// The path of `name` if an executable of that name is on PATH.
fn tool_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The state directory fills up: jobs go on (new snapshots keep coming), the API and
/// /metrics report the write failure, and once space is back the runs are recorded again.
#[test]
fn a_full_state_disk_does_not_stop_the_jobs_and_is_reported() {
    let env = Env::new();
    let Some(_disk) = Tmpfs::mount(&env.path("state"), "2m") else {
        return;
    };
    let port = daemon::configure(
        &env,
        "[jobs.backup]\nkind = \"backup\"\nschedule = \"*/2 * * * * *\"\n",
    );
    let d = Daemon::start(&env, port);
    d.wait_runs("a first backup", |runs| succeeded(runs, "backup") >= 1);

    // Fill the state disk to the last byte.
    let filler = env.path("state/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
    }
    let snapshots = || {
        env.ok(&["snapshots", "--json"])
            .json()
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = snapshots();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reported = serde_json::Value::Null;
    while snapshots() < before + 2 || reported.is_null() {
        assert!(
            Instant::now() < deadline,
            "jobs stopped or the failure went unreported:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(500));
        reported = d.json("/api/status")["daemon"]["state_error"].clone();
    }
    let reason = reported.as_str().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("full") || reason.contains("space"),
        "{reported}"
    );
    let (_, metrics) = d.get("/metrics", Some(READER));
    assert!(metrics.contains("\nbulwark_state_ok 0\n"), "{metrics}");
    assert!(d.log().contains("warning: state database"), "{}", d.log());

    std::fs::remove_file(&filler).expect("free the disk");
    let recorded = succeeded(
        &d.json("/api/runs?limit=1000")
            .as_array()
            .cloned()
            .unwrap_or_default(),
        "backup",
    );
    d.wait_runs("runs recorded again", |runs| {
        succeeded(runs, "backup") >= recorded + 2
    });
    d.wait_until("the failure cleared", || {
        d.json("/api/status")["daemon"]["state_error"].is_null()
    });
    let (_, metrics) = d.get("/metrics", Some(READER));
    assert!(metrics.contains("\nbulwark_state_ok 1\n"), "{metrics}");
}

/// Dead-man pings, healthchecks style: `/start` when a run begins, the URL itself on success,
/// `/fail` on failure; a receiver that is down costs a warning, not the run.
#[test]
fn jobs_ping_their_dead_man_url_at_start_success_and_failure() {
    let receiver = Receiver::start();
    let env = Env::new();
    let down = daemon::port();
    let port = daemon::configure(
        &env,
        &format!(
            "[sources.gone]\nkind = \"files\"\npaths = [\"missing\"]\n\n\
             [jobs.good]\nkind = \"backup\"\nsources = [\"uploads\"]\nschedule = \"0 3 * * *\"\n\
             ping_url = \"http://127.0.0.1:{r}/ping/good\"\n\n\
             [jobs.bad]\nkind = \"backup\"\nsources = [\"gone\"]\nschedule = \"0 3 * * *\"\n\
             ping_url = \"http://127.0.0.1:{r}/ping/bad/\"\n\n\
             [jobs.unheard]\nkind = \"backup\"\nsources = [\"uploads\"]\nschedule = \"0 3 * * *\"\n\
             ping_url = \"http://127.0.0.1:{down}/ping/unheard\"\n",
            r = receiver.port,
        ),
    );
    let d = Daemon::start(&env, port);
    for job in ["good", "bad", "unheard"] {
        let (code, body) = d.post(&format!("/api/jobs/{job}/run"), Some(ADMIN));
        assert_eq!(code, 202, "{body}");
        d.wait_runs(job, |runs| {
            of(runs, job).iter().any(|r| r["result"] != "running")
        });
    }
    let runs = d.json("/api/runs");
    let result = |job: &str| of(runs.as_array().expect("runs"), job)[0]["result"].clone();
    assert_eq!(result("good"), "success");
    assert_eq!(result("bad"), "failed");
    assert_eq!(
        result("unheard"),
        "success",
        "an unreachable ping URL does not fail the run"
    );
    let lines = receiver.lines();
    assert_eq!(
        lines,
        [
            "GET /ping/good/start HTTP/1.1",
            "GET /ping/good HTTP/1.1",
            "GET /ping/bad/start HTTP/1.1",
            "GET /ping/bad/fail HTTP/1.1",
        ],
        "{lines:?}"
    );
}

/// TLS from a certificate and key file: HTTPS answers, plain HTTP does not, a client that
/// never finishes its handshake holds nobody up, `bulwark status` trusts the daemon's own
/// certificate; a key that does not parse stops the daemon at start, naming the setting.
#[test]
fn the_api_serves_tls_from_certificate_and_key_files() {
    let env = Env::new();
    if !common::self_signed_certificate(&env.path("")) {
        return;
    }
    write_sample_tree(&env.path("data"));
    let port = daemon::port();
    let config = |key: &str| {
        format!(
            "{}[sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n",
            daemon::section(port).replace(
                "[daemon]\n",
                &format!("[daemon]\ntls_cert = \"cert.pem\"\ntls_key = \"{key}\"\n")
            )
        )
    };
    std::fs::write(env.path("bulwark.toml"), config("key.pem")).expect("config");
    env.init();
    let mut child = env
        .command()
        .arg("daemon")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("daemon");
    let cert = reqwest::Certificate::from_pem(&std::fs::read(env.path("cert.pem")).expect("cert"))
        .expect("pem");
    let https = reqwest::blocking::Client::builder()
        .add_root_certificate(cert)
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client");
    let url = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while https.get(format!("{url}/healthz")).send().is_err() {
        assert!(Instant::now() < deadline, "no HTTPS answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A client that connects and says nothing does not hold up the next one.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let answer = https
        .get(format!("{url}/api/status"))
        .bearer_auth(READER)
        .send()
        .expect("HTTPS while a handshake hangs");
    assert_eq!(answer.status(), 200);
    let plain = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send();
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP must not be served"
    );
    let status = env.run(&["status", "--json"]);
    assert_eq!(
        status.json()["datastores"][0]["name"],
        "uploads",
        "{}",
        status.stderr
    );
    // SAFETY: signals the daemon this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();

    std::fs::write(
        env.path("bad-key.pem"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .expect("key");
    std::fs::write(env.path("bulwark.toml"), config("bad-key.pem")).expect("config");
    let r = env.run(&["daemon"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("tls_key"), "{}", r.stderr);
}

/// A copy job fills the off-site repository, a drill job restores the scenario into a sandbox
/// and lands in the drill index with its RTO and RPO; the audit log names both.
#[test]
fn copy_and_drill_jobs_run_and_the_drill_is_indexed() {
    let env = Env::new();
    let offsite = env.path("offsite");
    let port = daemon::configure(
        &env,
        &format!(
            "[repositories.offsite]\nurl = \"{}\"\n\n\
             [jobs.backup]\nkind = \"backup\"\nschedule = \"0 3 * * *\"\n\n\
             [jobs.offsite]\nkind = \"copy\"\nto = \"offsite\"\nschedule = \"0 4 * * *\"\n\n\
             [jobs.drill]\nkind = \"drill\"\nscenario = \"full_disaster\"\nschedule = \"0 5 * * *\"\n",
            offsite.display()
        ),
    );
    env.ok(&[
        "--repo",
        &offsite.to_string_lossy(),
        "init",
        "--copy-params-from",
        &env.repo(),
    ]);
    let d = Daemon::start(&env, port);
    for job in ["backup", "offsite", "drill"] {
        let (code, body) = d.post(&format!("/api/jobs/{job}/run"), Some(ADMIN));
        assert_eq!(code, 202, "{body}");
        let runs = d.wait_runs(job, |runs| {
            of(runs, job).iter().any(|r| r["result"] != "running")
        });
        assert_eq!(
            of(&runs, job)[0]["result"],
            "success",
            "{job}: {runs:#?}\n{}",
            d.log()
        );
    }
    let copied = env
        .ok(&["--repo", &offsite.to_string_lossy(), "--json", "snapshots"])
        .json();
    assert_eq!(copied.as_array().map(Vec::len), Some(1), "{copied}");
    let drills = d.json("/api/drills");
    let drill = &drills[0];
    assert_eq!(drill["scenario"], "full_disaster", "{drills}");
    assert_eq!(drill["result"], "passed", "{drills}");
    assert!(drill["rto_secs"].as_f64() > Some(0.0), "{drills}");
    assert!(drill["run"].is_i64(), "linked to its run: {drills}");
    let (_, metrics) = d.get("/metrics", Some(READER));
    assert!(
        metrics.contains("bulwark_scenario_drill_passed{scenario=\"full_disaster\"} 1"),
        "{metrics}"
    );
    d.stop();
    let audit = env.ok(&["audit", "--json"]).json();
    let actions: Vec<&str> = audit
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["backup", "copy", "drill"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}
