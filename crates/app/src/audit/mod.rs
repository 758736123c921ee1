//! The audit log: who did what to which repository, when, and how it ended. One log per
//! repository and state directory (`<state_dir>/audit/<repository id>.log`), one JSON entry per
//! line. Each entry carries the MAC of the one before it and its own, keyed with a key derived
//! from the repository's master key, so an entry cannot be edited, dropped or moved without
//! the key; the newest entry's MAC is sealed into the repository (`audit/<log id>`) after every
//! action that writes there, so a log cut short is found too.
//!
//! A process that has not opened the repository (the daemon; a command that failed before it
//! could) leaves its event in a pending file; the next process that holds the key chains it.

mod verify;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use engine::repo::Repository;
use engine::store::ObjectKind;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use verify::verify;

/// Something that happened: what the caller knows before it is chained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time: Timestamp,
    pub host: String,
    /// The OS user, or `api:<token name>`.
    pub actor: String,
    /// How: `cli`, `job NAME (TRIGGER)`, `daemon`, `api`.
    pub via: String,
    pub action: String,
    pub target: String,
    /// `success`, `partial`, `failed: <why>`, `interrupted`, ...
    pub result: String,
}

impl Event {
    /// An event of this process's user, now.
    pub fn now(action: &str, target: &str, result: &str) -> Self {
        Self {
            time: Timestamp::now(),
            host: engine::repo::hostname(),
            actor: os_user(),
            via: std::env::var(VIA_ENV).unwrap_or_else(|_| "cli".into()),
            action: action.into(),
            // A target or an error may hold a URL with a password: never written down.
            target: bounded(&crate::daemon::runner::redact(target)),
            result: bounded(&crate::daemon::runner::redact(result)),
        }
    }
}

impl Event {
    /// The same event, done by `actor` through `via` (an API token, the daemon).
    pub fn by(self, actor: &str, via: &str) -> Self {
        Self {
            actor: actor.into(),
            via: via.into(),
            ..self
        }
    }
}

/// Set by `run-job` for its steps: the job and what started it.
pub const VIA_ENV: &str = "BULWARK_AUDIT_VIA";

/// What the MAC covers: everything in an entry but the MAC itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Body {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
    /// When the entry joined the chain, if later than `time` (it waited in the pending file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chained: Option<Timestamp>,
    /// The previous entry's MAC (empty for the first).
    pub prev: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub body: Body,
    pub mac: String,
}

impl Body {
    fn mac(&self, key: &[u8; 32]) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        blake3::keyed_hash(key, &bytes).to_hex().to_string()
    }
}

/// What the repository holds about one host's log: its newest entry when last sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seal {
    pub version: u32,
    pub hostname: String,
    pub state_dir: String,
    pub seq: u64,
    pub mac: String,
    pub time: Timestamp,
}

/// The audit directory of a state directory.
pub struct Log {
    dir: PathBuf,
    state_dir: PathBuf,
}

impl Log {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("audit"),
            state_dir: std::path::absolute(state_dir).unwrap_or(state_dir.to_path_buf()),
        }
    }

    pub fn chain_path(&self, repo: &Repository) -> PathBuf {
        self.dir.join(format!("{}.log", repo.config().id))
    }

    /// Events waiting for the key of the repository at `url`.
    fn pending_path(&self, url: &str) -> PathBuf {
        let tag = blake3::hash(url.as_bytes()).to_hex();
        self.dir.join(format!("pending-{}.log", &tag[..16]))
    }

    /// The name of this log's seal in the repository: one per host and state directory.
    fn seal_name(&self) -> String {
        let who = format!("{}\0{}", engine::repo::hostname(), self.state_dir.display());
        blake3::hash(who.as_bytes()).to_hex()[..32].to_string()
    }

    /// Records `event` for the repository at `url` without its key, to be chained later.
    pub fn defer(&self, url: &str, event: &Event) -> Result<()> {
        let _lock = self.lock()?;
        append_line(&self.pending_path(url), &serde_json::to_string(event)?)
    }

    /// Chains the pending events of `url` and then `event` into `repo`'s log; with `seal`,
    /// writes the newest entry's MAC into the repository.
    pub fn record(
        &self,
        repo: &Repository,
        url: &str,
        event: Option<&Event>,
        seal: bool,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let key = repo.key().audit_key();
        let path = self.chain_path(repo);
        let (mut seq, mut prev) = match last_entry(&path)? {
            Some(e) => (e.body.seq, e.mac),
            None => (0, String::new()),
        };
        let pending_path = self.pending_path(url);
        let pending = read_pending(&pending_path)?;
        let now = Timestamp::now();
        let waited = pending.iter().map(|e| (e, Some(now)));
        for (event, chained) in waited.chain(event.map(|e| (e, None))) {
            seq += 1;
            let body = Body {
                seq,
                event: event.clone(),
                chained,
                prev,
            };
            let mac = body.mac(&key);
            append_line(
                &path,
                &serde_json::to_string(&Entry {
                    body,
                    mac: mac.clone(),
                })?,
            )?;
            prev = mac;
        }
        if !pending.is_empty() {
            std::fs::remove_file(&pending_path)
                .with_context(|| format!("removing {}", pending_path.display()))?;
        }
        if seal && seq > 0 {
            let seal = Seal {
                version: 1,
                hostname: engine::repo::hostname(),
                state_dir: self.state_dir.display().to_string(),
                seq,
                mac: prev,
                time: now,
            };
            repo.save_json_as(ObjectKind::Audit, &self.seal_name(), &seal)
                .context("sealing the audit log into the repository")?;
        }
        Ok(())
    }

    /// Every line of `repo`'s log, as written, and its seal in the repository if one was
    /// written: read under the log's lock, so a writer appending and sealing meanwhile cannot
    /// make the pair look cut short.
    pub fn read(&self, repo: &Repository) -> Result<(Vec<String>, Option<Seal>)> {
        let _lock = self.lock()?;
        let path = self.chain_path(repo);
        let lines = match std::fs::read_to_string(&path) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
        };
        let name = self.seal_name();
        let seal = if repo.store().exists(ObjectKind::Audit, &name)? {
            Some(repo.load_json(ObjectKind::Audit, &name)?)
        } else {
            None
        };
        Ok((lines, seal))
    }

    /// One writer at a time in this directory (commands, jobs and the daemon share it).
    fn lock(&self) -> Result<File> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))
            .with_context(|| format!("opening {}", self.dir.join(".lock").display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file we own; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(anyhow!(std::io::Error::last_os_error()).context("locking the audit log"));
        }
        Ok(file)
    }
}

/// Appends one line and syncs it; a failed write is cut back off, so a full disk never leaves
/// half an entry behind.
fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let written = file
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| file.sync_data());
    if let Err(e) = written {
        let _ = file.set_len(len);
        return Err(anyhow!(e).context(format!("writing {}", path.display())));
    }
    Ok(())
}

/// The last complete entry of a log (entries are far shorter than the tail read).
fn last_entry(path: &Path) -> Result<Option<Entry>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut tail = String::new();
    file.read_to_string(&mut tail)
        .with_context(|| format!("reading {}", path.display()))?;
    // A damaged last line is the verifier's to report; appending goes on after the newest
    // entry that parses.
    Ok(tail
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Entry>(l).ok()))
}

const TAIL: u64 = 64 * 1024;

fn read_pending(path: &Path) -> Result<Vec<Event>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow!(e).context(format!("reading {}", path.display()))),
    }
}

/// Entries stay far below the tail read by `last_entry`.
fn bounded(text: &str) -> String {
    const MAX: usize = 2000;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The user this process runs as (from the password database, not the environment), and who
/// became it through sudo.
pub fn os_user() -> String {
    // SAFETY: getuid has no preconditions; getpwuid_r writes into the buffers we pass.
    let name = unsafe {
        let uid = libc::getuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) == 0
            && !out.is_null()
        {
            std::ffi::CStr::from_ptr(pw.pw_name)
                .to_string_lossy()
                .into_owned()
        } else {
            format!("uid {uid}")
        }
    };
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != name => format!("{name} (sudo by {by})"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_targets_and_results_are_not_written_down() {
        let e = Event::now(
            "restore",
            "latest to postgres://app:hunter2@db:5432/app",
            "failed: connecting with password=swordfish refused",
        );
        assert_eq!(e.target, "latest to postgres://app:***@db:5432/app");
        assert_eq!(e.result, "failed: connecting with password=*** refused");
    }

    /// The daemon verifies the log while jobs append to it and seal it: the lines and the
    /// seal are read as one, so a seal newer than the lines read is never taken for a log cut
    /// short.
    #[test]
    fn a_log_verified_while_another_process_appends_and_seals_is_intact() {
        use engine::repo::InitOptions;
        use engine::store::{StorageOptions, Store};
        let dir = tempfile::tempdir().expect("tmp");
        let url = dir.path().join("repo").display().to_string();
        let store = Store::create(&url, &StorageOptions::default()).expect("store");
        let opts = InitOptions {
            kdf: engine::crypto::KdfParams::with_cost(256, 1),
            ..Default::default()
        };
        let repo = Repository::init(store, "pw", opts).expect("init");
        let log = Log::new(&dir.path().join("state"));
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..300 {
                    let event = Event::now("backup", "data", "success");
                    log.record(&repo, &url, Some(&event), true).expect("record");
                }
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut verified = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (lines, seal) = log.read(&repo).expect("read");
                let verdict = verify(&lines, &repo.key().audit_key(), seal);
                assert!(verdict.ok(), "{:?}", verdict.problems);
                verified += 1;
            }
            assert!(verified > 0);
        });
    }
}
