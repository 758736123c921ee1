//! `[daemon]`: where the daemon listens, where it keeps its state, and the API tokens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/bulwark";
pub const DEFAULT_SESSION_TIMEOUT: &str = "12h";

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
    /// How long a dashboard login lasts (default 12h).
    pub session_timeout: Option<String>,
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
        self.session_timeout()
            .map_err(|e| ("session_timeout", format!("{e:#}")))?;
        Ok(())
    }

    pub fn session_timeout(&self) -> anyhow::Result<Duration> {
        let text = self
            .session_timeout
            .as_deref()
            .unwrap_or(DEFAULT_SESSION_TIMEOUT);
        let d = crate::config::parse_duration(text)?;
        if d.is_zero() {
            anyhow::bail!("a session must last longer than 0s");
        }
        Ok(d)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        let text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        text.parse()
            .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:8081"))
    }

    /// The state directory (see [`state_dir`]); a configured one is relative to the config
    /// file.
    pub fn state_dir(&self, config_dir: &Path) -> PathBuf {
        state_dir(self.state_dir.as_ref().map(|d| config_dir.join(d)))
    }
}

/// Where jobs, the daemon and recoveries keep their state: BULWARK_STATE_DIR, else the
/// configured directory, else /var/lib/bulwark for root and ~/.local/state/bulwark for anyone
/// else.
pub fn state_dir(configured: Option<PathBuf>) -> PathBuf {
    if let Some(d) = std::env::var_os("BULWARK_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = configured {
        return d;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match std::env::var_os("HOME").filter(|_| !root) {
        Some(home) => PathBuf::from(home).join(".local/state/bulwark"),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// A token the API accepts: only its hash is kept, and compared in constant time.
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    hash: blake3::Hash,
}

impl ApiToken {
    pub fn hash_of(secret: &str) -> blake3::Hash {
        blake3::hash(secret.as_bytes())
    }

    /// Whether `presented` (already hashed) is this token; `blake3::Hash` compares in
    /// constant time.
    pub fn matches(&self, presented: &blake3::Hash) -> bool {
        self.hash == *presented
    }
}

impl TokenSection {
    /// The token itself, from the config, the environment or a file.
    pub fn secret(&self, config_dir: &Path) -> Result<String, String> {
        crate::config::secret(
            "token",
            self.token.as_ref(),
            self.token_env.as_ref(),
            self.token_file.as_ref(),
            config_dir,
        )
    }
}

impl DaemonSection {
    /// Reads every token from the config, its environment variable or its file. Errors are
    /// `(token name, message)`; the caller adds file and line.
    pub fn tokens(&self, config_dir: &Path) -> Result<Vec<ApiToken>, (String, String)> {
        let mut out = Vec::new();
        for (name, t) in &self.tokens {
            let err = |m: String| (name.clone(), m);
            let secret = t.secret(config_dir).map_err(err)?;
            if secret.len() < 16 {
                return Err(err("the token is shorter than 16 characters".into()));
            }
            out.push(ApiToken {
                name: name.clone(),
                role: t.role,
                hash: ApiToken::hash_of(&secret),
            });
        }
        Ok(out)
    }
}
