//! `[daemon]`: where the daemon listens, where it keeps its state, and the API tokens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/bulwark";

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Address and port of the API (default 127.0.0.1:8081).
    pub listen: Option<String>,
    /// Listening on anything but loopback must be asked for.
    #[serde(default)]
    pub allow_remote: bool,
    pub state_dir: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenSection>,
}

/// `[daemon.tokens.NAME]`: one bearer token, from exactly one of the three places.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    pub role: Role,
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything the API shows.
    #[serde(alias = "read-only", alias = "read_only")]
    Read,
    /// Also runs jobs and acknowledges alerts.
    Admin,
}

impl DaemonSection {
    /// Checks what needs no file or environment; errors name the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let addr = self.listen_addr().map_err(|e| ("listen", e))?;
        if !addr.ip().is_loopback() && !self.allow_remote {
            return Err((
                "listen",
                format!("{addr} is reachable from other machines; set allow_remote = true if that is meant (and use TLS)"),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(("tls_cert", "TLS needs both tls_cert and tls_key".into()));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        let text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        text.parse()
            .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:8081"))
    }

    /// The state directory: BULWARK_STATE_DIR, else configured (relative to the config
    /// file), else /var/lib/bulwark for root and ~/.local/state/bulwark for anyone else.
    pub fn state_dir(&self, config_dir: &Path) -> PathBuf {
        if let Some(d) = std::env::var_os("BULWARK_STATE_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        if let Some(d) = &self.state_dir {
            return config_dir.join(d);
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        match std::env::var_os("HOME").filter(|_| !root) {
            Some(home) => PathBuf::from(home).join(".local/state/bulwark"),
            None => PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}
