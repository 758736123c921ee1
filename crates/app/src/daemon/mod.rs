//! `bulwark daemon`: runs the configured jobs on their schedules and serves the API. The
//! scheduler is level-triggered: for each job it compares the newest due slot of its cron
//! expression with the newest slot that has a run in the state database, so after downtime
//! a job runs once, not once per missed slot. Each run is a `bulwark run-job` child process
//! (see `runner`); the daemon itself never touches a datastore, so a crash in a job cannot
//! take the scheduler down. Signals: SIGTERM/SIGINT stop the running jobs cleanly and exit,
//! SIGHUP reloads the config (an invalid one is refused and the old one stays).

mod alerter;
pub mod runner;
pub mod settings;
pub mod state;
pub mod survey;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use jiff::Timestamp;

use crate::config::{self, Loaded};
use crate::jobs::Job;
use state::{NewRun, RunResult, State};

/// The daemon's shared parts: the scheduler, the signal loop and the web server use them.
pub struct Daemon {
    config: RwLock<Arc<Loaded>>,
    state: Mutex<State>,
    state_dir: PathBuf,
    running: Mutex<HashMap<String, RunningJob>>,
    /// Schedule slots this process already started a run for: a slot whose run was
    /// interrupted is owed one more run, once.
    attempted: Mutex<HashMap<String, Timestamp>>,
    stopping: AtomicBool,
    /// The last failure to write the state database (a full disk): shown by the API.
    pub state_error: Mutex<Option<String>>,
    /// The latest assessment of the stack, and whether a job ended since.
    survey: RwLock<Option<survey::Survey>>,
    survey_due: AtomicBool,
    pub started: Timestamp,
}

struct RunningJob {
    child: Child,
    run_id: Option<i64>,
    repository: Option<String>,
}

/// A run a job owes: the slot it runs for, and since when it has been owed (the first slot
/// after its last run).
struct Owed {
    since: Timestamp,
    slot: Timestamp,
}

/// How long running jobs get to stop after SIGTERM before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(90);

impl Daemon {
    pub fn new(loaded: Loaded) -> Result<Arc<Self>> {
        let state_dir = state_dir(&loaded);
        let state = State::open(&state_dir)?;
        let closed = state.close_abandoned_runs()?;
        if closed > 0 {
            eprintln!("{closed} run(s) left running by a previous daemon recorded as interrupted");
        }
        Ok(Arc::new(Self {
            config: RwLock::new(Arc::new(loaded)),
            state: Mutex::new(state),
            state_dir,
            running: Mutex::new(HashMap::new()),
            attempted: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            state_error: Mutex::new(None),
            survey: RwLock::new(None),
            survey_due: AtomicBool::new(true),
            started: Timestamp::now(),
        }))
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    pub fn survey(&self) -> Option<survey::Survey> {
        self.survey
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Assesses the stack when a job ended or [`survey::INTERVAL`] passed.
    fn survey_if_due(&self) {
        let last = self.survey().map(|s| s.time);
        let stale = last.is_none_or(|t| {
            Timestamp::now().duration_since(t).as_secs() >= survey::INTERVAL.as_secs() as i64
        });
        if !self.survey_due.swap(false, Ordering::SeqCst) && !stale {
            return;
        }
        let taken = survey::take(&self.config().path);
        if let Some(e) = &taken.error {
            eprintln!("warning: assessing the stack: {e}");
        }
        if let Some(a) = &taken.assess {
            // The history the dashboard draws: repository size, each recovery point's age.
            let mut samples = vec![(
                "repository_size_bytes".to_string(),
                a["repository"]["size_bytes"].as_f64(),
            )];
            for s in a["services"].as_array().into_iter().flatten() {
                samples.push((
                    format!(
                        "recovery_point_age_seconds:{}",
                        s["name"].as_str().unwrap_or_default()
                    ),
                    s["details"]["recovery_point_age_secs"].as_f64(),
                ));
            }
            let _ = self.with_state(|st| {
                samples
                    .iter()
                    .filter_map(|(k, v)| Some((k, (*v)?)))
                    .try_for_each(|(k, v)| st.add_sample(k, v))
            });
        }
        *self.survey.write().unwrap_or_else(|e| e.into_inner()) = Some(taken);
    }

    pub fn config(&self) -> Arc<Loaded> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the state database; a failure is remembered for the API and returned.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> Result<T>) -> Result<T> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&state);
        if let Err(e) = &out {
            *self.state_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{e:#}"));
        }
        out
    }

    pub fn is_running(&self, job: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(job)
    }

    /// Starts a run of `job` now; the run's id, if the state database took it. Refused when
    /// the job is running already.
    pub fn start(&self, job: &Job, trigger: &str, slot: Option<Timestamp>) -> Result<Option<i64>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(&job.name) {
            return Err(anyhow!("job '{}' is running already", job.name));
        }
        let run_id = self
            .with_state(|s| {
                s.start_run(&NewRun {
                    job: &job.name,
                    kind: job.action.kind(),
                    trigger,
                    slot,
                })
            })
            .map_err(|e| eprintln!("warning: state database: {e:#}; the job runs anyway"))
            .ok();
        if run_id.is_some() {
            // Writing works (again): a full disk that was cleared is no longer reported.
            *self.state_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let config = self.config();
        let exe = std::env::current_exe().context("locating the bulwark binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("--config")
            .arg(&config.path)
            .args(["run-job", &job.name, "--trigger", trigger])
            .env("BULWARK_STATE_DIR", &self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        if let Some(slot) = slot {
            cmd.args(["--slot", &slot.as_second().to_string()]);
        }
        if let Some(id) = run_id {
            cmd.args(["--run-id", &id.to_string()]);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                runner::die_with_parent();
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if let Some(id) = run_id {
                    let why = format!("could not start run-job: {e}");
                    let _ = self.with_state(|s| s.finish_if_running(id, RunResult::Failed, &why));
                }
                return Err(e).context("starting run-job");
            }
        };
        eprintln!("job '{}' started ({trigger}), pid {}", job.name, child.id());
        running.insert(
            job.name.clone(),
            RunningJob {
                child,
                run_id,
                repository: job.repository.clone(),
            },
        );
        Ok(run_id)
    }

    /// Collects finished children; a run-job that died before recording its result has its
    /// run closed here.
    fn reap(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = Vec::new();
        for (name, job) in running.iter_mut() {
            if let Ok(Some(status)) = job.child.try_wait() {
                done.push((name.clone(), job.run_id, status));
            }
        }
        for (name, run_id, status) in done {
            running.remove(&name);
            self.survey_due.store(true, Ordering::SeqCst);
            eprintln!("job '{name}' ended: {status}");
            let Some(id) = run_id else { continue };
            let (result, why) = match status.code() {
                Some(c) => (
                    RunResult::Failed,
                    format!("run-job exited with status {c} before recording a result"),
                ),
                None => (
                    RunResult::Interrupted,
                    "run-job was killed before recording a result".to_string(),
                ),
            };
            let _ = self.with_state(|s| s.finish_if_running(id, result, &why));
        }
    }

    /// One pass of the scheduler: of the jobs whose newest due slot (plus jitter) has come
    /// and has no run, the one due longest starts, unless a job on the same repository is
    /// running. The daemon's own jobs thus take turns on a repository: a prune waiting for
    /// the exclusive lock is not starved by a stream of backups and checks, and waits in
    /// this queue instead of failing.
    fn tick(&self, now: Timestamp) {
        self.reap();
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let config = self.config();
        let mut due: Vec<(Owed, &Job)> = config
            .config
            .jobs
            .values()
            .filter(|job| !self.is_running(&job.name))
            .filter_map(|job| Some((self.owed(job, now)?, job)))
            .collect();
        // The job that has waited longest goes first, so frequent jobs sharing a repository
        // cannot starve a rare one.
        due.sort_by_key(|(owed, job)| (owed.since, job.name.clone()));
        for (Owed { slot, .. }, job) in due {
            if self.repository_busy(job.repository.as_deref()) {
                continue;
            }
            self.attempted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(job.name.clone(), slot);
            if let Err(e) = self.start(job, "schedule", Some(slot)) {
                eprintln!("error: job '{}': {e:#}", job.name);
            }
        }
    }

    /// The run `job` owes now, if any: due, its jitter passed, not yet tried by this process.
    fn owed(&self, job: &Job, now: Timestamp) -> Option<Owed> {
        let (since, slot) = self
            .with_state(|s| {
                let last = match s.last_slot(&job.name)? {
                    Some(t) => t,
                    None => s.first_seen(&job.name, now)?,
                };
                Ok(job.schedule.due_slot(last, now).map(|slot| {
                    let since = job.schedule.next_after(last).unwrap_or(slot);
                    (since, slot)
                }))
            })
            .ok()??;
        let delay = jiff::SignedDuration::try_from(job.delay_for(slot)).unwrap_or_default();
        if now < slot.checked_add(delay).unwrap_or(slot) {
            return None;
        }
        let attempted = self.attempted.lock().unwrap_or_else(|e| e.into_inner());
        (attempted.get(&job.name) != Some(&slot)).then_some(Owed { since, slot })
    }

    /// Whether one of this daemon's jobs runs on `repository` (None: the default one).
    fn repository_busy(&self, repository: Option<&str>) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .values()
            .any(|j| j.repository.as_deref() == repository)
    }

    /// Leaves an audit entry for the repository `repository` (None: the default), to be
    /// chained by the next process that opens it (the daemon does not hold its key).
    pub fn audit(&self, repository: Option<&str>, event: &crate::audit::Event) {
        let config = self.config();
        let repo_arg = std::env::var("BULWARK_REPOSITORY").ok();
        let deferred =
            crate::access::resolve(Some(&config.config), repo_arg.as_deref(), repository)
                .and_then(|t| crate::audit::Log::new(&self.state_dir).defer(&t.url, event));
        if let Err(e) = deferred {
            eprintln!("warning: audit log: {e:#}");
        }
    }

    /// SIGHUP: the new config replaces the old only if it loads; jobs keep their history.
    pub fn reload(&self) -> Result<()> {
        let path = self.config().path.clone();
        let loaded = config::load(Some(&path));
        let result = match &loaded {
            Ok(_) => "success".to_string(),
            Err(e) => format!("refused: {e:#}"),
        };
        let event = crate::audit::Event::now("config reload", &path.display().to_string(), &result);
        self.audit(None, &event.by(&crate::audit::os_user(), "daemon (SIGHUP)"));
        let loaded = loaded?.ok_or_else(|| anyhow!("no config file"))?;
        if state_dir(&loaded) != self.state_dir {
            eprintln!("note: a new state_dir takes effect when the daemon restarts");
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// Asks every running job to stop and waits for them (at most [`SHUTDOWN_GRACE`]).
    fn shut_down(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let pids: Vec<u32> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|j| j.child.id())
            .collect();
        for pid in &pids {
            // SAFETY: signals a run-job we started; it passes the signal on to its step.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline {
            self.reap();
            if self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The state directory of a loaded config.
pub fn state_dir(loaded: &Loaded) -> PathBuf {
    loaded.config.daemon.state_dir(loaded.dir())
}

/// The certificate and key files of `[daemon]`, relative to the config file's directory.
fn tls_files(loaded: &Loaded) -> Option<(PathBuf, PathBuf)> {
    let d = &loaded.config.daemon;
    Some((
        loaded.dir().join(d.tls_cert.as_ref()?),
        loaded.dir().join(d.tls_key.as_ref()?),
    ))
}

/// Runs until SIGTERM or SIGINT: the scheduler, the assessment and the API each on a thread.
pub fn run(loaded: Loaded) -> Result<()> {
    let signals = block_signals();
    let tokens = api_tokens(&loaded)?;
    let addr = loaded.config.daemon.listen_addr().map_err(|e| {
        crate::exit::usage(format!("{}: [daemon] listen: {e}", loaded.path.display()))
    })?;
    let tls = tls_files(&loaded);
    let loaded_tls = tls.is_some();
    alert_channels(&loaded)?;
    let sessions = crate::web::Sessions::new(loaded.config.daemon.session_timeout()?, loaded_tls);
    let daemon = Daemon::new(loaded)?;
    crate::web::start(
        crate::web::Web {
            daemon: Arc::clone(&daemon),
            tokens,
            sessions,
        },
        addr,
        tls,
    )?;
    let jobs = daemon.config().config.jobs.len();
    eprintln!(
        "bulwark daemon {}: {jobs} job(s), state in {}",
        env!("CARGO_PKG_VERSION"),
        daemon.state_dir.display()
    );
    let scheduler = {
        let daemon = Arc::clone(&daemon);
        std::thread::spawn(move || {
            while !daemon.stopping.load(Ordering::SeqCst) {
                daemon.tick(Timestamp::now());
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let surveyor = {
        let daemon = Arc::clone(&daemon);
        std::thread::spawn(move || {
            while !daemon.stopping.load(Ordering::SeqCst) {
                daemon.survey_if_due();
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let scheme = if loaded_tls { "https" } else { "http" };
    let alerter = alerter::start(Arc::clone(&daemon), format!("{scheme}://{addr}"));
    loop {
        match wait_signal(&signals) {
            libc::SIGHUP => match daemon.reload() {
                Ok(()) => eprintln!("config reloaded"),
                Err(e) => eprintln!("error: config reload refused, the old config stays: {e:#}"),
            },
            sig => {
                eprintln!("signal {sig}: stopping the running jobs");
                break;
            }
        }
    }
    daemon.shut_down();
    let _ = scheduler.join();
    let _ = surveyor.join();
    let _ = alerter.join();
    Ok(())
}

/// Every alert channel's URL can be read: a missing variable or file stops the start.
fn alert_channels(loaded: &Loaded) -> Result<()> {
    for (name, section) in &loaded.config.alerts.channels {
        crate::alerts::channels::Channel::from_config(name, section, loaded.dir()).map_err(
            |e| {
                crate::exit::usage(format!(
                    "{}:{}: {e:#}",
                    loaded.path.display(),
                    config::locate_section(loaded, &format!("alerts.channels.{name}"))
                ))
            },
        )?;
    }
    Ok(())
}

/// The API tokens; a token that cannot be read stops the start, naming file and line.
fn api_tokens(loaded: &Loaded) -> Result<Vec<settings::ApiToken>> {
    loaded
        .config
        .daemon
        .tokens(loaded.dir())
        .map_err(|(name, e)| {
            let line = loaded.config.token_lines.get(&name).copied().unwrap_or(1);
            crate::exit::usage(format!(
                "{}:{line}: [daemon.tokens.{name}] {e}",
                loaded.path.display()
            ))
        })
}

/// SIGTERM, SIGINT and SIGHUP are taken by [`wait_signal`] on the main thread; blocked here
/// before any thread starts so that every thread inherits the mask.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: waits for one of the blocked signals in `set`.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    sig
}
