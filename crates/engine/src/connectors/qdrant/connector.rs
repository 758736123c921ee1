//! Qdrant through the datastore interface: configuration, restore into a server under new
//! collection names, a sandbox (the collections restored under throwaway names, checked, and
//! dropped), and the point-level verdict.

use std::path::PathBuf;

use serde::Deserialize;

use super::api::{seg, Client};
use super::restore::{self, RestoreOptions, RestoreReport, RESTORED_SUFFIX};
use super::verify::{VerifyReport, SAMPLE_POINTS, SAMPLE_QUERIES};
use super::{Mode, QdrantFacts, QdrantSettings, QdrantSource};
use crate::backup::Source;
use crate::connectors::interface::Tier;
use crate::connectors::interface::{
    fields_of, read_secret, ConfigError, Connector, Datastore, Health, Kind, Mismatch, Point,
    Recovery, RestoreInput, RestoreOutcome, RestoreRequest, Restored, Section, Timings, Verdict,
};
use crate::connectors::sandbox::Throwaway;
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::Snapshot;
use crate::stats::human_bytes;

pub struct QdrantConnector;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// http(s)://host:port
    url: String,
    /// A file holding the API key.
    password_file: Option<PathBuf>,
    /// The environment variable holding the API key.
    password_env: Option<String>,
    /// Collections to back up (default: all).
    #[serde(default)]
    collections: Vec<String>,
    /// logical, snapshot (default: logical).
    #[serde(default)]
    modes: Vec<Mode>,
}

impl Settings {
    fn api_key(&self, name: &str) -> Result<Option<String>> {
        read_secret(
            name,
            self.password_file.as_deref(),
            self.password_env.as_deref(),
        )
    }
}

struct QdrantDatastore {
    name: String,
    settings: Settings,
}

/// How a Qdrant snapshot is restored (flags of `bulwark restore`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    collection: Vec<String>,
    target_collection: Option<String>,
    #[serde(default)]
    replace: bool,
    mode: Option<Mode>,
    /// Qdrant's snapshot recovery priority: snapshot, replica, no_sync.
    priority: Option<String>,
    /// Lowest acceptable overlap of each verification search's top-10 (default 1.0).
    min_overlap: Option<f64>,
}

impl Options {
    fn restore_options(&self, req: &RestoreRequest, suffix: &str) -> Result<RestoreOptions> {
        let min_overlap = self.min_overlap.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&min_overlap) {
            return Err(Error::invalid(
                "--min-overlap is a fraction between 0 and 1",
            ));
        }
        Ok(RestoreOptions {
            collections: self.collection.clone(),
            target_collection: self.target_collection.clone(),
            suffix: suffix.to_string(),
            replace: self.replace,
            mode: self.mode,
            priority: self.priority.clone().unwrap_or_else(|| "snapshot".into()),
            verify: req.verify,
            min_overlap,
            dry_run: req.dry_run,
            progress: req.progress.clone(),
        })
    }
}

impl Connector for QdrantConnector {
    fn kind(&self) -> Kind {
        Kind::Qdrant
    }

    fn tier(&self) -> Tier {
        Tier::Vectors
    }

    fn restore_options(&self) -> &'static [&'static str] {
        fields_of::<Options>()
    }

    fn config_keys(&self) -> &'static [&'static str] {
        fields_of::<Settings>()
    }

    fn configure(&self, name: &str, section: &Section) -> Result<Box<dyn Datastore>, ConfigError> {
        let mut settings: Settings = section.parse()?;
        Client::new(&settings.url, None).map_err(|e| ConfigError::new("url", e.to_string()))?;
        settings.password_file = settings.password_file.map(|p| section.path(&p));
        Ok(Box::new(QdrantDatastore {
            name: name.to_string(),
            settings,
        }))
    }

    /// Each collection's exact point counts just before and after the capture.
    fn consistency_point(&self, snapshot: &Snapshot) -> Option<serde_json::Value> {
        let facts = super::QdrantFacts::of(snapshot).ok()?;
        let counts: serde_json::Map<String, serde_json::Value> = facts
            .collections
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    serde_json::json!({ "before": c.count_before, "after": c.count_after }),
                )
            })
            .collect();
        Some(serde_json::json!({
            "server_version": facts.server_version,
            "points": counts,
        }))
    }

    fn restore(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Qdrant)?;
        req.refuse(
            Kind::Qdrant,
            &[("--start", req.start), ("--port", req.port.is_some())],
        )?;
        let target = req.target()?;
        if !(target.starts_with("http://") || target.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "a Qdrant snapshot restores into a server: --target http://host:port (not '{target}')"
            )));
        }
        let client = Client::new(
            target,
            req.secret
                .clone()
                .or_else(|| std::env::var("QDRANT_API_KEY").ok()),
        )?;
        let report = restore::restore(
            input.repo,
            input.snapshot,
            &client,
            &opts.restore_options(req, RESTORED_SUFFIX)?,
        )?;
        Ok(restored(input, report, false))
    }

    /// The collections are restored under throwaway names on the server the request names
    /// (or the source's own, when it is configured), compared, and dropped again.
    fn sandbox(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: Options = req.options_as(Kind::Qdrant)?;
        req.refuse(
            Kind::Qdrant,
            &[
                ("--target-collection", opts.target_collection.is_some()),
                ("--replace", opts.replace),
                ("--dry-run", req.dry_run),
                ("--start", req.start),
                ("--port", req.port.is_some()),
            ],
        )?;
        let client = sandbox_server(input, req)?;
        let suffix = format!("__sandbox_{}", std::process::id());
        let facts = QdrantFacts::of(input.snapshot)?;
        let names: Vec<String> = facts
            .collections
            .iter()
            .filter(|c| opts.collection.is_empty() || opts.collection.contains(&c.name))
            .map(|c| format!("{}{suffix}", c.name))
            .collect();
        if let Some(taken) = names
            .iter()
            .find(|n| super::collection::exists(&client, n).unwrap_or(true))
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} already has a collection '{taken}' (or cannot say); a sandbox never touches a collection it did not create",
                    client.describe()
                ),
            ));
        }
        let dropper = client.clone();
        let _dropped = Throwaway::new(move || {
            for n in &names {
                let _ = dropper.delete(&format!("/collections/{}", seg(n)));
            }
        });
        let report = restore::restore(
            input.repo,
            input.snapshot,
            &client,
            &opts.restore_options(req, &suffix)?,
        )?;
        Ok(restored(input, report, true))
    }
}

/// The server a sandbox uses: --target, else the configured source's.
fn sandbox_server(input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Client> {
    if let Some(t) = &req.target {
        return Client::new(t, std::env::var("QDRANT_API_KEY").ok());
    }
    let section = req.configured.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "a Qdrant sandbox needs a server: --target http://host:port, or configure source '{}'",
            input.snapshot.source.name
        ))
    })?;
    let settings: Settings = section.parse().map_err(|e| {
        Error::invalid(format!(
            "source '{}': {}: {}",
            input.snapshot.source.name, e.key, e.message
        ))
    })?;
    Client::new(
        &settings.url,
        settings.api_key(&input.snapshot.source.name)?,
    )
}

impl Datastore for QdrantDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Qdrant
    }

    /// Version, and each configured (or every) collection's status (green, yellow, red).
    fn health(&self) -> Health {
        let probe = || -> Result<Health> {
            let s = &self.settings;
            let client = Client::new(&s.url, s.api_key(&self.name)?)?;
            let mut h = Health {
                reachable: true,
                version: Some(client.version()?),
                ..Health::default()
            };
            let names = if s.collections.is_empty() {
                super::collection::list(&client)?
            } else {
                s.collections.clone()
            };
            let mut states = std::collections::BTreeMap::new();
            for n in names {
                let state = client
                    .get(&format!("/collections/{}", seg(&n)))
                    .map(|v| {
                        v["result"]["status"]
                            .as_str()
                            .unwrap_or("unknown")
                            .to_string()
                    })
                    .unwrap_or_else(|e| format!("unreadable: {e}"));
                if state != "green" {
                    h.warnings.push(format!("collection '{n}' is {state}"));
                }
                states.insert(n, state);
            }
            h.detail("collections", states);
            Ok(h)
        };
        probe().unwrap_or_else(Health::unreachable)
    }

    /// Its collections restored into its own server; those there now are replaced only when
    /// allowed.
    fn recovery(&self, snapshot: &Snapshot, _point: &Point, replace: bool) -> Result<Recovery> {
        let s = &self.settings;
        let api_key = s.api_key(&self.name)?;
        let wanted: Vec<String> = super::QdrantFacts::of(snapshot)?
            .collections
            .into_iter()
            .map(|c| c.name)
            .collect();
        let present = Client::new(&s.url, api_key.clone())
            .and_then(|c| super::collection::list(&c))
            .unwrap_or_default();
        let clash: Vec<&String> = wanted.iter().filter(|n| present.contains(n)).collect();
        let mut options = serde_json::Map::new();
        if replace {
            options.insert("replace".into(), true.into());
        }
        Ok(Recovery {
            target: s.url.clone(),
            options,
            secret: api_key,
            method: format!("collections {} restored into {}", wanted.join(", "), s.url),
            occupied: (!clash.is_empty()).then(|| {
                format!(
                    "collection(s) {} exist",
                    clash
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            needs_server: true,
            ..Recovery::default()
        })
    }

    fn source(&self) -> Result<Box<dyn Source>> {
        let s = &self.settings;
        Ok(Box::new(QdrantSource::new(
            &self.name,
            QdrantSettings {
                url: s.url.clone(),
                api_key: s.api_key(&self.name)?,
                collections: s.collections.clone(),
                modes: if s.modes.is_empty() {
                    vec![Mode::Logical]
                } else {
                    s.modes.clone()
                },
                samples: SAMPLE_POINTS,
                queries: SAMPLE_QUERIES,
            },
        )))
    }
}

fn restored(input: &RestoreInput<'_>, report: RestoreReport, sandbox: bool) -> Restored {
    let mut verdict: Option<Verdict> = None;
    for v in report.collections.iter().filter_map(|c| c.verify.as_ref()) {
        verdict
            .get_or_insert_with(Verdict::default)
            .merge(collection_verdict(v));
    }
    let secs: f64 = report.collections.iter().map(|c| c.secs).sum();
    let outcome = RestoreOutcome {
        sandbox,
        dry_run: report.dry_run,
        items: report.collections.iter().map(|c| c.points).sum(),
        bytes: report.collections.iter().map(|c| c.bytes).sum(),
        timings: Timings {
            total_secs: secs,
            transfer_secs: secs,
            ready_secs: None,
            verify_secs: None,
        },
        verdict,
        incomplete: Vec::new(),
        ..RestoreOutcome::of(input, report.target.clone(), "points")
    };
    let lines = lines(&input.id.short(), &report, sandbox);
    Restored::new(outcome, &report, lines)
}

/// One collection's comparison as the common verdict: its count, each sampled point that
/// differs, each search whose top-K overlap fell short.
fn collection_verdict(v: &VerifyReport) -> Verdict {
    let mut out = Verdict {
        checked: 1 + v.sampled as u64 + v.queries as u64,
        notes: v.notes.clone(),
        ..Verdict::default()
    };
    if !v.count_ok {
        out.mismatches.push(Mismatch::new(
            "collection",
            v.collection.clone(),
            format!("{} point(s), expected {}", v.points, point_range(v)),
        ));
    }
    for m in &v.mismatches {
        out.mismatches
            .push(Mismatch::new("point", v.collection.clone(), m.clone()));
    }
    for l in &v.low_overlap {
        out.mismatches
            .push(Mismatch::new("search", v.collection.clone(), l.clone()));
    }
    out
}

fn point_range(v: &VerifyReport) -> String {
    if v.expected_min == v.expected_max {
        v.expected_min.to_string()
    } else {
        format!("{}..{}", v.expected_min, v.expected_max)
    }
}

fn lines(id: &str, report: &RestoreReport, sandbox: bool) -> Vec<String> {
    let mut out = Vec::new();
    for c in &report.collections {
        let how = format!("{:?}", c.mode).to_lowercase();
        if report.dry_run {
            out.push(format!(
                "would restore '{}' ({how}, {} point(s)) from snapshot {id} as '{}' on {}{}",
                c.source,
                c.points,
                c.target,
                report.target,
                if c.replaced { ", replacing it" } else { "" }
            ));
            continue;
        }
        out.push(format!(
            "restored '{}' from snapshot {id} as '{}' on {} ({how}): {} point(s), {} in {:.1}s ({:.0} points/s){}",
            c.source,
            c.target,
            report.target,
            c.points,
            human_bytes(c.bytes),
            c.secs,
            c.points_per_sec,
            match (sandbox, c.replaced) {
                (true, _) => "; the sandbox collection is dropped again",
                (false, true) => "; the previous collection was replaced",
                (false, false) => "",
            }
        ));
        if !c.aliases.is_empty() {
            out.push(format!("  aliases restored: {}", c.aliases.join(", ")));
        }
        out.extend(c.warnings.iter().map(|w| format!("  warning: {w}")));
        if let Some(v) = &c.verify {
            out.push(format!(
                "  {} point(s), expected {}{}",
                v.points,
                point_range(v),
                if v.count_ok { "" } else { "  MISMATCH" }
            ));
            out.push(format!(
                "  {} sampled point(s) compared by vector and payload, {} mismatch(es)",
                v.sampled,
                v.mismatches.len()
            ));
            out.extend(v.mismatches.iter().map(|m| format!("  MISMATCH {m}")));
            out.push(format!(
                "  {} exact top-10 search(es): overlap min {:.2}, mean {:.2} (threshold {:.2})",
                v.queries, v.min_overlap, v.mean_overlap, v.threshold
            ));
            out.extend(v.low_overlap.iter().map(|l| format!("  LOW {l}")));
            out.extend(v.notes.iter().map(|n| format!("  note: {n}")));
        }
    }
    out
}
