//! bulwark.toml: repositories, sources and retention. Loaded and validated once; every error
//! names the file, the line and the key. `BULWARK_*` environment variables override it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use engine::connectors::interface::{Datastore, Kind, Section};
use engine::recovery::stack::{Member, Stack, TargetSettings, Targets};
use engine::store::StorageOptions;
use serde::Deserialize;

/// The file as written; sources are checked by their connectors in [`parse`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    default_repository: Option<String>,
    #[serde(default)]
    repositories: BTreeMap<String, RepoSection>,
    #[serde(default)]
    sources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    retention: crate::cli::KeepArgs,
    #[serde(default)]
    scenarios: BTreeMap<String, ScenarioSection>,
    #[serde(default)]
    jobs: BTreeMap<String, crate::jobs::RawJob>,
    #[serde(default)]
    daemon: crate::daemon::settings::DaemonSection,
    #[serde(default)]
    alerts: crate::alerts::settings::AlertsSection,
}

/// `[scenarios.NAME]`: sources recovered together, in this order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioSection {
    sources: Vec<String>,
}

#[derive(Default, Debug)]
pub struct ConfigFile {
    /// Which `[repositories.NAME]` commands use when --repo is not given.
    pub default_repository: Option<String>,
    pub repositories: BTreeMap<String, RepoSection>,
    pub sources: BTreeMap<String, SourceConfig>,
    pub retention: crate::cli::KeepArgs,
    /// Configured scenarios: name → sources in recovery order.
    pub scenarios: BTreeMap<String, Vec<String>>,
    /// `[jobs.NAME]`: scheduled work.
    pub jobs: BTreeMap<String, crate::jobs::Job>,
    /// `[daemon]`: where it listens and keeps its state, who may call it.
    pub daemon: crate::daemon::settings::DaemonSection,
    /// Lines of the `[daemon.tokens.NAME]` sections, for errors found when the daemon reads
    /// the tokens.
    pub token_lines: BTreeMap<String, usize>,
    /// `[alerts]`: thresholds and channels.
    pub alerts: crate::alerts::settings::AlertsSection,
    /// The file's text, for the lines of errors found after loading.
    text: String,
}

impl ConfigFile {
    /// The sources with their recovery targets, and the scenarios.
    pub fn stack(&self) -> Stack<'_> {
        let members = self
            .sources
            .values()
            .map(|s| Member {
                datastore: s.datastore.as_ref(),
                section: Some(&s.section),
                targets: Targets::of(s.datastore.as_ref(), &s.targets),
            })
            .collect();
        Stack::new(members, self.scenarios.clone())
    }
}

/// A `[sources.NAME]` section: the keys every kind shares, and the kind's own section as its
/// connector read it.
pub struct SourceConfig {
    pub kind: Kind,
    pub tags: Vec<String>,
    /// rpo, rto, priority.
    pub targets: TargetSettings,
    /// The kind-specific keys, for the connector (restores read their source's settings).
    pub section: Section,
    pub datastore: Box<dyn Datastore>,
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("kind", &self.kind)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

/// Keys every source section may set, whatever its kind.
const COMMON_KEYS: [&str; 5] = ["kind", "tags", "rpo", "rto", "priority"];

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

pub struct Loaded {
    pub config: ConfigFile,
    /// Where it was read from, absolute (commands handed to PostgreSQL must find it again).
    pub path: PathBuf,
}

/// A secret given inline, by the name of an environment variable, or by a file next to the
/// config (`key`, `key_env`, `key_file`): exactly one of them.
pub fn secret(
    key: &str,
    inline: Option<&String>,
    env: Option<&String>,
    file: Option<&PathBuf>,
    config_dir: &Path,
) -> Result<String, String> {
    match (inline, env, file) {
        (Some(s), None, None) => Ok(s.clone()),
        (None, Some(var), None) => {
            std::env::var(var).map_err(|_| format!("{key}_env: the variable {var} is not set"))
        }
        (None, None, Some(file)) => {
            let path = config_dir.join(file);
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .map_err(|e| format!("{key}_file: cannot read {}: {e}", path.display()))
        }
        _ => Err(format!("set exactly one of {key}, {key}_env, {key}_file")),
    }
}

impl Loaded {
    /// The config file's directory: relative paths in it (state_dir, token and TLS files) are
    /// taken from there.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }
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
    // Relative paths mean "next to the config file", wherever bulwark runs from (cron: /).
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut config = parse(&text, &base).map_err(|e| anyhow!("{}:{e}", path.display()))?;
    for r in config.repositories.values_mut() {
        if let Some(p) = r.password_file.as_mut() {
            *p = base.join(&*p);
        }
        if let Ok(engine::store::Backend::Local(local)) = engine::store::Backend::parse(&r.url) {
            r.url = base.join(local).to_string_lossy().into_owned();
        }
    }
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(Some(Loaded { config, path }))
}

/// Parses and validates; errors start with `LINE: ` so the caller can prefix the file name.
/// `base` is where relative paths in source sections start.
pub fn parse(text: &str, base: &Path) -> std::result::Result<ConfigFile, String> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_at(text, s.start)).unwrap_or(1);
        format!("{line}: {}", e.message())
    })?;
    let mut sources = BTreeMap::new();
    for (name, table) in raw.sources {
        sources.insert(name.clone(), source(text, &name, table, base)?);
    }
    let mut scenarios = BTreeMap::new();
    for (name, section) in raw.scenarios {
        let header = format!("scenarios.{name}");
        if let Some(unknown) = section.sources.iter().find(|s| !sources.contains_key(*s)) {
            return Err(format!(
                "{}: [{header}] sources: no [sources.{unknown}] section (the sources are: {})",
                locate(text, &header, Some("sources")),
                sources.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if section.sources.is_empty() {
            return Err(format!(
                "{}: [{header}] sources: a scenario recovers at least one source",
                locate(text, &header, Some("sources"))
            ));
        }
        scenarios.insert(name, section.sources);
    }
    let token_lines = raw
        .daemon
        .tokens
        .keys()
        .map(|name| {
            (
                name.clone(),
                locate(text, &format!("daemon.tokens.{name}"), None),
            )
        })
        .collect();
    let mut config = ConfigFile {
        default_repository: raw.default_repository,
        repositories: raw.repositories,
        sources,
        retention: raw.retention,
        scenarios,
        jobs: BTreeMap::new(),
        daemon: raw.daemon,
        token_lines,
        alerts: raw.alerts,
        text: text.to_string(),
    };
    let scenarios: Vec<String> = config
        .stack()
        .scenarios()
        .into_iter()
        .filter(|s| !s.sources.is_empty())
        .map(|s| s.name)
        .collect();
    let repositories: Vec<String> = config.repositories.keys().cloned().collect();
    let known = crate::jobs::Known {
        sources: &config.sources,
        scenarios: &scenarios,
        repositories: &repositories,
    };
    config.jobs = crate::jobs::parse(text, raw.jobs, &known)?;
    if let Err((section, key, e)) = config.alerts.validate() {
        return Err(format!(
            "{}: [{section}] {key}: {e}",
            locate(text, &section, Some(key))
        ));
    }
    if let Err((key, e)) = config.daemon.validate() {
        return Err(format!(
            "{}: [daemon] {key}: {e}",
            locate(text, "daemon", Some(key))
        ));
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

/// One source section: its kind, its keys checked against that kind's connector (a key of
/// another kind is named as such), then read by the connector.
fn source(
    text: &str,
    name: &str,
    mut table: toml::Table,
    base: &Path,
) -> std::result::Result<SourceConfig, String> {
    let section = format!("sources.{name}");
    let err = |key: &str, msg: String| {
        format!(
            "{}: [{section}] {}{msg}",
            locate(text, &section, Some(key).filter(|k| !k.is_empty())),
            if key.is_empty() {
                String::new()
            } else {
                format!("{key}: ")
            }
        )
    };
    let kinds = || {
        Kind::ALL
            .iter()
            .map(|k| k.config_name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match table.remove("kind") {
        None => return Err(err("", format!("missing `kind` (one of {})", kinds()))),
        Some(toml::Value::String(k)) => Kind::from_config_name(&k)
            .ok_or_else(|| err("kind", format!("unknown kind '{k}' (one of {})", kinds())))?,
        Some(other) => return Err(err("kind", format!("expected a string, found {other}"))),
    };
    let tags = match table.remove("tags") {
        None => Vec::new(),
        Some(v) => v
            .try_into::<Vec<String>>()
            .map_err(|e| err("tags", e.to_string()))?,
    };
    let mut duration = |key: &str| match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(d)) => parse_duration(&d)
            .map(Some)
            .map_err(|e| err(key, e.to_string())),
        Some(other) => Err(err(
            key,
            format!("expected a duration like \"15m\", found {other}"),
        )),
    };
    let (rpo, rto) = (duration("rpo")?, duration("rto")?);
    let priority = match table.remove("priority") {
        None => None,
        Some(toml::Value::Integer(p)) if p >= 0 => Some(p as u32),
        Some(other) => {
            return Err(err(
                "priority",
                format!("expected a whole number (lower recovers first), found {other}"),
            ))
        }
    };
    let connector = kind.connector();
    let takes = connector.config_keys();
    if let Some(key) = table.keys().find(|k| !takes.contains(&k.as_str())) {
        let owners: Vec<&str> = Kind::ALL
            .iter()
            .filter(|k| k.connector().config_keys().contains(&key.as_str()))
            .map(|k| k.config_name())
            .collect();
        let belongs = if owners.is_empty() {
            String::new()
        } else {
            format!("; it belongs to {} sources", owners.join("/"))
        };
        return Err(err(
            key,
            format!(
                "a {} source takes no `{key}`{belongs} (it takes: {}, and {})",
                kind.config_name(),
                takes.join(", "),
                COMMON_KEYS.join(", ")
            ),
        ));
    }
    let section = Section {
        table,
        base: base.to_path_buf(),
    };
    let datastore = connector
        .configure(name, &section)
        .map_err(|e| err(&e.key, e.message))?;
    Ok(SourceConfig {
        kind,
        tags,
        targets: TargetSettings { rpo, rto, priority },
        section,
        datastore,
    })
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `[section]` in a loaded config file.
pub fn locate_section(loaded: &Loaded, section: &str) -> usize {
    locate(&loaded.config.text, section, None)
}

/// The line of `key` inside `[section]` (or of the section header, or 1).
pub fn locate(text: &str, section: &str, key: Option<&str>) -> usize {
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

    fn parse(text: &str) -> std::result::Result<ConfigFile, String> {
        super::parse(text, Path::new("/"))
    }

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
    fn targets_and_scenarios_take_defaults_and_name_their_errors() {
        let c = parse(
            r#"
[sources.uploads]
kind = "files"
paths = ["/srv/uploads"]
rto = "10m"
[sources.db]
kind = "postgres"
url = "postgres://h/"
modes = ["logical", "physical"]
[sources.dump]
kind = "postgres"
url = "postgres://h/"
rpo = "1h"
priority = 45
[sources.cache]
kind = "redis"
url = "redis://h"
[scenarios.app]
sources = ["uploads", "cache"]
"#,
        )
        .expect("valid");
        let stack = c.stack();
        let order: Vec<&str> = stack.members().iter().map(|m| m.name()).collect();
        assert_eq!(order, ["db", "cache", "uploads", "dump"], "by priority");
        let targets = |n: &str| stack.member(n).expect(n).targets.clone();
        assert_eq!(targets("db").rpo_secs, 15 * 60, "WAL archiving: 15 minutes");
        assert_eq!(targets("cache").rpo_secs, 24 * 3600, "else daily");
        assert_eq!(targets("dump").rpo_secs, 3600);
        assert_eq!(targets("uploads").rto_secs, 600);
        assert_eq!(targets("cache").rto_secs, 30 * 60);
        let names = |s: &str| {
            stack
                .scenario(s)
                .expect(s)
                .1
                .iter()
                .map(|m| m.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("database_failure"), ["db", "dump"]);
        assert_eq!(names("full_disaster"), ["db", "cache", "uploads", "dump"]);
        assert_eq!(
            names("app"),
            ["uploads", "cache"],
            "in the configured order"
        );
        let e = stack.scenario("vector_failure").expect_err("no qdrant");
        assert!(e.to_string().contains("no sources"), "{e}");
        let e = stack.scenario("nope").expect_err("unknown");
        assert!(e.to_string().contains("full_disaster, app"), "{e}");

        let files = "[sources.a]\nkind = \"files\"\npaths = [\"/x\"]\n";
        let e = parse(&format!("{files}rpo = \"soon\"\n")).expect_err("bad rpo");
        assert!(e.starts_with("4:") && e.contains("rpo"), "{e}");
        let e = parse(&format!("{files}priority = -1\n")).expect_err("bad priority");
        assert!(e.starts_with("4:") && e.contains("priority"), "{e}");
        let e = parse(&format!(
            "{files}\n[scenarios.x]\nsources = [\"a\", \"b\"]\n"
        ))
        .expect_err("unknown source");
        assert!(e.starts_with("6:") && e.contains("[sources.b]"), "{e}");
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
