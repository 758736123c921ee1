//! Sending notifications: a generic webhook with the Alertmanager webhook body (so existing
//! receivers take it), and Slack incoming webhooks. Each delivery is retried with backoff and
//! its fate recorded; none of it runs on a job's path.

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use super::settings::{ChannelSection, Severity};
use super::Notification;

/// Waits between attempts: four tries in about half a minute. `BULWARK_ALERT_RETRY_DELAY_MS`
/// sets a fixed wait instead (tests, impatient operators).
fn backoff() -> Vec<Duration> {
    match std::env::var("BULWARK_ALERT_RETRY_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(ms) => vec![Duration::from_millis(ms); 3],
        None => vec![
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(20),
        ],
    }
}

/// A configured channel with its URL read.
pub struct Channel {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub min_severity: Severity,
}

impl Channel {
    pub fn from_config(
        name: &str,
        section: &ChannelSection,
        config_dir: &std::path::Path,
    ) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            kind: section.kind.clone(),
            url: section
                .url(config_dir)
                .map_err(|e| anyhow!("[alerts.channels.{name}] {e}"))?,
            min_severity: section.min_severity,
        })
    }

    /// Whether this channel takes notifications of `n`'s severity.
    pub fn wants(&self, n: &Notification) -> bool {
        let severity = match n.alert.severity.as_str() {
            "critical" => Severity::Critical,
            _ => Severity::Warning,
        };
        severity >= self.min_severity
    }

    /// Sends `n`, retrying; the number of attempts, and the last error if all failed.
    pub fn deliver(&self, n: &Notification, external_url: &str) -> (u32, Option<String>) {
        let body = match self.kind.as_str() {
            "slack" => slack_body(n),
            _ => alertmanager_body(n, &self.name, external_url),
        };
        let backoff = backoff();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match post(&self.url, &body) {
                Ok(()) => return (attempts, None),
                Err(e) => {
                    let Some(wait) = backoff.get(attempts as usize - 1) else {
                        return (attempts, Some(format!("{e:#}")));
                    };
                    eprintln!(
                        "warning: alert channel {}: attempt {attempts} failed: {e:#}; retrying in {:?}",
                        self.name, wait
                    );
                    std::thread::sleep(*wait);
                }
            }
        }
    }
}

fn post(url: &str, body: &Value) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let answer = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body)?)
        .send()?;
    if !answer.status().is_success() {
        return Err(anyhow!("answered {}", answer.status()));
    }
    Ok(())
}

/// A stable id of the alert's identity (rule and datastore), as Alertmanager fingerprints are.
fn fingerprint(n: &Notification) -> String {
    let key = format!("{}\0{}", n.alert.rule, n.alert.datastore);
    blake3::hash(key.as_bytes()).to_hex()[..16].to_string()
}

/// The alert's name as Prometheus rules would spell it: `backup_failed` → `BulwarkBackupFailed`.
fn alertname(rule: &str) -> String {
    let mut name = String::from("Bulwark");
    for word in rule.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// The Alertmanager webhook body (version 4) with one alert.
pub fn alertmanager_body(n: &Notification, receiver: &str, external_url: &str) -> Value {
    let a = &n.alert;
    let labels = json!({
        "alertname": alertname(&a.rule),
        "rule": a.rule,
        "datastore": a.datastore,
        "severity": a.severity,
    });
    let annotations = json!({ "summary": a.summary });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\", datastore=\"{}\"}}", alertname(&a.rule), a.datastore),
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": receiver,
        "groupLabels": { "alertname": alertname(&a.rule), "datastore": a.datastore },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": n.status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": a.fired,
            "endsAt": a.resolved.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |t| t.to_string()),
            "generatorURL": format!("{}/api/alerts", external_url.trim_end_matches('/')),
            "fingerprint": fingerprint(n),
        }],
    })
}

/// A Slack incoming-webhook message.
pub fn slack_body(n: &Notification) -> Value {
    let a = &n.alert;
    let mark = match (n.status, a.severity.as_str()) {
        ("resolved", _) => ":white_check_mark: RESOLVED",
        (_, "critical") => ":red_circle: CRITICAL",
        _ => ":warning: WARNING",
    };
    json!({ "text": format!("{mark} [{}] {}: {}", a.datastore, alertname(&a.rule), a.summary) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_follow_prometheus_spelling() {
        assert_eq!(alertname("backup_failed"), "BulwarkBackupFailed");
        assert_eq!(alertname("wal_archiving"), "BulwarkWalArchiving");
    }
}
