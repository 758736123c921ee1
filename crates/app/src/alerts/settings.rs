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
    /// `webhook` (an Alertmanager webhook body) or `slack` (an incoming webhook).
    pub kind: String,
    /// The URL, or where to read it (it often carries a secret).
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    /// Alerts below this severity are not sent here (default: warning, i.e. all).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

pub const CHANNEL_KINDS: &[&str] = &["webhook", "slack"];

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
}
