//! Files and config sources through the datastore interface: configuration, restore into a
//! directory, sandbox, and verification of the restored tree against the snapshot's items.
//! Streams restore the same way (see `stream`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::FilesSource;
use crate::backup::Source;
use crate::connectors::interface::Tier;
use crate::connectors::interface::{
    fields_of, ConfigError, Connector, Datastore, Health, Kind, Mismatch, Point, Recovery,
    RestoreInput, RestoreOutcome, RestoreRequest, Restored, Section, Timings, Verdict,
};
use crate::connectors::sandbox::Throwaway;
use crate::error::{Error, Result, ResultExt};
use crate::filter::PathFilter;
use crate::index::Index;
use crate::items::ItemKind;
use crate::progress::Progress;
use crate::restore::{RestoreOptions, RestoreSummary};
use crate::snapshot::Snapshot;

/// Files, or config files (whose syntax is checked at backup time).
pub struct FilesConnector(pub Kind);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesSettings {
    paths: Vec<PathBuf>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    /// Health warns when a path's filesystem has less than this share free (0 = never).
    #[serde(default = "default_min_free_percent")]
    min_free_percent: u8,
}

fn default_min_free_percent() -> u8 {
    10
}

struct FilesDatastore {
    name: String,
    kind: Kind,
    settings: FilesSettings,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TreeOptions {
    /// Only paths matching these globs (or under a matching directory).
    #[serde(default)]
    include: Vec<String>,
}

impl Connector for FilesConnector {
    fn kind(&self) -> Kind {
        self.0
    }

    fn tier(&self) -> Tier {
        match self.0 {
            Kind::Config => Tier::Config,
            _ => Tier::Files,
        }
    }

    fn restore_options(&self) -> &'static [&'static str] {
        fields_of::<TreeOptions>()
    }

    fn config_keys(&self) -> &'static [&'static str] {
        fields_of::<FilesSettings>()
    }

    fn configure(&self, name: &str, section: &Section) -> Result<Box<dyn Datastore>, ConfigError> {
        let mut settings: FilesSettings = section.parse()?;
        if settings.paths.is_empty() {
            return Err(ConfigError::new(
                "paths",
                "a files/config source needs at least one path",
            ));
        }
        for (key, patterns) in [
            ("include", &settings.include),
            ("exclude", &settings.exclude),
        ] {
            PathFilter::new(patterns).map_err(|e| ConfigError::new(key, e.to_string()))?;
        }
        if settings.min_free_percent > 100 {
            return Err(ConfigError::new(
                "min_free_percent",
                "a share of the filesystem: 0 to 100",
            ));
        }
        settings.paths = settings.paths.iter().map(|p| section.path(p)).collect();
        Ok(Box::new(FilesDatastore {
            name: name.to_string(),
            kind: self.0,
            settings,
        }))
    }

    fn restore(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: TreeOptions = req.options_as(self.0)?;
        let target = req.target()?;
        restore_tree(input, req, Path::new(target), &opts.include, false)
    }

    fn sandbox(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        let opts: TreeOptions = req.options_as(self.0)?;
        tree_sandbox(input, req, &opts.include)
    }
}

impl Datastore for FilesDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        self.kind
    }

    /// Each path present, and the free space of the filesystem holding it.
    fn health(&self) -> Health {
        let mut h = Health {
            reachable: true,
            ..Health::default()
        };
        let mut free = std::collections::BTreeMap::new();
        for p in &self.settings.paths {
            if !p.exists() {
                h.reachable = false;
                h.warnings.push(format!("{} does not exist", p.display()));
                continue;
            }
            if let Some((avail, total)) = free_space(p) {
                free.insert(p.display().to_string(), avail);
                let min_percent = u64::from(self.settings.min_free_percent);
                if total > 0 && avail * 100 < total * min_percent {
                    h.warnings.push(format!(
                        "the filesystem holding {} has {} free ({}%)",
                        p.display(),
                        crate::stats::human_bytes(avail),
                        avail * 100 / total
                    ));
                }
            }
        }
        h.detail("free_bytes", free);
        h
    }

    fn source(&self) -> Result<Box<dyn Source>> {
        let s = &self.settings;
        Ok(Box::new(FilesSource::new(
            &self.name, self.kind, &s.paths, &s.include, &s.exclude,
        )?))
    }

    /// Back to their own paths (stored absolute, so the target is `/`); a file there is
    /// overwritten, one the snapshot does not hold is left alone.
    fn recovery(&self, _snapshot: &Snapshot, _point: &Point, _replace: bool) -> Result<Recovery> {
        let occupied: Vec<String> = self
            .settings
            .paths
            .iter()
            .filter_map(|p| {
                let p = std::path::absolute(p).ok()?;
                let held = match std::fs::read_dir(&p) {
                    Ok(entries) => entries.count(),
                    Err(_) => usize::from(p.exists()),
                };
                (held > 0).then(|| format!("{} ({held} entries)", p.display()))
            })
            .collect();
        Ok(Recovery {
            target: "/".into(),
            method: "files restored to their own paths (files there are overwritten)".into(),
            occupied: (!occupied.is_empty()).then(|| occupied.join(", ")),
            ..Recovery::default()
        })
    }
}

/// Bytes available to unprivileged users and the size of the filesystem holding `path`.
pub(crate) fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass and reads the C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Restores a snapshot's items into a temporary directory under the scratch space, verifies
/// them, and removes the directory.
pub(crate) fn tree_sandbox(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    include: &[String],
) -> Result<Restored> {
    let dir = tempfile::Builder::new()
        .prefix("bulwark-sandbox-")
        .tempdir_in(&req.scratch)
        .with_context(|| format!("creating a sandbox directory in {}", req.scratch.display()))?;
    let _gone = Throwaway::dir(dir.path());
    restore_tree(input, req, dir.path(), include, true)
}

/// Restores a snapshot's items into a directory, then checks the tree against the items.
pub(crate) fn restore_tree(
    input: &RestoreInput<'_>,
    req: &RestoreRequest,
    target: &Path,
    include: &[String],
    sandbox: bool,
) -> Result<Restored> {
    let kind = input.kind;
    req.refuse(
        kind,
        &[("--start", req.start), ("--port", req.port.is_some())],
    )?;
    if target.to_string_lossy().contains("://") {
        return Err(Error::invalid(format!(
            "a {kind} snapshot restores into a directory, not '{}'",
            target.display()
        )));
    }
    let started = Instant::now();
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        include: include.to_vec(),
        subtree: None,
        dry_run: req.dry_run,
        threads: 0,
        progress: req.progress.clone(),
    };
    req.progress.send(Progress::Phase("loading index".into()));
    let index = Arc::new(input.repo.load_index()?);
    let summary = crate::restore::restore_using(input.repo, index.clone(), input.snapshot, &opts)?;
    let transfer_secs = started.elapsed().as_secs_f64();
    let verdict = if req.verify && !req.dry_run {
        let checking = Instant::now();
        let v = verify_tree(input, index, target, include, &summary)?;
        Some((v, checking.elapsed().as_secs_f64()))
    } else {
        None
    };
    let mut incomplete: Vec<String> = summary
        .errors
        .iter()
        .filter(|_| summary.item_list_damaged.is_none())
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    if !summary.errors.is_empty() && summary.item_list_damaged.is_none() {
        incomplete.push(format!(
            "{} file(s) could NOT be restored; every other file was verified against its chunk ids",
            summary.errors.len()
        ));
    }
    incomplete.extend(partial_snapshot(input));
    let lines = tree_lines(input, target, &summary, req.dry_run, sandbox);
    let outcome = RestoreOutcome {
        sandbox,
        dry_run: req.dry_run,
        items: summary.files,
        bytes: summary.bytes,
        timings: Timings {
            total_secs: started.elapsed().as_secs_f64(),
            transfer_secs,
            ready_secs: None,
            verify_secs: verdict.as_ref().map(|(_, secs)| *secs),
        },
        verdict: verdict.map(|(v, _)| v),
        incomplete,
        damaged: summary.item_list_damaged.as_ref().map(|_| {
            "the snapshot's item list is damaged: the files it lists before the damage were restored and verified; those after it are unknown and NOT restored".to_string()
        }),
        ..RestoreOutcome::of(input, target.display().to_string(), "files")
    };
    Ok(Restored::new(outcome, &summary, lines))
}

/// The items a snapshot was missing when it was taken (a partial snapshot).
pub(crate) fn partial_snapshot(input: &RestoreInput<'_>) -> Vec<String> {
    let s = &input.snapshot.summary;
    if !s.partial {
        return Vec::new();
    }
    let mut out = vec![format!(
        "snapshot {} is partial: {} item(s) could not be backed up and are not in it:",
        input.id.short(),
        s.errors.len()
    )];
    out.extend(
        s.errors
            .iter()
            .map(|e| format!("  {}: {}", e.path, e.message)),
    );
    out
}

fn tree_lines(
    input: &RestoreInput<'_>,
    target: &Path,
    summary: &RestoreSummary,
    dry_run: bool,
    sandbox: bool,
) -> Vec<String> {
    let verb = match (dry_run, sandbox) {
        (true, _) => "would restore",
        (false, true) => "sandbox restore of",
        (false, false) => "restored",
    };
    vec![format!(
        "{verb} snapshot {} of '{}' to {}: {} files, {} dirs, {} symlinks, {} in {:.1}s",
        input.id.short(),
        input.snapshot.source.name,
        target.display(),
        summary.files,
        summary.dirs,
        summary.symlinks,
        crate::stats::human_bytes(summary.bytes),
        summary.duration_secs
    )]
}

/// Every item the snapshot lists (and the include patterns select) must stand in the target
/// with its type, and files with their size: what a restore that reported success but lost
/// or truncated a file would fail. Files the restore already reported as failed are not
/// counted again.
fn verify_tree(
    input: &RestoreInput<'_>,
    index: Arc<Index>,
    target: &Path,
    include: &[String],
    summary: &RestoreSummary,
) -> Result<Verdict> {
    let filter = PathFilter::new(include)?;
    let failed: std::collections::HashSet<&str> =
        summary.errors.iter().map(|e| e.path.as_str()).collect();
    let mut verdict = Verdict::default();
    let items =
        crate::restore::selected_items(input.repo, &index, &input.snapshot.tree, include, None);
    for item in items {
        let Ok(item) = item else {
            // The restore reported the damaged list already.
            break;
        };
        if (!filter.is_empty() && !filter.matches(&item.path))
            || failed.contains(item.path.as_str())
        {
            continue;
        }
        verdict.checked += 1;
        let path = target.join(&item.path);
        let problem = match (std::fs::symlink_metadata(&path), item.kind) {
            (Err(e), _) => Some(format!("missing ({e})")),
            (Ok(m), ItemKind::File) if !m.is_file() => Some("not a regular file".into()),
            (Ok(m), ItemKind::File) if m.size() != item.size => {
                Some(format!("{} bytes, the backup has {}", m.size(), item.size))
            }
            (Ok(m), ItemKind::Dir) if !m.is_dir() => Some("not a directory".into()),
            (Ok(m), ItemKind::Symlink) if !m.file_type().is_symlink() => {
                Some("not a symbolic link".into())
            }
            _ => None,
        };
        if let Some(problem) = problem {
            verdict
                .mismatches
                .push(Mismatch::new("file", item.path.clone(), problem));
        }
    }
    Ok(verdict)
}
