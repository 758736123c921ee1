//! `[alerts]` and `[alerts.channels.NAME]`: thresholds, the repeat interval, and where alerts
//! go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// How often a critical alert nobody acknowledged is sent again (default 4h).
    pub repeat_interval: Option<String>,
    #[serde(default = "default_disk_warning")]
    pub disk_warning_percent: f64,
    #[serde(default = "default_disk_critical")]
    pub disk_critical_percent: f64,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSection>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        Self {
            repeat_interval: None,
            disk_warning_percent: default_disk_warning(),
            disk_critical_percent: default_disk_critical(),
            channels: BTreeMap::new(),
        }
    }
}

fn default_disk_warning() -> f64 {
    80.0
}

fn default_disk_critical() -> f64 {
    90.0
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// `webhook` (an Alertmanager webhook body), `slack` (an incoming webhook) or `email`.
    pub kind: String,
    /// webhook, slack: the URL, or where to read it (it often carries a secret).
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    /// email: the SMTP server, its port (default by `tls`: 587, 465 or 25) and how it is
    /// secured: `starttls` (default), `tls` or `none`.
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// A PEM file of the CA (or the self-signed certificate) the server's certificate must
    /// chain to, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// Alerts below this severity are not sent here (default: warning, i.e. all).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

pub const CHANNEL_KINDS: &[&str] = &["webhook", "slack", "email"];

impl AlertsSection {
    /// Checks the section; errors are `(section, key, message)` for file and line.
    pub fn validate(&self) -> Result<(), (String, &'static str, String)> {
        if let Some(r) = &self.repeat_interval {
            crate::config::parse_duration(r)
                .map_err(|e| ("alerts".to_string(), "repeat_interval", e.to_string()))?;
        }
        let (w, c) = (self.disk_warning_percent, self.disk_critical_percent);
        if !(0.0..=100.0).contains(&w) || !(0.0..=100.0).contains(&c) || w > c {
            return Err((
                "alerts".into(),
                "disk_warning_percent",
                format!("thresholds {w}% and {c}%: each from 0 to 100, warning not above critical"),
            ));
        }
        for (name, ch) in &self.channels {
            let section = format!("alerts.channels.{name}");
            if !CHANNEL_KINDS.contains(&ch.kind.as_str()) {
                return Err((
                    section,
                    "kind",
                    format!(
                        "unknown channel kind '{}' (one of {})",
                        ch.kind,
                        CHANNEL_KINDS.join(", ")
                    ),
                ));
            }
            if ch.kind == "email" {
                let missing = [
                    ("host", ch.host.is_none()),
                    ("from", ch.from.is_none()),
                    ("to", ch.to.is_empty()),
                ];
                if let Some((key, _)) = missing.iter().find(|(_, m)| *m) {
                    return Err((section, key, format!("an email channel needs `{key}`")));
                }
                let secrets = [
                    ch.password.is_some(),
                    ch.password_env.is_some(),
                    ch.password_file.is_some(),
                ];
                let count = secrets.iter().filter(|g| **g).count();
                if ch.username.is_some() != (count > 0) || count > 1 {
                    return Err((
                        section,
                        "username",
                        "authentication needs username and one of password, password_env, password_file".into(),
                    ));
                }
                continue;
            }
            let given = [
                ch.url.is_some(),
                ch.url_env.is_some(),
                ch.url_file.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err((
                    section,
                    "url",
                    "set exactly one of url, url_env, url_file".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn repeat_interval(&self) -> Duration {
        self.repeat_interval
            .as_deref()
            .and_then(|r| crate::config::parse_duration(r).ok())
            .unwrap_or(Duration::from_secs(4 * 3600))
    }
}

impl ChannelSection {
    /// The URL itself, from the config, the environment or a file.
    pub fn url(&self, config_dir: &Path) -> Result<String, String> {
        crate::config::secret(
            "url",
            self.url.as_ref(),
            self.url_env.as_ref(),
            self.url_file.as_ref(),
            config_dir,
        )
    }

    /// email: the password, if the server wants a login.
    pub fn password(&self, config_dir: &Path) -> Result<Option<String>, String> {
        if self.username.is_none() {
            return Ok(None);
        }
        crate::config::secret(
            "password",
            self.password.as_ref(),
            self.password_env.as_ref(),
            self.password_file.as_ref(),
            config_dir,
        )
        .map(Some)
    }
}
