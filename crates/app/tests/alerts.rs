//! Alerts end to end against real receivers: Redis is down, so the scheduled backup fails and
//! each channel (an Alertmanager-style webhook and a Slack webhook, on local HTTP servers) is
//! told once per alert, then again at the repeat interval while nobody acknowledged; an
//! acknowledged alert stops repeating; Redis comes back, the next backup succeeds, and each
//! channel gets one resolved notification per alert.

mod common;

use std::time::Duration;

use common::daemon::{self, Daemon, Receiver, ADMIN, READER};
use common::smtp::{self, Smtp};
use common::Env;
use engine::connectors::redis::server::RedisServer;

/// (alertname, status) of each Alertmanager body the webhook received, in order.
fn webhook_events(hook: &Receiver) -> Vec<(String, String)> {
    hook.requests()
        .iter()
        .filter_map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
        .map(|b| {
            (
                b["alerts"][0]["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                b["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn count(events: &[(String, String)], name: &str, status: &str) -> usize {
    events
        .iter()
        .filter(|(n, s)| n == name && s == status)
        .count()
}

#[test]
fn a_failed_backup_alerts_each_channel_once_repeats_until_acknowledged_and_resolves() {
    if !common::redis::available() {
        return;
    }
    let hook = Receiver::start();
    let slack = Receiver::start();
    let Some(mail) = Smtp::start(None) else {
        return;
    };
    let redis_port = common::free_port();
    let env = Env::new();
    let port = daemon::configure(
        &env,
        &format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\n\n\
             [jobs.backup]\nkind = \"backup\"\nsources = [\"cache\"]\nschedule = \"*/2 * * * * *\"\n\n\
             [alerts]\nrepeat_interval = \"3s\"\n\n\
             [alerts.channels.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\n\
             [alerts.channels.slack]\nkind = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\nmin_severity = \"critical\"\n\n\
             [alerts.channels.mail]\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"bulwark@example.com\"\nto = [\"ops@example.com\"]\nusername = \"{}\"\npassword = \"{}\"\n",
            hook.port, mail.port, smtp::USER, smtp::PASSWORD
        ),
    );
    let mut env = env;
    env.set(
        "TEST_SLACK_URL",
        &format!("http://127.0.0.1:{}/services/T0/B0/x", slack.port),
    );
    let d = Daemon::start(&env, port);

    // Redis is down: the backup fails, the alert fires and, unacknowledged, repeats.
    d.wait_until("BulwarkBackupFailed fired and repeated", || {
        count(&webhook_events(&hook), "BulwarkBackupFailed", "firing") >= 2
    });
    let first = hook
        .requests()
        .into_iter()
        .map(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).expect("JSON body"))
        .find(|b| b["alerts"][0]["labels"]["alertname"] == "BulwarkBackupFailed")
        .expect("a body");
    assert_eq!(first["version"], "4");
    assert_eq!(first["receiver"], "hook");
    let alert = &first["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["datastore"], "cache");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        alert["startsAt"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "{alert}"
    );
    assert_eq!(
        alert["fingerprint"].as_str().map(str::len),
        Some(16),
        "{alert}"
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("cache"),
        "{alert}"
    );
    assert!(
        hook.lines().iter().all(|l| l.starts_with("POST /hook ")),
        "{:?}",
        hook.lines()
    );
    d.wait_until("the Slack message", || !slack.requests().is_empty());
    let (line, body) = &slack.requests()[0];
    assert!(line.starts_with("POST /services/T0/B0/x "), "{line}");
    let text = serde_json::from_str::<serde_json::Value>(body).expect("JSON")["text"].clone();
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("CRITICAL") && t.contains("[cache]")),
        "{text}"
    );

    // `bulwark status` shows what is wrong right now.
    let status = env.run(&["status"]);
    assert_eq!(
        status.code, 9,
        "critical: {}{}",
        status.stdout, status.stderr
    );
    assert!(
        status.stdout.contains("ALERT") && status.stdout.contains("[critical] cache"),
        "{}",
        status.stdout
    );

    // Acknowledged: no more repeats of that alert.
    let alerts = d.json("/api/alerts");
    let id = alerts
        .as_array()
        .and_then(|a| a.iter().find(|a| a["rule"] == "backup_failed"))
        .map(|a| a["id"].clone())
        .expect("the backup_failed alert");
    let (code, body) = d.post(&format!("/api/alerts/{id}/acknowledge"), Some(ADMIN));
    assert_eq!(code, 200, "{body}");
    std::thread::sleep(Duration::from_secs(1));
    let after_ack = count(&webhook_events(&hook), "BulwarkBackupFailed", "firing");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        count(&webhook_events(&hook), "BulwarkBackupFailed", "firing"),
        after_ack,
        "an acknowledged alert does not repeat: {:?}",
        webhook_events(&hook)
    );

    // Redis is back: the next backup succeeds and every open alert resolves, once per channel.
    let dir = tempfile::tempdir().expect("dir");
    let _redis = RedisServer::start(dir.path(), redis_port, &[], false).expect("redis starts");
    d.wait_until("every alert resolved", || {
        d.json("/api/alerts")
            .as_array()
            .is_some_and(|a| a.iter().all(|a| !a["resolved"].is_null()))
    });
    std::thread::sleep(Duration::from_secs(4));
    let events = webhook_events(&hook);
    let fired: std::collections::BTreeSet<&String> = events.iter().map(|(n, _)| n).collect();
    for name in fired {
        assert_eq!(count(&events, name, "resolved"), 1, "{name}: {events:?}");
    }
    assert_eq!(count(&events, "BulwarkBackupFailed", "resolved"), 1);
    let resolved = hook
        .requests()
        .into_iter()
        .map(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).expect("JSON body"))
        .find(|b| {
            b["status"] == "resolved"
                && b["alerts"][0]["labels"]["alertname"] == "BulwarkBackupFailed"
        })
        .expect("resolved body");
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        resolved["alerts"][0]["fingerprint"], alert["fingerprint"],
        "the same alert"
    );
    let slack_texts: Vec<String> = slack.requests().iter().map(|(_, b)| b.clone()).collect();
    assert!(
        slack_texts
            .iter()
            .any(|t| t.contains("RESOLVED") && t.contains("BulwarkBackupFailed")),
        "{slack_texts:?}"
    );
    let subjects: Vec<String> = mail
        .messages()
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("Subject: "))
                .map(str::to_string)
        })
        .collect();
    let firing = "Subject: [bulwark] CRITICAL: BulwarkBackupFailed on cache";
    let resolved_mail = "Subject: [bulwark] RESOLVED: BulwarkBackupFailed on cache";
    assert!(subjects.iter().any(|s| s == firing), "{subjects:?}");
    assert_eq!(
        subjects.iter().filter(|s| *s == resolved_mail).count(),
        1,
        "{subjects:?}"
    );
    let (_, metrics) = d.get("/metrics", Some(READER));
    assert!(
        metrics.contains("bulwark_alert_deliveries_total{channel=\"hook\",result=\"success\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bulwark_alerts_open{severity=\"critical\"} 0"),
        "{metrics}"
    );
}

/// `alert test` reports each channel's result; a receiver answering 500 is retried and
/// reported, an unreachable one too; in the daemon such deliveries are counted as failed in
/// /metrics while the jobs go on.
#[test]
fn failing_channels_are_retried_reported_and_counted_without_stopping_anything() {
    let good = Receiver::start();
    let broken = Receiver::answering(500);
    let gone = Receiver::answering(404);
    let closed = common::free_port();
    let mut env = Env::new();
    env.set("BULWARK_ALERT_RETRY_DELAY_MS", "50");
    let port = daemon::configure(
        &env,
        &format!(
            "[sources.cache]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{closed}\"\n\n\
             [jobs.backup]\nkind = \"backup\"\nsources = [\"cache\"]\nschedule = \"*/2 * * * * *\"\n\n\
             [alerts.channels.good]\nkind = \"slack\"\nurl = \"http://127.0.0.1:{}/ok\"\n\n\
             [alerts.channels.broken]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\n\
             [alerts.channels.dead]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{closed}/hook\"\n\n\
             [alerts.channels.gone]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/revoked\"\n",
            good.port, broken.port, gone.port
        ),
    );
    let r = env.run(&["alert", "test"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("good: success"), "{}", r.stdout);
    assert!(
        r.stdout.contains("broken: failed: answered 500"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("dead: failed: "), "{}", r.stdout);
    assert_eq!(broken.requests().len(), 4, "one try and three retries");
    assert!(
        r.stdout.contains("gone: failed: answered 404"),
        "{}",
        r.stdout
    );
    assert_eq!(gone.requests().len(), 1, "a 404 is not retried");
    assert!(
        good.requests()[0].1.contains("test notification"),
        "{:?}",
        good.requests()
    );
    assert_eq!(env.run(&["alert", "test", "--channel", "good"]).code, 0);
    assert_eq!(env.run(&["alert", "test", "--channel", "nope"]).code, 2);
    let json = env
        .run(&["alert", "test", "--json", "--channel", "broken"])
        .json();
    assert_eq!(json[0]["ok"], false, "{json}");

    let d = Daemon::start(&env, port);
    d.wait_until("failed deliveries counted", || {
        let (_, m) = d.get("/metrics", Some(READER));
        m.contains("bulwark_alert_deliveries_total{channel=\"broken\",result=\"failed\"}")
            && m.contains("bulwark_alert_deliveries_total{channel=\"dead\",result=\"failed\"}")
            && m.contains("bulwark_alert_deliveries_total{channel=\"good\",result=\"success\"}")
    });
    let runs = d.wait_runs("backups going on", |runs| runs.len() >= 3);
    assert!(
        runs.iter().all(|r| r["result"] != "success"),
        "Redis is down"
    );
    assert!(d.log().contains("not delivered to broken"), "{}", d.log());
}

/// Email over SMTP to a real server (aiosmtpd): a login on a plain connection, STARTTLS with
/// the server's self-signed certificate as `ca_file`; text and HTML parts; a certificate the
/// channel does not trust is reported as that channel's failure.
#[test]
fn email_goes_out_over_smtp_with_login_and_starttls() {
    let env = Env::new();
    if !common::self_signed_certificate(&env.path("")) {
        return;
    }
    let Some(plain) = Smtp::start(None) else {
        return;
    };
    let Some(secure) = Smtp::start(Some((&env.path("cert.pem"), &env.path("key.pem")))) else {
        return;
    };
    let mail = |name: &str, port: u16, extra: &str| {
        format!(
            "[alerts.channels.{name}]\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             from = \"Bulwark <bulwark@example.com>\"\nto = [\"ops@example.com\", \"oncall@example.com\"]\n\
             username = \"{}\"\n{extra}\n",
            smtp::USER
        )
    };
    std::fs::write(env.path("smtp-password"), smtp::PASSWORD).expect("password");
    daemon::configure(
        &env,
        &[
            mail(
                "plain",
                plain.port,
                "password_file = \"smtp-password\"\ntls = \"none\"",
            ),
            mail(
                "secure",
                secure.port,
                "password_file = \"smtp-password\"\nca_file = \"cert.pem\"",
            ),
            mail(
                "untrusted",
                secure.port,
                "password_file = \"smtp-password\"",
            ),
            mail(
                "refused",
                plain.port,
                "password = \"not-the-password\"\ntls = \"none\"",
            ),
        ]
        .concat(),
    );
    let mut env = env;
    env.set("BULWARK_ALERT_RETRY_DELAY_MS", "50");
    let r = env.run(&["alert", "test"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("plain: success"), "{}", r.stdout);
    assert!(r.stdout.contains("secure: success"), "{}", r.stdout);
    assert!(r.stdout.contains("untrusted: failed: "), "{}", r.stdout);
    // A refused login is final: reported with the server's answer, not retried.
    assert!(
        r.stdout.contains("refused: failed: permanent error (535)"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stderr.contains("alert channel refused: attempt"),
        "{}",
        r.stderr
    );
    let sent = plain.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let message = &sent[0];
    assert!(
        message.contains("X-Envelope-To: ops@example.com,oncall@example.com"),
        "{message}"
    );
    assert!(
        message.contains("Subject: [bulwark] CRITICAL: BulwarkTest on bulwark"),
        "{message}"
    );
    assert!(
        message.contains("Content-Type: text/plain") && message.contains("Content-Type: text/html"),
        "{message}"
    );
    assert_eq!(secure.messages().len(), 1);
    assert!(!message.contains(smtp::PASSWORD));
}

/// The audit log's chain is verified with every assessment: an edited entry raises a
/// critical alert naming it, and the alert resolves once the log is intact again.
#[test]
fn an_edited_audit_log_raises_a_critical_alert_until_it_is_intact() {
    let env = Env::new();
    let port = daemon::configure(
        &env,
        "[jobs.backup]\nkind = \"backup\"\nschedule = \"0 3 * * *\"\n\n",
    );
    env.ok(&["backup", "uploads"]);
    env.ok(&["backup", "uploads"]);
    let log = common::audit_log(&env);
    let original = std::fs::read_to_string(&log).expect("log");
    let edited = original.replacen("\"success\"", "\"failed: nothing\"", 1);
    assert_ne!(edited, original);
    std::fs::write(&log, &edited).expect("edit");

    let d = Daemon::start(&env, port);
    let audit_alert = |d: &Daemon| {
        d.json("/api/alerts")
            .as_array()
            .and_then(|a| a.iter().find(|a| a["rule"] == "audit_chain").cloned())
    };
    d.wait_until("the audit alert", || audit_alert(&d).is_some());
    let alert = audit_alert(&d).expect("alert");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["datastore"], "repository");
    let summary = alert["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("entry 1 (line 1) was edited"), "{summary}");

    std::fs::write(&log, &original).expect("restore");
    let (code, body) = d.post("/api/jobs/backup/run", Some(ADMIN));
    assert_eq!(code, 202, "{body}");
    d.wait_until("the audit alert resolved", || {
        audit_alert(&d).is_some_and(|a| !a["resolved"].is_null())
    });
}
