//! Sending notifications: a generic webhook with the Alertmanager webhook body (so existing
//! receivers take it), and Slack incoming webhooks. Each delivery is retried with backoff and
//! its fate recorded; none of it runs on a job's path.

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use super::settings::{ChannelSection, Severity, SmtpTls};
use super::Notification;
use crate::output::escape_html;

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

/// A configured channel with its secrets read.
pub struct Channel {
    pub name: String,
    pub min_severity: Severity,
    target: Target,
}

enum Target {
    Webhook(String),
    Slack(String),
    Email(Email),
}

struct Email {
    host: String,
    port: u16,
    tls: SmtpTls,
    ca: Option<Vec<u8>>,
    login: Option<(String, String)>,
    from: String,
    to: Vec<String>,
}

impl Channel {
    pub fn from_config(
        name: &str,
        section: &ChannelSection,
        config_dir: &std::path::Path,
    ) -> Result<Self> {
        let err = |e: String| anyhow!("[alerts.channels.{name}] {e}");
        let target = match section.kind.as_str() {
            "email" => {
                let ca = section
                    .ca_file
                    .as_ref()
                    .map(|f| {
                        let path = config_dir.join(f);
                        std::fs::read(&path).map_err(|e| {
                            err(format!("ca_file: cannot read {}: {e}", path.display()))
                        })
                    })
                    .transpose()?;
                let login = match (
                    &section.username,
                    section.password(config_dir).map_err(err)?,
                ) {
                    (Some(user), Some(password)) => Some((user.clone(), password)),
                    _ => None,
                };
                Target::Email(Email {
                    host: section.host.clone().unwrap_or_default(),
                    port: section.port.unwrap_or(match section.tls {
                        SmtpTls::Starttls => 587,
                        SmtpTls::Tls => 465,
                        SmtpTls::None => 25,
                    }),
                    tls: section.tls,
                    ca,
                    login,
                    from: section.from.clone().unwrap_or_default(),
                    to: section.to.clone(),
                })
            }
            "slack" => Target::Slack(section.url(config_dir).map_err(err)?),
            _ => Target::Webhook(section.url(config_dir).map_err(err)?),
        };
        Ok(Self {
            name: name.to_string(),
            min_severity: section.min_severity,
            target,
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
        let backoff = backoff();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.send_once(n, external_url) {
                Ok(()) => return (attempts, None),
                Err(e) => {
                    let wait = backoff.get(attempts as usize - 1);
                    let (Some(wait), false) = (wait, e.is::<Permanent>()) else {
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

    fn send_once(&self, n: &Notification, external_url: &str) -> Result<()> {
        match &self.target {
            Target::Webhook(url) => post(url, &alertmanager_body(n, &self.name, external_url)),
            Target::Slack(url) => post(url, &slack_body(n)),
            Target::Email(email) => email.send(n, external_url),
        }
    }
}

impl Email {
    fn send(&self, n: &Notification, external_url: &str) -> Result<()> {
        use lettre::message::{Mailbox, MultiPart};
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
        use lettre::{Message, SmtpTransport, Transport};

        let mut message = Message::builder()
            .from(
                self.from
                    .parse::<Mailbox>()
                    .map_err(|e| anyhow!("from '{}': {e}", self.from))?,
            )
            .subject(subject(n));
        for to in &self.to {
            message = message.to(to
                .parse::<Mailbox>()
                .map_err(|e| anyhow!("to '{to}': {e}"))?);
        }
        let (text, html) = email_bodies(n, external_url);
        let message = message.multipart(MultiPart::alternative_plain_html(text, html))?;
        let tls = || -> Result<TlsParameters> {
            let mut params = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.ca {
                params = params
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(Certificate::from_pem(pem)?);
            }
            Ok(params.build_rustls()?)
        };
        let mut transport = SmtpTransport::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(Duration::from_secs(20)));
        transport = match self.tls {
            SmtpTls::Starttls => transport.tls(Tls::Required(tls()?)),
            SmtpTls::Tls => transport.tls(Tls::Wrapper(tls()?)),
            SmtpTls::None => transport,
        };
        if let Some((user, password)) = &self.login {
            transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
        }
        match transport.build().send(&message) {
            Ok(_) => Ok(()),
            // A 5xx answer (a refused login, an unknown recipient) will not change on a retry.
            Err(e) if e.is_permanent() => Err(Permanent(e.to_string()).into()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A failure that retrying cannot cure: the receiver refused the message for good.
#[derive(Debug)]
struct Permanent(String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

fn subject(n: &Notification) -> String {
    let a = &n.alert;
    let what = match n.status {
        "resolved" => "RESOLVED".to_string(),
        _ => a.severity.to_uppercase(),
    };
    format!(
        "[bulwark] {what}: {} on {}",
        alertname(&a.rule),
        a.datastore
    )
}

/// The plain text and HTML bodies of an alert email; every value in the HTML is escaped.
fn email_bodies(n: &Notification, external_url: &str) -> (String, String) {
    let a = &n.alert;
    let rows = [
        ("status", n.status.to_string()),
        ("alert", alertname(&a.rule)),
        ("datastore", a.datastore.clone()),
        ("severity", a.severity.clone()),
        ("summary", a.summary.clone()),
        ("since", a.fired.to_string()),
        (
            "resolved",
            a.resolved
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
        ),
        ("host", engine::repo::hostname()),
    ];
    let text = rows
        .iter()
        .map(|(k, v)| format!("{k:<10} {v}\n"))
        .collect::<String>()
        + &format!("\nDashboard and API: {external_url}\n");
    let cells: String = rows
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape_html(k),
                escape_html(v)
            )
        })
        .collect();
    let html = format!(
        "<!doctype html><html><body><h2>{}</h2><table>{cells}</table><p><a href=\"{}\">{}</a></p></body></html>",
        escape_html(&subject(n)),
        escape_html(external_url),
        escape_html(external_url)
    );
    (text, html)
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
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let answered = format!("answered {status}");
    // A 4xx (a wrong URL, a revoked webhook) stays so; a timeout, throttling or 5xx may pass.
    let lasting = status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(if lasting {
        Permanent(answered).into()
    } else {
        anyhow!(answered)
    })
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
