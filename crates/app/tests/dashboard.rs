//! The dashboard in a real browser (headless Chromium over WebDriver) against a daemon that
//! ran real backups, a check and a drill: login, the figures the API reports, escaping of
//! hostile error text, acknowledge, run now, the run log, the drill report, logout, a
//! read-only login; and the session rules (CSRF, expiry, logout) over plain HTTP.
//! Screenshots go to target/test-artifacts/dashboard/.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::{self, Browser};
use common::daemon::{self, Daemon, ADMIN, READER};
use common::Env;
use engine::connectors::redis::server::RedisServer;
use serde_json::Value;

/// Where screenshots are kept after the test (CI keeps them as artifacts).
fn artifacts() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/dashboard");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// Sizes as the page prints them (app.js `bytes`).
fn page_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let (mut v, mut i) = (n as f64, 0);
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", units[i])
    }
}

/// Triggers `job` as admin and waits for its run to end; the run.
fn run_job(d: &Daemon, job: &str) -> Value {
    let (code, body) = d.post(&format!("/api/jobs/{job}/run"), Some(ADMIN));
    assert_eq!(code, 202, "{job}: {body}");
    let id = serde_json::from_str::<Value>(&body).expect("JSON")["run"].clone();
    let runs = d.wait_runs(&format!("run {id} of {job}"), |runs| {
        runs.iter()
            .any(|r| r["id"] == id && r["result"] != "running")
    });
    runs.into_iter().find(|r| r["id"] == id).expect("the run")
}

fn login(b: &Browser, base: &str, token: &str) {
    b.open(&format!("{base}/login"));
    let field = b.find("#token");
    b.type_into(&field, token);
    b.click(&b.find("button[type=submit]"));
}

fn severe(b: &Browser) -> Vec<String> {
    b.console()
        .into_iter()
        .filter(|l| l.starts_with("SEVERE"))
        .collect()
}

#[test]
fn the_dashboard_shows_what_the_api_reports_and_its_buttons_work() {
    if !browser::available() || !common::redis::available() {
        return;
    }
    let env = Env::new();
    let redis_port = common::free_port();
    std::fs::create_dir_all(env.path("redis")).expect("redis directory");
    let _redis =
        RedisServer::start(&env.path("redis"), redis_port, &[], false).expect("redis starts");
    let port = daemon::configure(
        &env,
        &format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\n\n\
             [sources.broken]\nkind = \"command\"\n\
             command = \"echo '<img src=x onerror=alert(1)> dump failed' >&2; exit 3\"\n\
             filename = \"broken.txt\"\n\n\
             [jobs.backup]\nkind = \"backup\"\nschedule = \"0 3 * * *\"\n\n\
             [jobs.check]\nkind = \"check\"\nschedule = \"0 5 * * *\"\n\n\
             [jobs.drill]\nkind = \"drill\"\nsources = [\"uploads\"]\nschedule = \"0 4 * * *\"\n\n"
        ),
    );
    let d = Daemon::start(&env, port);
    let base = format!("http://127.0.0.1:{port}");
    let backup = run_job(&d, "backup");
    assert_ne!(
        backup["result"], "success",
        "the broken source must fail the run"
    );
    run_job(&d, "check");
    let drill = run_job(&d, "drill");
    assert_eq!(drill["result"], "success", "{drill}");
    d.wait_until("the assessment and the alert after the jobs", || {
        let s = d.json("/api/status");
        !s["repository"]["last_check"].is_null()
            && s["active_alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["rule"] == "backup_failed"))
    });
    let status = d.json("/api/status");
    let store = |name: &str| {
        status["datastores"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no datastore {name} in {status}"))
    };

    let b = Browser::start(env.dir.path());
    let shots = artifacts();

    // Not logged in: the login form. A wrong token is refused there.
    b.open(&format!("{base}/"));
    assert!(b.url().ends_with("/login"), "{}", b.url());
    login(&b, &base, "not-a-token-at-all-0000");
    assert_eq!(b.text(&b.find("#login-error")), "unknown token");
    b.console(); // the 401 of that attempt is expected

    // A read-only token sees the page but no buttons that change anything.
    login(&b, &base, READER);
    b.find("#datastores .card[data-name=uploads]");
    b.find("#alerts tr[data-alert]");
    assert!(b.all("button.run").is_empty() && b.all("button.ack").is_empty());
    b.screenshot(&shots.join("read-only.png"));
    b.click(&b.find("#logout"));
    b.find("#token");
    assert!(b.url().ends_with("/login"));
    let (code, _) = d.get("/api/status", None);
    assert_eq!(code, 401);

    // The admin sees the figures the API reports.
    login(&b, &base, ADMIN);
    let snapshots = status["repository"]["snapshots"].to_string();
    assert_eq!(
        b.text_when("[data-name=repository] [data-field=snapshots]", |t| !t
            .is_empty()),
        snapshots
    );
    let space = &status["repository"]["space"];
    for (field, key) in [
        ("dedup", "dedup_ratio"),
        ("compression", "compression_ratio"),
    ] {
        let ratio = space[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {space}"));
        assert!(ratio > 0.5, "{space}");
        assert_eq!(
            b.text(&b.find(&format!("[data-name=repository] [data-field={field}]"))),
            format!("{ratio:.2}×")
        );
    }
    let uploads = store("uploads");
    assert_eq!(
        b.text(&b.find("[data-name=uploads] [data-field=last_result]")),
        "success"
    );
    assert_eq!(
        b.text(&b.find("[data-name=uploads] [data-field=size]")),
        page_bytes(uploads["last_size_bytes"].as_u64().expect("a size"))
    );
    assert_eq!(
        b.text(&b.find("[data-name=cache] [data-field=last_result]")),
        "success"
    );
    // Hostile error text is shown as text, never as markup.
    let error = b.text(&b.find("[data-name=broken] [data-field=error]"));
    assert!(
        error.contains("<img src=x onerror=alert(1)> dump failed"),
        "{error}"
    );
    assert_eq!(
        b.script("return document.querySelectorAll('#datastores img').length"),
        0
    );
    for job in ["backup", "check", "drill"] {
        b.find(&format!("#jobs tr[data-job={job}]"));
    }
    let newest = d.json("/api/runs?limit=1")[0]["id"].clone();
    assert_eq!(b.text(&b.find("#runs tr[data-run] td")), newest.to_string());
    let drill_id = d.json("/api/drills")[0]["id"]
        .as_str()
        .expect("a drill")
        .to_string();
    b.find(&format!("#drills tr[data-drill='{drill_id}'] a"));
    // The charts are drawn.
    d.wait_until("the charts to load", || {
        b.script(
            "return ['duration','size','results'].every(n => document.getElementById('chart-' + n).naturalWidth > 0)",
        ) == true
    });

    b.script("window.scrollTo(0, 0)");
    b.screenshot(&shots.join("overview.png"));

    // Acknowledge the alert.
    let alert = b.find("#alerts tr[data-alert] button.ack");
    b.click(&alert);
    b.text_when("#alerts", |t| t.contains("acknowledged by ops"));
    let alerts = d.json("/api/alerts");
    assert!(
        alerts.as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["rule"] == "backup_failed" && a["acknowledged_by"] == "ops")),
        "{alerts}"
    );

    // Run a job now.
    b.click(&b.find("#jobs tr[data-job=check] button.run"));
    let message = b.text_when("#message", |t| t.contains("started"));
    let run: i64 = message
        .split("(run ")
        .nth(1)
        .and_then(|r| r.trim_end_matches(").").parse().ok())
        .unwrap_or_else(|| panic!("no run id in {message:?}"));
    let listed = d.wait_runs("the run started from the page", |runs| {
        runs.iter()
            .any(|r| r["id"] == run && r["job"] == "check" && r["result"] == "success")
    });
    assert!(listed.iter().any(|r| r["trigger"] == "api:ops"));

    // The run's log.
    b.click(&b.find(&format!("#runs tr[data-run='{}'] button.log", backup["id"])));
    let title = b.text_when("#log-title", |t| !t.is_empty());
    assert!(title.contains(&format!("Run {}", backup["id"])), "{title}");
    let log = b.text(&b.find("#log"));
    assert!(log.contains("dump failed"), "{log}");

    // The page refreshes itself: a run started elsewhere shows up without a reload.
    let (code, body) = d.post("/api/jobs/drill/run", Some(ADMIN));
    assert_eq!(code, 202, "{body}");
    let elsewhere = serde_json::from_str::<Value>(&body).expect("JSON")["run"].to_string();
    b.text_when("#runs tr[data-run] td", |t| t == elsewhere);

    b.screenshot(&shots.join("dashboard.png"));
    let errors = severe(&b);
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // The drill's report.
    b.open(&format!("{base}/drills/{drill_id}/report"));
    assert!(b.text(&b.find("h1")).starts_with("Restore drill"));
    b.screenshot(&shots.join("drill-report.png"));
    let errors = severe(&b);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// A client that keeps no cookies and follows no redirects: the test handles both.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Logs in with `token`; the session cookie (`name=value`) and the page's CSRF token.
fn session(base: &str, token: &str) -> (String, String) {
    let c = client();
    let r = c
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .expect("login");
    assert_eq!(r.status().as_u16(), 303);
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().expect("name=value").to_string();
    let page = c
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .and_then(|r| r.text())
        .expect("page");
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page carries a CSRF token")
        .to_string();
    (cookie, csrf)
}

fn post(base: &str, path: &str, cookie: &str, csrf: Option<&str>) -> u16 {
    let mut req = client()
        .post(format!("{base}{path}"))
        .header("cookie", cookie);
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    req.send().expect("POST").status().as_u16()
}

fn get(base: &str, path: &str, cookie: &str) -> u16 {
    client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .expect("GET")
        .status()
        .as_u16()
}

#[test]
fn sessions_need_their_csrf_token_expire_and_end_at_logout() {
    let env = Env::new();
    let port = daemon::configure(
        &env,
        "[jobs.backup]\nkind = \"backup\"\nschedule = \"0 3 * * *\"\n\n",
    );
    let config = std::fs::read_to_string(env.path("bulwark.toml")).expect("config");
    let config = config.replacen("[daemon]\n", "[daemon]\nsession_timeout = \"3s\"\n", 1);
    std::fs::write(env.path("bulwark.toml"), config).expect("config");
    let d = Daemon::start(&env, port);
    let base = format!("http://127.0.0.1:{port}");

    // A page on another site cannot log a browser in.
    let r = client()
        .post(format!("{base}/login"))
        .header("origin", "http://attacker.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN}"))
        .send()
        .expect("login");
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    let (cookie, csrf) = session(&base, ADMIN);
    assert_eq!(get(&base, "/api/status", &cookie), 200);
    assert_eq!(post(&base, "/api/jobs/backup/run", &cookie, None), 403);
    assert_eq!(
        post(&base, "/api/jobs/backup/run", &cookie, Some("0123")),
        403
    );
    assert_eq!(
        post(&base, "/api/jobs/backup/run", &cookie, Some(&csrf)),
        202
    );
    // A made-up session is no session.
    assert_eq!(get(&base, "/api/status", "bulwark_session=00ff00ff"), 401);
    let r = client()
        .get(format!("{base}/"))
        .header("cookie", "bulwark_session=00ff00ff")
        .send()
        .expect("page");
    assert_eq!(r.status().as_u16(), 303);

    // A read-only session cannot act, CSRF token or not.
    let (reader, reader_csrf) = session(&base, READER);
    assert_eq!(
        post(&base, "/api/jobs/backup/run", &reader, Some(&reader_csrf)),
        403
    );
    assert_eq!(
        post(
            &base,
            "/api/alerts/1/acknowledge",
            &reader,
            Some(&reader_csrf)
        ),
        403
    );

    // Logout ends the session (and needs the CSRF token too).
    assert_eq!(post(&base, "/logout", &reader, None), 403);
    assert_eq!(post(&base, "/logout", &reader, Some(&reader_csrf)), 204);
    assert_eq!(get(&base, "/api/status", &reader), 401);

    // An expired session is refused.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(get(&base, "/api/status", &cookie), 401);
    assert_eq!(
        post(&base, "/api/jobs/backup/run", &cookie, Some(&csrf)),
        401
    );
    drop(d);
}
