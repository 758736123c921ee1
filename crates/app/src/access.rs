//! Repository access without a terminal: where the repository is (--repo,
//! BULWARK_REPOSITORY, the config file) and its password from a file or the environment.
//! Nothing here prompts or prints, so scheduled jobs and the daemon use it as the commands do;
//! `Context` adds the terminal (a password prompt, progress bars) on top.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use engine::repo::Repository;
use engine::store::Store;

use crate::config::{self, Loaded, RepoSection};
use crate::exit::usage;

pub struct Access {
    pub config: Option<Loaded>,
    pub repo_arg: Option<String>,
    pub password_file: Option<PathBuf>,
    /// How long to wait for another operation's lock (--retry-lock; 0: fail at once).
    pub lock_wait: std::time::Duration,
    /// Where opened repositories keep their index's table (None: --no-cache).
    pub index_cache: Option<engine::index_cache::IndexCache>,
    /// The repository the command opened first, with its URL (see [`Access::opened`]).
    pub opened: std::sync::Mutex<Option<(String, Repository)>>,
}

/// A repository location resolved from --repo, the environment or the config file.
pub struct RepoTarget {
    pub url: String,
    section: Option<RepoSection>,
}

impl Access {
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

    /// Where the config file was read from.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config.as_ref().map(|l| l.path.as_path())
    }

    /// Where state that must survive restarts goes (see `daemon::settings::state_dir`).
    pub fn state_dir(&self) -> PathBuf {
        match &self.config {
            Some(loaded) => crate::daemon::state_dir(loaded),
            None => crate::daemon::settings::state_dir(None),
        }
    }

    pub fn config_file(&self) -> Option<&config::ConfigFile> {
        self.config.as_ref().map(|l| &l.config)
    }

    /// Resolves a repository name from the config file, or takes the string as a URL.
    pub fn target(&self, name_or_url: Option<&str>) -> Result<RepoTarget> {
        resolve(self.config_file(), self.repo_arg.as_deref(), name_or_url)
    }

    /// Remembers the repository the command works on, for its audit entry: the first opened
    /// (copy's source, not its destination).
    pub fn opened(&self, target: &RepoTarget, repo: &Repository) {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if opened.is_none() {
            *opened = Some((target.url.clone(), repo.clone()));
        }
    }

    /// The command works on `repo` whatever it opened before (`init` from another's params).
    pub fn working_on(&self, target: &RepoTarget, repo: &Repository) {
        *self.opened.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((target.url.clone(), repo.clone()));
    }

    /// The repository remembered by [`Self::opened`], with its URL.
    pub fn opened_repository(&self) -> Option<(String, Repository)> {
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

    /// The password from --password-file / BULWARK_PASSWORD_FILE, BULWARK_PASSWORD or the
    /// repository section's password_file; None when only a person could give it.
    pub fn stored_password(&self, target: &RepoTarget) -> Result<Option<String>> {
        if let Some(p) = &self.password_file {
            return read_password_file(p).map(Some);
        }
        if let Ok(p) = std::env::var("BULWARK_PASSWORD") {
            if !p.is_empty() {
                return Ok(Some(p));
            }
        }
        match target
            .section
            .as_ref()
            .and_then(|s| s.password_file.as_ref())
        {
            Some(p) => read_password_file(p).map(Some),
            None => Ok(None),
        }
    }

    /// Opens the repository with a stored password; never asks for one.
    pub fn open_unattended(&self, target: &RepoTarget) -> Result<Repository> {
        let password = self.stored_password(target)?.ok_or_else(|| {
            usage(format!(
                "no password for {}: set BULWARK_PASSWORD_FILE, or password_file in the repository's section",
                target.url
            ))
        })?;
        self.open_with(self.store(target)?, target, &password)
    }

    pub fn open_with(
        &self,
        store: Store,
        target: &RepoTarget,
        password: &str,
    ) -> Result<Repository> {
        let repo = Repository::open(store, password)
            .with_context(|| format!("cannot open repository at {}", target.url))?;
        if let Some(cache) = &self.index_cache {
            repo.use_index_cache(cache.clone());
        }
        self.opened(target, &repo);
        Ok(repo)
    }
}

/// Bulwark's cache directory: $XDG_CACHE_HOME/bulwark, else ~/.cache/bulwark of the user we
/// run as (from the password database: servers are often started with another user's HOME in
/// the environment), else under the temporary directory.
pub fn cache_home() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home_of_euid().map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("bulwark")
}

fn home_of_euid() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the directory
    // out at once, and nothing else in this process calls getpwuid concurrently.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
    }
}

/// Where a repository is: `name_or_url` (a section name or a URL), else --repo /
/// BULWARK_REPOSITORY (`repo_arg`), else the config file's default.
pub fn resolve(
    config: Option<&config::ConfigFile>,
    repo_arg: Option<&str>,
    name_or_url: Option<&str>,
) -> Result<RepoTarget> {
    let repos = config.map(|c| &c.repositories);
    if let Some(w) = name_or_url.or(repo_arg) {
        if let Some(section) = repos.and_then(|r| r.get(w)) {
            return Ok(RepoTarget {
                url: section.url.clone(),
                section: Some(section.clone()),
            });
        }
        return Ok(RepoTarget {
            url: w.to_string(),
            section: None,
        });
    }
    let cfg = config.ok_or_else(|| {
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

pub fn read_password_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    let pw = text.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!(usage(format!("password file {} is empty", path.display())));
    }
    Ok(pw)
}
