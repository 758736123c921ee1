//! `backup`: the sources to back up (configured, or directories and streams named on the
//! command line) are run as one set by the engine; this file picks them and prints results.

use anyhow::{bail, Result};
use engine::backup_set::{self, Member, MemberResult, SetObserver, SetOptions};
use engine::connectors::files::FilesSource;
use engine::connectors::stream::{StreamInput, StreamSource};
use engine::connectors::Kind;
use engine::progress::Reporter;
use engine::snapshot::Snapshot;

use crate::cli::BackupArgs;
use crate::context::{Context, Steps};
use crate::exit::{usage, Status};
use crate::output::{bytes, print_json};

pub fn run(ctx: &Context, args: &BackupArgs) -> Result<Status> {
    let members = plan(ctx, args)?;
    let repo = ctx.open()?;
    let existing = ctx.snapshots(&repo)?;
    let opts = SetOptions {
        tags: args.tags.clone(),
        force: args.force,
        threads: args.threads,
        lock_wait: ctx.lock_wait,
        config_files: ctx.config_path().map(Into::into).into_iter().collect(),
    };
    let mut terminal = Terminal {
        ctx,
        steps: ctx.steps(),
    };
    let report = backup_set::run(&repo, &existing, members, &opts, &mut terminal);
    if ctx.json {
        print_json(&report.results)?;
    }
    if let Some(e) = &report.record_error {
        eprintln!("warning: the backup set's record could not be stored: {e}");
    }
    if let Some(e) = report.aborted {
        return Err(e.into());
    }
    let failures = report.failures();
    if failures > 0 {
        bail!(
            "{failures} of {} source(s) failed; no snapshot was written for them",
            report.results.len()
        );
    }
    Ok(if report.partial() {
        Status::Partial
    } else {
        Status::Ok
    })
}

/// Progress bars and one summary per source.
struct Terminal<'a> {
    ctx: &'a Context,
    steps: Steps<'a>,
}

impl SetObserver for Terminal<'_> {
    fn started(&mut self, source: &str) -> Reporter {
        self.steps.start(source)
    }

    fn finished(&mut self, result: &MemberResult) {
        self.steps.finish();
        match (&result.error, &result.saved, &result.snapshot) {
            (Some(e), ..) => eprintln!("error: source '{}': {e}", result.source),
            (None, Some(snap), Some(id)) if !self.ctx.json => print_summary(&id.short(), snap),
            _ => {}
        }
    }
}

fn plan(ctx: &Context, args: &BackupArgs) -> Result<Vec<Member>> {
    let member = |source: Box<dyn engine::backup::Source>| Member {
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
        return Ok(vec![member(Box::new(StreamSource::new(
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
        let list = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        bail!(usage(format!(
            "mixing configured sources ({}) with paths ({}); back them up separately",
            list(&named),
            list(&paths)
        )));
    }
    if !paths.is_empty() {
        let name = args.name.clone().unwrap_or_else(|| "files".into());
        let roots: Vec<std::path::PathBuf> = paths.iter().map(|p| p.into()).collect();
        return Ok(vec![member(Box::new(FilesSource::new(
            &name,
            Kind::Files,
            &roots,
            &[],
            &args.exclude,
        )?))]);
    }
    let sources = configured.filter(|s| !s.is_empty()).ok_or_else(|| {
        usage("nothing to back up: name directories (`bulwark backup DIR...`) or configure [sources.NAME] in bulwark.toml")
    })?;
    let mut members = Vec::new();
    for (name, s) in sources {
        if !named.is_empty() && !named.contains(&name) {
            continue;
        }
        members.push(Member {
            source: s.datastore.source()?,
            tags: s.tags.clone(),
        });
    }
    Ok(members)
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
