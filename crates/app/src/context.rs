//! What every command needs: repository access (`Access`, which never prompts) plus the
//! terminal: a password prompt when no stored password exists, progress bars, JSON output.

use std::io::IsTerminal;

use anyhow::{anyhow, bail, Context as _, Result};
use engine::progress::Reporter;
use engine::repo::Repository;

use crate::access::{Access, RepoTarget};
use crate::cli::Cli;
use crate::config;
use crate::exit::usage;
use crate::output::ProgressView;

pub struct Context {
    pub access: Access,
    pub json: bool,
    pub quiet: bool,
}

/// Commands reach the repository through the context as they would through `Access`.
impl std::ops::Deref for Context {
    type Target = Access;

    fn deref(&self) -> &Access {
        &self.access
    }
}

impl Context {
    pub fn new(cli: &Cli) -> Result<Self> {
        let config = config::load(cli.config.as_deref()).map_err(|e| usage(format!("{e:#}")))?;
        Ok(Self {
            access: Access {
                config,
                repo_arg: cli.repo.clone(),
                password_file: cli.password_file.clone(),
                lock_wait: cli.retry_lock.unwrap_or_default(),
                index_cache: (!cli.no_cache).then(|| engine::index_cache::IndexCache {
                    dir: cli
                        .cache_dir
                        .clone()
                        .unwrap_or_else(crate::access::cache_home),
                    min_blobs: engine::index_cache::IndexCache::MIN_BLOBS,
                }),
                opened: Default::default(),
            },
            json: cli.json,
            quiet: cli.quiet,
        })
    }

    /// The stored password, or else a prompt on a terminal.
    pub fn password(&self, target: &RepoTarget, confirm: bool) -> Result<String> {
        match self.stored_password(target)? {
            Some(p) => Ok(p),
            None => prompt(&format!("password for {}", target.url), confirm),
        }
    }

    pub fn open(&self) -> Result<Repository> {
        self.open_at(&self.target(None)?)
    }

    pub fn open_at(&self, target: &RepoTarget) -> Result<Repository> {
        let password = self.password(target, false)?;
        self.open_with(self.store(target)?, target, &password)
    }

    /// The repository's snapshots. A damaged manifest is reported on stderr; it cannot stop
    /// a backup or the restore of another snapshot named by id, but "latest" refuses to pass
    /// over one that may be newer. `check` exits 6 for it.
    pub fn snapshots(&self, repo: &Repository) -> Result<engine::catalog::Snapshots> {
        let snapshots = engine::catalog::Snapshots::load(repo)?;
        for u in &snapshots.unreadable {
            eprintln!("warning: unreadable snapshot manifest {u}");
        }
        Ok(snapshots)
    }

    pub fn progress(&self, label: &str) -> ProgressView {
        ProgressView::start(!self.quiet && !self.json, label)
    }

    /// The configured sources with their recovery targets, and the scenarios; a usage error
    /// when no source is configured.
    pub fn stack(&self) -> Result<engine::recovery::stack::Stack<'_>> {
        self.config_file()
            .filter(|c| !c.sources.is_empty())
            .map(|c| c.stack())
            .ok_or_else(|| usage("no sources configured: add [sources.NAME] to bulwark.toml"))
    }

    /// Progress for work done one source after another: one view at a time.
    pub fn steps(&self) -> Steps<'_> {
        Steps {
            ctx: self,
            view: None,
        }
    }

    /// Runs `work` with progress bars labelled `label` (none with --json or -q), and takes
    /// them down before the result is printed.
    pub fn with_progress<T>(&self, label: &str, work: impl FnOnce(Reporter) -> T) -> T {
        let view = self.progress(label);
        let out = work(view.reporter());
        view.finish();
        out
    }
}

pub fn prompt(what: &str, confirm: bool) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(usage(format!(
            "no {what}: set BULWARK_PASSWORD_FILE (or BULWARK_PASSWORD), or run on a terminal"
        )));
    }
    let pw = rpassword::prompt_password(format!("Enter {what}: ")).context("reading password")?;
    if confirm {
        let again = rpassword::prompt_password("Repeat it: ").context("reading password")?;
        if again != pw {
            return Err(anyhow!(usage("the passwords do not match")));
        }
    }
    if pw.is_empty() {
        bail!(usage("empty password"));
    }
    Ok(pw)
}

/// One progress view at a time (see [`Context::steps`]).
pub struct Steps<'a> {
    ctx: &'a Context,
    view: Option<ProgressView>,
}

impl Steps<'_> {
    /// Takes down the previous step's view and starts one labelled `label`.
    pub fn start(&mut self, label: &str) -> Reporter {
        self.finish();
        let view = self.ctx.progress(label);
        let reporter = view.reporter();
        self.view = Some(view);
        reporter
    }

    /// Takes the current view down, before the step's result is printed.
    pub fn finish(&mut self) {
        if let Some(view) = self.view.take() {
            view.finish();
        }
    }
}
