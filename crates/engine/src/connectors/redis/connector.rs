//! Redis through the datastore interface: configuration, restore into a server (redis://) or
//! a directory, a throwaway sandbox server, and the key-level verdict.

use std::path::PathBuf;

use serde::Deserialize;

use super::restore::{self, DirOptions, DirReport, Existing, LiveOptions, LiveReport};
use super::verify::VerifyReport;
use super::{RedisSettings, RedisSource, RedisUrl};
use crate::backup::Source;
use crate::connectors::interface::Tier;
use crate::connectors::interface::{
    fields_of, read_secret, ConfigError, Connector, Datastore, Health, Kind, Mismatch, Point,
    Recovery, RestoreInput, RestoreOutcome, RestoreRequest, Restored, Section, Timings, Verdict,
};
use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::stats::human_bytes;

pub struct RedisConnector;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// redis://[user@]host:port
    url: String,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    /// The server's data directory, to capture the append-only files too.
    data_dir: Option<PathBuf>,
}

struct RedisDatastore {
    name: String,
    settings: Settings,
}

/// How a Redis snapshot is restored (flags of `bulwark restore`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    flush: bool,
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    skip_existing: bool,
    /// Keys compared value by value after the restore.
    sample: Option<u64>,
}

const DEFAULT_SAMPLE: u64 = 200;

impl Connector for RedisConnector {
    fn kind(&self) -> Kind {
        Kind::Redis
    }

    fn tier(&self) -> Tier {
        Tier::Cache
    }

    fn restore_options(&self) -> &'static [&'static str] {
        fields_of::<Options>()
    }

    fn config_keys(&self) -> &'static [&'static str] {
        fields_of::<Settings>()
    }

    fn configure(&self, name: &str, section: &Section) -> Result<Box<dyn Datastore>, ConfigError> {
        let mut settings: Settings = section.parse()?;
        RedisUrl::parse(&settings.url).map_err(|e| ConfigError::new("url", e.to_string()))?;
        settings.password_file = settings.password_file.map(|p| section.path(&p));
        settings.data_dir = settings.data_dir.map(|p| section.path(&p));
        Ok(Box::new(RedisDatastore {
            name: name.to_string(),
            settings,
        }))
    }

    /// The replication id and offset the transferred RDB corresponds to.
    fn consistency_point(&self, snapshot: &Snapshot) -> Option<serde_json::Value> {
        let facts = super::RedisFacts::of(snapshot).ok()?;
        Some(serde_json::json!({
            "server_version": facts.server_version,
            "replid": facts.replid,
            "offset": facts.offset,
        }))
    }

    fn restore(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Redis)?;
        let target = req.target()?;
        if target.starts_with("redis://") || target.starts_with("rediss://") {
            live(input, req, &opts, target)
        } else {
            dir(input, req, &opts, PathBuf::from(target))
        }
    }

    fn sandbox(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Redis)?;
        req.refuse(
            Kind::Redis,
            &[
                ("--flush", opts.flush),
                ("--replace", opts.replace),
                ("--skip-existing", opts.skip_existing),
                ("--start", req.start),
                ("--port", req.port.is_some()),
                ("--dry-run", req.dry_run),
            ],
        )?;
        let sample = opts.sample.unwrap_or(DEFAULT_SAMPLE);
        let report = restore::sandbox(
            input.repo,
            input.snapshot,
            &req.scratch,
            sample,
            &req.progress,
        )?;
        let id = input.id.short();
        let mut lines = vec![format!(
            "sandbox restore of snapshot {id}: {} key(s), {} laid out in {:.1}s, loaded in {:.1}s, ready after {:.1}s",
            report.keys,
            human_bytes(report.bytes),
            report.layout_secs,
            report.load_secs,
            report.ready_secs
        )];
        lines.extend(verify_lines(&report.verify));
        let outcome = RestoreOutcome {
            sandbox: true,
            items: report.keys,
            bytes: report.bytes,
            timings: Timings {
                total_secs: report.ready_secs,
                transfer_secs: report.layout_secs,
                ready_secs: Some(report.load_secs),
                verify_secs: None,
            },
            verdict: Some(verdict(&report.verify)),
            ..RestoreOutcome::of(input, "a throwaway redis-server (removed)", "keys")
        };
        Ok(Restored::new(outcome, &report, lines))
    }
}

impl Datastore for RedisDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Redis
    }

    /// Version, replication role, and the status of its last RDB save and AOF write.
    fn health(&self) -> Health {
        let probe = || -> Result<Health> {
            let mut conn = super::resp::Conn::open(&self.url()?)?;
            let mut h = Health {
                reachable: true,
                version: conn.info_field("server", "redis_version")?,
                role: conn.info_field("replication", "role")?,
                ..Health::default()
            };
            for (field, what) in [
                ("rdb_last_bgsave_status", "the last RDB save"),
                ("aof_last_write_status", "the last AOF write"),
            ] {
                let status = conn.info_field("persistence", field)?;
                if let Some(st) = status.as_deref().filter(|st| *st != "ok") {
                    h.warnings.push(format!("{what} failed ({field}: {st})"));
                }
                h.detail(field, status);
            }
            h.detail(
                "rdb_last_save_time",
                conn.info_field("persistence", "rdb_last_save_time")?,
            );
            Ok(h)
        };
        probe().unwrap_or_else(Health::unreachable)
    }

    /// A live restore into its own server; keys there now are flushed first when replaced.
    fn recovery(&self, _snapshot: &Snapshot, _point: &Point, replace: bool) -> Result<Recovery> {
        let url = self.url()?;
        let held = super::resp::Conn::open(&url)
            .and_then(|mut c| c.call(&[b"DBSIZE"]))
            .ok()
            .and_then(|r| r.int())
            .filter(|n| *n > 0);
        let mut options = serde_json::Map::new();
        if replace {
            options.insert("flush".into(), true.into());
        }
        Ok(Recovery {
            target: url.describe(),
            options,
            secret: url.password().map(str::to_string),
            method: format!("live restore into {}", url.describe()),
            occupied: held.map(|n| {
                format!(
                    "{} holds {n} key(s) (flushed when replaced)",
                    url.describe()
                )
            }),
            needs_server: true,
            ..Recovery::default()
        })
    }

    fn source(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(RedisSource::new(
            &self.name,
            RedisSettings {
                url: self.url()?,
                data_dir: self.settings.data_dir.clone(),
            },
        )))
    }
}

impl RedisDatastore {
    /// The configured server, with its password read now.
    fn url(&self) -> Result<RedisUrl> {
        Ok(RedisUrl::parse(&self.settings.url)?.with_password(self.password()?))
    }

    fn password(&self) -> Result<Option<String>> {
        let s = &self.settings;
        read_secret(
            &self.name,
            s.password_file.as_deref(),
            s.password_env.as_deref(),
        )
    }
}

fn live(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    opts: &Options,
    target: &str,
) -> Result<Restored> {
    req.refuse(
        Kind::Redis,
        &[("--start", req.start), ("--port", req.port.is_some())],
    )?;
    let existing = match (opts.flush, opts.replace, opts.skip_existing) {
        (true, false, false) => Existing::Flush,
        (false, true, false) => Existing::Replace,
        (false, false, true) => Existing::Skip,
        (false, false, false) => Existing::Refuse,
        _ => {
            return Err(Error::invalid(
                "--flush, --replace and --skip-existing exclude each other",
            ))
        }
    };
    let url = RedisUrl::parse(target)?.with_password(
        req.secret
            .clone()
            .or_else(|| std::env::var("REDISCLI_AUTH").ok()),
    );
    let live_opts = LiveOptions {
        existing,
        dry_run: req.dry_run,
        verify: req.verify,
        sample: opts.sample.unwrap_or(DEFAULT_SAMPLE),
        progress: req.progress.clone(),
    };
    let report = restore::restore_live(input.repo, input.snapshot, &url, &live_opts)?;
    let mut incomplete = Vec::new();
    if report.failed > 0 || report.skipped_modules > 0 {
        incomplete.push(format!(
            "{} key(s) failed and {} module value(s) were skipped",
            report.failed, report.skipped_modules
        ));
    }
    let timings = Timings {
        total_secs: report.duration_secs,
        transfer_secs: report.duration_secs,
        ready_secs: None,
        verify_secs: None,
    };
    let outcome = RestoreOutcome {
        dry_run: req.dry_run,
        items: report.restored,
        timings,
        verdict: report.verify.as_ref().map(verdict),
        incomplete,
        ..RestoreOutcome::of(input, report.target.clone(), "keys")
    };
    let lines = live_lines(&input.id.short(), &report);
    Ok(Restored::new(outcome, &report, lines))
}

fn dir(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    opts: &Options,
    target: PathBuf,
) -> Result<Restored> {
    req.refuse(
        Kind::Redis,
        &[
            ("--flush", opts.flush),
            ("--replace", opts.replace),
            ("--skip-existing", opts.skip_existing),
        ],
    )?;
    if req.dry_run {
        return Err(Error::invalid(
            "--dry-run applies to a redis:// target; a directory restore needs an empty directory and changes nothing else",
        ));
    }
    let dir_opts = DirOptions {
        target,
        start: req.start,
        port: req.port,
        verify: req.verify,
        sample: opts.sample.unwrap_or(DEFAULT_SAMPLE),
        progress: req.progress.clone(),
    };
    let report = restore::restore_dir(input.repo, input.snapshot, &dir_opts)?;
    let timings = Timings {
        total_secs: report.layout_secs + report.load_secs.unwrap_or(0.0),
        transfer_secs: report.layout_secs,
        ready_secs: report.load_secs,
        verify_secs: None,
    };
    let keys = super::RedisFacts::of(input.snapshot)?.census.keys();
    let outcome = RestoreOutcome {
        items: keys,
        bytes: report.bytes,
        timings,
        verdict: report.verify.as_ref().map(verdict),
        ..RestoreOutcome::of(input, report.target.display().to_string(), "keys")
    };
    let lines = dir_lines(&input.id.short(), &report);
    Ok(Restored::new(outcome, &report, lines))
}

/// The key-level comparison as the common verdict: each database whose key count is out of
/// range, each sampled key that differs, and a census that does not match.
pub fn verdict(v: &VerifyReport) -> Verdict {
    let mut out = Verdict {
        checked: (v.sampled + v.databases.len()) as u64,
        ..Verdict::default()
    };
    for d in v.databases.iter().filter(|d| !d.ok) {
        out.mismatches.push(Mismatch::new(
            "database",
            format!("db {}", d.db),
            format!("{} key(s), expected {}", d.actual, key_range(d)),
        ));
    }
    for m in &v.mismatches {
        out.mismatches.push(Mismatch::new(
            "key",
            format!("db {} key {}", m.db, m.key),
            m.problem.clone(),
        ));
    }
    if let Some(c) = &v.census_mismatch {
        out.mismatches
            .push(Mismatch::new("database", "rdb", c.clone()));
    }
    if v.uncertain > 0 {
        out.notes.push(format!(
            "{} sampled key(s) left out: they expire around now",
            v.uncertain
        ));
    }
    out
}

fn key_range(d: &super::verify::DbCheck) -> String {
    match d.expected_max {
        Some(max) if max != d.expected_min => format!("{}..{}", d.expected_min, max),
        Some(max) => max.to_string(),
        None => format!("at least {}", d.expected_min),
    }
}

fn live_lines(id: &str, report: &LiveReport) -> Vec<String> {
    if report.dry_run {
        return vec![format!(
            "would restore {} key(s) and {} function librar(ies) from snapshot {id} into {}",
            report.restored, report.functions, report.target
        )];
    }
    let mut lines = vec![format!(
        "restored {} key(s) from snapshot {id} into {} in {:.1}s ({:.0} keys/s); {} expired meanwhile, {} kept as they were, {} module value(s) skipped, {} function librar(ies)",
        report.restored,
        report.target,
        report.duration_secs,
        report.keys_per_sec,
        report.expired,
        report.kept_existing,
        report.skipped_modules,
        report.functions
    )];
    lines.extend(report.failures.iter().map(|f| format!("  FAILED {f}")));
    if let Some(v) = &report.verify {
        lines.extend(verify_lines(v));
    }
    lines
}

fn dir_lines(id: &str, report: &DirReport) -> Vec<String> {
    let mut lines = vec![format!(
        "restored snapshot {id} to {}: {} file(s), {} in {:.1}s",
        report.target.display(),
        report.files,
        human_bytes(report.bytes),
        report.layout_secs
    )];
    if let (Some(port), Some(secs)) = (report.port, report.load_secs) {
        lines.push(format!(
            "redis-server runs on 127.0.0.1:{port} (loaded in {secs:.1}s); stop it with: redis-cli -p {port} shutdown"
        ));
    }
    if let Some(v) = &report.verify {
        lines.extend(verify_lines(v));
    }
    lines
}

fn verify_lines(v: &VerifyReport) -> Vec<String> {
    let mut lines: Vec<String> = v
        .databases
        .iter()
        .map(|d| {
            format!(
                "  db {}: {} key(s), expected {}{}",
                d.db,
                d.actual,
                key_range(d),
                if d.ok { "" } else { "  MISMATCH" }
            )
        })
        .collect();
    lines.push(format!(
        "  {} sampled key(s) compared by type, TTL and value ({} left out: expiring now), {} mismatch(es)",
        v.sampled,
        v.uncertain,
        v.mismatches.len()
    ));
    lines.extend(
        v.mismatches
            .iter()
            .map(|m| format!("  MISMATCH db {} key {}: {}", m.db, m.key, m.problem)),
    );
    if let Some(c) = &v.census_mismatch {
        lines.push(format!("  MISMATCH {c}"));
    }
    lines
}
