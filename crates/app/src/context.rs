//! What every command needs: the loaded config, where the repository is, and its password.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use engine::progress::Reporter;
use engine::repo::Repository;
use engine::store::Store;

use crate::cli::Cli;
use crate::config::{self, Loaded, RepoSection};
use crate::exit::usage;
use crate::output::ProgressView;

pub struct Context {
    pub config: Option<Loaded>,
    repo_arg: Option<String>,
    password_file: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
    /// How long to wait for another operation's lock (--retry-lock; 0: fail at once).
    pub lock_wait: std::time::Duration,
}

/// A repository location resolved from --repo, the environment or the config file.
pub struct RepoTarget {
    pub url: String,
    section: Option<RepoSection>,
}

impl Context {
    pub fn new(cli: &Cli) -> Result<Self> {
        let config = config::load(cli.config.as_deref()).map_err(|e| usage(format!("{e:#}")))?;
        Ok(Self {
            config,
            repo_arg: cli.repo.clone(),
            password_file: cli.password_file.clone(),
            json: cli.json,
            quiet: cli.quiet,
            lock_wait: cli.retry_lock.unwrap_or_default(),
        })
    }

    /// A `bulwark` command line that PostgreSQL can run on its own later (restore_command):
    /// this binary, the same config file, repository and password file, shell-quoted.
    pub fn self_command(&self, target: &RepoTarget) -> Result<String> {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let exe = std::env::current_exe().context("locating the bulwark binary")?;
        let mut cmd = quote(&exe.to_string_lossy());
        if let Some(c) = &self.config {
            cmd.push_str(&format!(" --config {}", quote(&c.path.to_string_lossy())));
        }
        if let Some(r) = &self.repo_arg {
            cmd.push_str(&format!(" --repo {}", quote(r)));
        }
        let section_has_file = target
            .section
            .as_ref()
            .is_some_and(|s| s.password_file.is_some());
        match &self.password_file {
            Some(p) => {
                let p = std::path::absolute(p).unwrap_or(p.clone());
                cmd.push_str(&format!(" --password-file {}", quote(&p.to_string_lossy())));
            }
            None if section_has_file => {}
            None => bail!(usage(
                "PostgreSQL will fetch WAL on its own, so the repository password must be in a file: pass --password-file or set password_file in the repository's section"
            )),
        }
        Ok(cmd)
    }

    /// [`Self::self_command`] for the default repository, for restores whose server calls
    /// back (PostgreSQL's restore_command); or why there is none.
    pub fn callback(&self) -> std::result::Result<String, String> {
        self.target(None)
            .and_then(|t| self.self_command(&t))
            .map_err(|e| format!("{e:#}"))
    }

    pub fn config_file(&self) -> Option<&config::ConfigFile> {
        self.config.as_ref().map(|l| &l.config)
    }

    /// Resolves a repository name from the config file, or takes the string as a URL.
    pub fn target(&self, name_or_url: Option<&str>) -> Result<RepoTarget> {
        let repos = self.config_file().map(|c| &c.repositories);
        let wanted = name_or_url
            .map(str::to_string)
            .or_else(|| self.repo_arg.clone());
        if let Some(w) = wanted {
            if let Some(section) = repos.and_then(|r| r.get(&w)) {
                return Ok(RepoTarget {
                    url: section.url.clone(),
                    section: Some(section.clone()),
                });
            }
            return Ok(RepoTarget {
                url: w,
                section: None,
            });
        }
        let cfg = self.config_file().ok_or_else(|| {
            usage("no repository given: pass --repo PATH_OR_URL, set BULWARK_REPOSITORY, or write a bulwark.toml")
        })?;
        let name = match (&cfg.default_repository, cfg.repositories.len()) {
            (Some(d), _) => d.clone(),
            (None, 1) => cfg.repositories.keys().next().cloned().unwrap_or_default(),
            (None, 0) => bail!(usage(
                "the config file declares no [repositories.NAME]; pass --repo"
            )),
            (None, _) => bail!(usage(
                "several repositories are configured: set default_repository or pass --repo NAME"
            )),
        };
        let section = cfg.repositories.get(&name).cloned();
        let url = section.as_ref().map(|s| s.url.clone()).unwrap_or_default();
        Ok(RepoTarget { url, section })
    }

    pub fn store(&self, target: &RepoTarget) -> Result<Store> {
        let opts = config::storage_options(target.section.as_ref());
        Ok(Store::open(&target.url, &opts)?)
    }

    /// The storage for `init`, the one command that may create a local directory.
    pub fn new_store(&self, target: &RepoTarget) -> Result<Store> {
        let opts = config::storage_options(target.section.as_ref());
        Ok(Store::create(&target.url, &opts)?)
    }

    /// The password: --password-file / BULWARK_PASSWORD_FILE, BULWARK_PASSWORD, the
    /// repository section's password_file, or a prompt on a terminal.
    pub fn password(&self, target: &RepoTarget, confirm: bool) -> Result<String> {
        if let Some(p) = &self.password_file {
            return read_password_file(p);
        }
        if let Ok(p) = std::env::var("BULWARK_PASSWORD") {
            if !p.is_empty() {
                return Ok(p);
            }
        }
        if let Some(p) = target
            .section
            .as_ref()
            .and_then(|s| s.password_file.as_ref())
        {
            return read_password_file(p);
        }
        prompt(&format!("password for {}", target.url), confirm)
    }

    pub fn open(&self) -> Result<Repository> {
        self.open_at(&self.target(None)?)
    }

    pub fn open_at(&self, target: &RepoTarget) -> Result<Repository> {
        let store = self.store(target)?;
        let password = self.password(target, false)?;
        Repository::open(store, &password)
            .with_context(|| format!("cannot open repository at {}", target.url))
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

    /// Runs `work` with progress bars labelled `label` (none with --json or -q), and takes
    /// them down before the result is printed.
    pub fn with_progress<T>(&self, label: &str, work: impl FnOnce(Reporter) -> T) -> T {
        let view = self.progress(label);
        let out = work(view.reporter());
        view.finish();
        out
    }
}

pub fn read_password_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    let pw = text.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!(usage(format!("password file {} is empty", path.display())));
    }
    Ok(pw)
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
