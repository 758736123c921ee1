use anyhow::{anyhow, bail, Context as _, Result};
use engine::backup::{BackupOptions, Source};
use engine::connectors::files::FilesSource;
use engine::connectors::postgres::{Mode, PgConn, PgSettings, PostgresSource};
use engine::connectors::qdrant::{verify, Mode as QdrantMode, QdrantSettings, QdrantSource};
use engine::connectors::redis::{RedisSettings, RedisSource, RedisUrl};
use engine::connectors::stream::{StreamInput, StreamSource};
use engine::id::SetId;
use engine::snapshot::Snapshot;
use serde_json::json;

use crate::cli::BackupArgs;
use crate::config::{SourceKind, SourceSection};
use crate::context::Context;
use crate::exit::{usage, Status};
use crate::output::{bytes, print_json};

struct Job {
    source: Box<dyn Source>,
    tags: Vec<String>,
}

pub fn run(ctx: &Context, args: &BackupArgs) -> Result<Status> {
    let jobs = plan(ctx, args)?;
    let repo = ctx.open()?;
    let existing = ctx.snapshots(&repo)?;
    let host = engine::repo::hostname();
    let set_id = Some(SetId::random());
    let (mut results, mut failures, mut status) = (Vec::new(), 0usize, Status::Ok);
    for mut job in jobs {
        let info = job.source.info();
        let parent = if args.force {
            None
        } else {
            existing
                .list
                .iter()
                .filter(|(_, s)| {
                    s.source.name == info.name && s.hostname == host && !s.summary.partial
                })
                .max_by_key(|(_, s)| s.time)
                .map(|(id, _)| *id)
        };
        let view = ctx.progress(&info.name);
        let mut tags = args.tags.clone();
        tags.extend(job.tags.iter().cloned());
        let opts = BackupOptions {
            tags,
            set_id,
            parent,
            threads: args.threads,
            uploads: 0,
            lock_wait: ctx.lock_wait,
            progress: view.reporter(),
        };
        let outcome = engine::backup::run(&repo, job.source.as_mut(), opts);
        view.finish();
        match outcome {
            Ok((id, snap)) => {
                if snap.summary.partial {
                    status = Status::Partial;
                }
                if !ctx.json {
                    print_summary(&id.short(), &snap);
                }
                results.push(json!({ "source": info.name, "snapshot": id, "set_id": set_id, "summary": snap.summary }));
            }
            Err(e) => {
                failures += 1;
                eprintln!("error: source '{}': {e:#}", info.name);
                results.push(json!({ "source": info.name, "error": format!("{e:#}") }));
                // Every other source would meet the same lock.
                if e.kind() == engine::ErrorKind::Locked {
                    if ctx.json {
                        print_json(&results)?;
                    }
                    return Err(e.into());
                }
            }
        }
    }
    if ctx.json {
        print_json(&results)?;
    }
    if failures > 0 {
        bail!(
            "{failures} of {} source(s) failed; no snapshot was written for them",
            results.len()
        );
    }
    Ok(status)
}

fn plan(ctx: &Context, args: &BackupArgs) -> Result<Vec<Job>> {
    let job = |source: Box<dyn Source>| Job {
        source,
        tags: Vec::new(),
    };
    if args.stdin || args.stdin_from_command.is_some() {
        if !args.targets.is_empty() {
            bail!(usage("--stdin/--stdin-from-command take no paths"));
        }
        let name = args.name.clone().unwrap_or_else(|| "stream".into());
        let input = match &args.stdin_from_command {
            Some(cmd) => StreamInput::Command(cmd.clone()),
            None => StreamInput::Stdin,
        };
        return Ok(vec![job(Box::new(StreamSource::new(
            &name,
            &args.stdin_filename,
            input,
        )?))]);
    }
    let configured = ctx.config_file().map(|c| &c.sources);
    let is_source = |t: &String| configured.is_some_and(|s| s.contains_key(t));
    let (named, paths): (Vec<&String>, Vec<&String>) =
        args.targets.iter().partition(|t| is_source(t));
    if !named.is_empty() && !paths.is_empty() {
        bail!(usage(format!(
            "mixing configured sources ({}) with paths ({}); back them up separately",
            named
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            paths
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if !paths.is_empty() {
        let name = args.name.clone().unwrap_or_else(|| "files".into());
        let roots: Vec<std::path::PathBuf> = paths.iter().map(|p| p.into()).collect();
        return Ok(vec![job(Box::new(FilesSource::new(
            &name,
            "files",
            &roots,
            &[],
            &args.exclude,
        )?))]);
    }
    let sources = configured.filter(|s| !s.is_empty()).ok_or_else(|| {
        usage("nothing to back up: name directories (`bulwark backup DIR...`) or configure [sources.NAME] in bulwark.toml")
    })?;
    let mut jobs = Vec::new();
    for (name, s) in sources {
        if !named.is_empty() && !named.contains(&name) {
            continue;
        }
        let source: Box<dyn Source> = match s.kind {
            SourceKind::Files | SourceKind::Config => {
                let kind = if s.kind == SourceKind::Config {
                    "config"
                } else {
                    "files"
                };
                Box::new(FilesSource::new(
                    name, kind, &s.paths, &s.include, &s.exclude,
                )?)
            }
            SourceKind::Postgres => Box::new(postgres_source(name, s)?),
            SourceKind::Redis => Box::new(redis_source(name, s)?),
            SourceKind::Qdrant => Box::new(qdrant_source(name, s)?),
            SourceKind::Command => {
                let filename = s.filename.clone().unwrap_or_else(|| format!("{name}.out"));
                let cmd = s.command.clone().unwrap_or_default();
                Box::new(StreamSource::new(
                    name,
                    &filename,
                    StreamInput::Command(cmd),
                )?)
            }
        };
        jobs.push(Job {
            source,
            tags: s.tags.clone(),
        });
    }
    Ok(jobs)
}

/// A source's password from `password_file` or `password_env`; read here, once, and never
/// logged.
fn source_password(name: &str, s: &SourceSection) -> Result<Option<String>> {
    Ok(match (&s.password_file, &s.password_env) {
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .with_context(|| {
                    format!("source '{name}': cannot read password_file {}", f.display())
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
            anyhow!("source '{name}': password_env names ${var}, which is not set")
        })?),
        (None, None) => None,
    })
}

/// A configured postgres source.
pub fn postgres_source(name: &str, s: &SourceSection) -> Result<PostgresSource> {
    let password = source_password(name, s)?;
    let conn = PgConn::parse(s.url.as_deref().unwrap_or(""))?
        .with_password(password)
        .with_bin_dir(s.bin_dir.clone());
    let modes = if s.modes.is_empty() {
        vec![Mode::Logical]
    } else {
        s.modes_as()
            .map_err(|e| anyhow!("source '{name}': modes: {e}"))?
    };
    Ok(PostgresSource::new(
        name,
        PgSettings {
            conn,
            databases: s.databases.clone(),
            exclude_databases: s.exclude_databases.clone(),
            modes,
            jobs: s.jobs.unwrap_or(2),
            verify: s.verify.unwrap_or_default(),
            archive_wait: std::time::Duration::from_secs(s.archive_wait_secs.unwrap_or(60)),
        },
    )?)
}

/// A configured redis source.
fn redis_source(name: &str, s: &SourceSection) -> Result<RedisSource> {
    let url =
        RedisUrl::parse(s.url.as_deref().unwrap_or(""))?.with_password(source_password(name, s)?);
    Ok(RedisSource::new(
        name,
        RedisSettings {
            url,
            data_dir: s.data_dir.clone(),
        },
    ))
}

/// A configured qdrant source.
fn qdrant_source(name: &str, s: &SourceSection) -> Result<QdrantSource> {
    let modes = if s.modes.is_empty() {
        vec![QdrantMode::Logical]
    } else {
        s.modes_as()
            .map_err(|e| anyhow!("source '{name}': modes: {e}"))?
    };
    Ok(QdrantSource::new(
        name,
        QdrantSettings {
            url: s.url.clone().unwrap_or_default(),
            api_key: source_password(name, s)?,
            collections: s.collections.clone(),
            modes,
            samples: verify::SAMPLE_POINTS,
            queries: verify::SAMPLE_QUERIES,
        },
    ))
}

fn print_summary(id: &str, snap: &Snapshot) {
    let s = &snap.summary;
    println!(
        "snapshot {id} of '{}' saved: {} files ({} new, {} changed, {} unchanged), {} dirs, {} in {:.1}s; added {} ({} stored)",
        snap.source.name,
        s.files,
        s.files_new,
        s.files_changed,
        s.files_unchanged,
        s.dirs,
        bytes(s.bytes),
        s.duration_secs,
        bytes(s.data_added),
        bytes(s.stored_added)
    );
    for w in &s.warnings {
        println!("  warning: {}: {}", w.path, w.message);
    }
    for e in &s.errors {
        println!("  error: {}: {}", e.path, e.message);
    }
    if s.partial {
        println!(
            "  snapshot is PARTIAL: {} item(s) could not be backed up",
            s.errors.len()
        );
    }
}
