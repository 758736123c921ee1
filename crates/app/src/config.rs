//! bulwark.toml: repositories, sources and retention. Loaded and validated once; every error
//! names the file, the line and the key. `BULWARK_*` environment variables override it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use engine::store::StorageOptions;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Which `[repositories.NAME]` commands use when --repo is not given.
    pub default_repository: Option<String>,
    #[serde(default)]
    pub repositories: BTreeMap<String, RepoSection>,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSection>,
    #[serde(default)]
    pub retention: crate::cli::KeepArgs,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RepoSection {
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub virtual_host_style: bool,
    pub concurrency: Option<usize>,
    pub retries: Option<usize>,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Files,
    Config,
    Command,
    Postgres,
    Redis,
    Qdrant,
}

impl SourceKind {
    /// The keys a section of this kind may set (besides `kind` and `tags`).
    fn keys(self) -> &'static [&'static str] {
        match self {
            SourceKind::Files | SourceKind::Config => &["paths", "include", "exclude"],
            SourceKind::Command => &["command", "filename"],
            SourceKind::Postgres => &[
                "url",
                "password_file",
                "password_env",
                "databases",
                "exclude_databases",
                "modes",
                "bin_dir",
                "jobs",
                "verify",
                "wal_spool_dir",
                "archive_wait_secs",
            ],
            SourceKind::Redis => &["url", "password_file", "password_env", "data_dir"],
            SourceKind::Qdrant => &[
                "url",
                "password_file",
                "password_env",
                "collections",
                "modes",
            ],
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub kind: SourceKind,
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// For `kind = "command"`: a shell command whose stdout is backed up.
    pub command: Option<String>,
    /// For `kind = "command"`: the file name the stream is stored under.
    pub filename: Option<String>,
    /// For `kind = "postgres"`: postgres://user@host:port/maintenance-db?sslmode=...;
    /// for `kind = "redis"`: redis://[user@]host:port; for `kind = "qdrant"`: http(s)://host:port.
    pub url: Option<String>,
    /// For postgres, redis and qdrant: a file holding the password (postgres: else PGPASSWORD
    /// or ~/.pgpass; qdrant: the API key).
    pub password_file: Option<PathBuf>,
    /// For postgres, redis and qdrant: the environment variable holding the password.
    pub password_env: Option<String>,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// What to capture: postgres "logical"/"physical", qdrant "logical"/"snapshot".
    #[serde(default)]
    pub modes: Vec<String>,
    /// For `kind = "qdrant"`: the collections to back up (default: all).
    #[serde(default)]
    pub collections: Vec<String>,
    /// PostgreSQL client tools to use (default: those matching the server's version).
    pub bin_dir: Option<PathBuf>,
    /// Databases dumped at once.
    pub jobs: Option<usize>,
    pub verify: Option<engine::connectors::postgres::Verify>,
    /// For `kind = "postgres"`: where wal-push/wal-fetch keep their bookkeeping and read-ahead.
    pub wal_spool_dir: Option<PathBuf>,
    /// For `kind = "postgres"`: how long a base backup waits while PostgreSQL keeps failing
    /// to archive the WAL it needs before giving up (default 60).
    pub archive_wait_secs: Option<u64>,
    /// For `kind = "redis"`: the server's data directory, to capture its AOF files too.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl SourceSection {
    /// The kind-specific keys this section sets.
    fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("paths", !self.paths.is_empty()),
            ("include", !self.include.is_empty()),
            ("exclude", !self.exclude.is_empty()),
            ("command", self.command.is_some()),
            ("filename", self.filename.is_some()),
            ("url", self.url.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
            ("databases", !self.databases.is_empty()),
            ("exclude_databases", !self.exclude_databases.is_empty()),
            ("modes", !self.modes.is_empty()),
            ("collections", !self.collections.is_empty()),
            ("bin_dir", self.bin_dir.is_some()),
            ("jobs", self.jobs.is_some()),
            ("verify", self.verify.is_some()),
            ("wal_spool_dir", self.wal_spool_dir.is_some()),
            ("archive_wait_secs", self.archive_wait_secs.is_some()),
            ("data_dir", self.data_dir.is_some()),
        ];
        set.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect()
    }
}

impl SourceSection {
    /// `modes` as the source kind's own mode type.
    pub fn modes_as<M: serde::de::DeserializeOwned>(&self) -> std::result::Result<Vec<M>, String> {
        self.modes
            .iter()
            .map(|m| {
                serde_json::from_value(serde_json::Value::String(m.clone()))
                    .map_err(|e| format!("'{m}': {e}"))
            })
            .collect()
    }
}

pub struct Loaded {
    pub config: ConfigFile,
    /// Where it was read from, absolute (commands handed to PostgreSQL must find it again).
    pub path: PathBuf,
}

/// Finds and loads the config file: an explicit path must exist; the default locations are
/// optional.
pub fn load(explicit: Option<&Path>) -> Result<Option<Loaded>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match [
            Path::new("bulwark.toml"),
            Path::new("/etc/bulwark/bulwark.toml"),
        ]
        .into_iter()
        .find(|p| p.exists())
        {
            Some(p) => p.to_path_buf(),
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut config = parse(&text).map_err(|e| anyhow!("{}:{e}", path.display()))?;
    // Relative paths mean "next to the config file", wherever bulwark runs from (cron: /).
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    for r in config.repositories.values_mut() {
        if let Some(p) = r.password_file.as_mut() {
            *p = base.join(&*p);
        }
        if let Ok(engine::store::Backend::Local(local)) = engine::store::Backend::parse(&r.url) {
            r.url = base.join(local).to_string_lossy().into_owned();
        }
    }
    for s in config.sources.values_mut() {
        s.paths = s.paths.iter().map(|p| base.join(p)).collect();
        for p in [
            s.password_file.as_mut(),
            s.wal_spool_dir.as_mut(),
            s.bin_dir.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
    }
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(Some(Loaded { config, path }))
}

/// Parses and validates; errors start with `LINE: ` so the caller can prefix the file name.
pub fn parse(text: &str) -> std::result::Result<ConfigFile, String> {
    let config: ConfigFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_at(text, s.start)).unwrap_or(1);
        format!("{line}: {}", e.message())
    })?;
    for (name, s) in &config.sources {
        let section = format!("sources.{name}");
        let err = |key: &str, msg: String| {
            format!(
                "{}: [{section}] {key}: {msg}",
                locate(text, &section, Some(key))
            )
        };
        let kind_name = format!("{:?}", s.kind).to_lowercase();
        if let Some(k) = s
            .keys_set()
            .into_iter()
            .find(|k| !s.kind.keys().contains(k))
        {
            return Err(err(
                k,
                format!(
                    "a {kind_name} source takes no `{k}` (it takes: {})",
                    s.kind.keys().join(", ")
                ),
            ));
        }
        match s.kind {
            SourceKind::Files | SourceKind::Config => {
                if s.paths.is_empty() {
                    return Err(err(
                        "paths",
                        "a files/config source needs at least one path".into(),
                    ));
                }
                for (key, pats) in [("include", &s.include), ("exclude", &s.exclude)] {
                    for p in pats.iter() {
                        if let Err(e) = globset::Glob::new(p.trim_start_matches('/')) {
                            return Err(err(key, format!("bad pattern '{p}': {e}")));
                        }
                    }
                }
            }
            SourceKind::Command => {
                if s.command.as_deref().unwrap_or("").trim().is_empty() {
                    return Err(err(
                        "command",
                        "a command source needs `command = \"...\"`".into(),
                    ));
                }
            }
            SourceKind::Postgres => {
                let url = s.url.as_deref().unwrap_or("");
                if let Err(e) = engine::connectors::postgres::PgConn::parse(url) {
                    return Err(err("url", e.to_string()));
                }
                if s.jobs == Some(0) {
                    return Err(err("jobs", "must be at least 1".into()));
                }
                s.modes_as::<engine::connectors::postgres::Mode>()
                    .map_err(|e| err("modes", e))?;
            }
            SourceKind::Redis => {
                let url = s.url.as_deref().unwrap_or("");
                if let Err(e) = engine::connectors::redis::RedisUrl::parse(url) {
                    return Err(err("url", e.to_string()));
                }
            }
            SourceKind::Qdrant => {
                let url = s.url.as_deref().unwrap_or("");
                if let Err(e) = engine::connectors::qdrant::api::Client::new(url, None) {
                    return Err(err("url", e.to_string()));
                }
                s.modes_as::<engine::connectors::qdrant::Mode>()
                    .map_err(|e| err("modes", e))?;
            }
        }
    }
    for (name, r) in &config.repositories {
        let section = format!("repositories.{name}");
        if let Err(e) = engine::store::Backend::parse(&r.url) {
            return Err(format!(
                "{}: [{section}] url: {e}",
                locate(text, &section, Some("url"))
            ));
        }
    }
    if let Some(d) = &config.default_repository {
        if !config.repositories.contains_key(d) {
            return Err(format!(
                "{}: default_repository: no [repositories.{d}] section",
                locate(text, "", Some("default_repository"))
            ));
        }
    }
    if let Some(w) = &config.retention.keep_within {
        if let Err(e) = parse_duration(w) {
            return Err(format!(
                "{}: [retention] keep_within: {e}",
                locate(text, "retention", Some("keep_within"))
            ));
        }
    }
    Ok(config)
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `key` inside `[section]` (or of the section header, or 1).
fn locate(text: &str, section: &str, key: Option<&str>) -> usize {
    let mut in_section = section.is_empty();
    let mut header_line = 1;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_section = name == section;
            if in_section {
                header_line = n + 1;
            }
            continue;
        }
        if in_section {
            if let Some(k) = key {
                if t.split('=').next().map(str::trim) == Some(k) {
                    return n + 1;
                }
            }
        }
    }
    header_line
}

/// `30s`, `15m`, `12h`, `7d`, `2w`, `1y` (a year is 365 days, a month 30).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("'{s}' is not a duration like 7d or 12h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86400,
        "w" => 7 * 86400,
        "mo" => 30 * 86400,
        "y" => 365 * 86400,
        _ => bail!("'{s}': unknown unit '{unit}' (use s, m, h, d, w, mo, y)"),
    };
    Ok(Duration::from_secs(n * secs))
}

/// Storage options from a repository section, then `BULWARK_*`/`AWS_*` variables on top.
pub fn storage_options(section: Option<&RepoSection>) -> StorageOptions {
    let s = section.cloned().unwrap_or_default();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let env_num = |k: &str| env(k).and_then(|v| v.parse::<u64>().ok());
    StorageOptions {
        endpoint: env("BULWARK_S3_ENDPOINT").or(s.endpoint),
        region: env("BULWARK_S3_REGION")
            .or(s.region)
            .or_else(|| env("AWS_REGION")),
        access_key_id: env("BULWARK_S3_ACCESS_KEY_ID")
            .or(s.access_key_id)
            .or_else(|| env("AWS_ACCESS_KEY_ID")),
        secret_access_key: env("BULWARK_S3_SECRET_ACCESS_KEY")
            .or(s.secret_access_key)
            .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
        session_token: env("AWS_SESSION_TOKEN"),
        virtual_host_style: s.virtual_host_style,
        concurrency: env_num("BULWARK_STORAGE_CONCURRENCY")
            .map(|v| v as usize)
            .or(s.concurrency)
            .unwrap_or(0),
        retries: env_num("BULWARK_STORAGE_RETRIES")
            .map(|v| v as usize)
            .or(s.retries),
        retry_delay: env_num("BULWARK_STORAGE_RETRY_DELAY_MS").map(Duration::from_millis),
        timeout: env_num("BULWARK_STORAGE_TIMEOUT_SECS")
            .or(s.timeout_secs)
            .map(Duration::from_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_config_parses() {
        let c = parse(
            r#"
default_repository = "main"
[repositories.main]
url = "/srv/backup"
[repositories.offsite]
url = "s3://bk/prod"
endpoint = "http://127.0.0.1:3900"
[sources.uploads]
kind = "files"
paths = ["/srv/uploads"]
exclude = ["*.tmp"]
[sources.dump]
kind = "command"
command = "pg_dumpall"
filename = "all.sql"
[retention]
keep_daily = 7
keep_within = "2d"
"#,
        )
        .expect("valid");
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.retention.keep_daily, Some(7));
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = parse(
            "[sources.a]\nkind = \"files\"\npaths = [\"/x\"]\n\n[sources.b]\nkind = \"filez\"\n",
        )
        .expect_err("bad kind");
        assert!(e.starts_with("6:"), "{e}");
        let e = parse("[sources.a]\nkind = \"files\"\n").expect_err("no paths");
        assert!(e.starts_with("1:") && e.contains("paths"), "{e}");
        let e = parse("[sources.a]\nkind = \"command\"\npaths = [\"/x\"]\ncommand = \"x\"\n")
            .expect_err("paths on command");
        assert!(e.starts_with("3:"), "{e}");
        let e =
            parse("[sources.db]\nkind = \"postgres\"\nurl = \"mysql://h\"\n").expect_err("bad url");
        assert!(e.starts_with("3:") && e.contains("postgres://"), "{e}");
        let e = parse(
            "[sources.db]\nkind = \"postgres\"\nurl = \"postgres://h/\"\nmodes = [\"logicle\"]\n",
        )
        .expect_err("bad mode");
        assert!(e.starts_with("4:"), "{e}");
        let e = parse(
            "[sources.db]\nkind = \"postgres\"\nurl = \"postgres://h/\"\nexclude = [\"x\"]\n",
        )
        .expect_err("files key on postgres");
        assert!(e.starts_with("4:") && e.contains("databases"), "{e}");
        let e =
            parse("[retention]\nkeep_daily = 7\nkeep_within = \"3q\"\n").expect_err("bad duration");
        assert!(e.starts_with("3:"), "{e}");
        let e = parse("[repositories.x]\nurl = \"/a\"\ncolour = 1\n").expect_err("unknown key");
        assert!(e.starts_with("3:") && e.contains("colour"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("7d").expect("ok"),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("12h").expect("ok"),
            Duration::from_secs(12 * 3600)
        );
        assert!(parse_duration("x").is_err());
    }
}
