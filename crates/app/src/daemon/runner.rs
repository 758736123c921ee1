//! One run of one job (`bulwark run-job NAME`), whoever started it: the daemon, a systemd
//! timer, cron or a person. Each of the job's command lines runs as a child `bulwark`
//! process in its own process group, so a timeout or a shutdown can stop all of it (dump
//! tools included); the run, its JSON report, a log excerpt and each source's result are
//! recorded in the state database, and the job's dead-man URL is pinged.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::state::{Drill, NewRun, Outcome, RunResult, SourceRun, State};
use crate::exit;
use crate::jobs::Job;

/// The log excerpt kept per run: the end of the job's stderr.
const LOG_EXCERPT: usize = 64 * 1024;
/// After a timeout or a shutdown, a step gets this long to stop on its own before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Who asked for the run, and for which schedule slot.
pub struct Request<'a> {
    pub job: &'a Job,
    pub trigger: &'a str,
    pub slot: Option<jiff::Timestamp>,
    /// A run the daemon already recorded as started.
    pub run_id: Option<i64>,
    /// `--config`, `--repo`, `--password-file` as given to run-job, passed on to each step.
    pub global_args: Vec<String>,
}

/// What the caller learns.
pub struct Finished {
    pub run_id: Option<i64>,
    pub outcome: Outcome,
}

/// Runs the job and records it; state problems are warnings (the job still runs).
pub fn run(req: &Request, state: Option<&State>, stop: &Arc<AtomicBool>) -> Finished {
    let job = req.job;
    let run_id = state.and_then(|s| {
        let id = match req.run_id {
            Some(id) => s.claim_run(id).map(|_| id),
            None => s.start_run(&NewRun {
                job: &job.name,
                kind: job.action.kind(),
                trigger: req.trigger,
                slot: req.slot,
            }),
        };
        id.map_err(|e| {
            eprintln!("warning: the run could not be recorded in the state database: {e:#}")
        })
        .ok()
    });
    ping(job, "/start");
    let outcome = run_steps(req, stop);
    if let (Some(state), Some(id)) = (state, run_id) {
        if let Err(e) = record(state, id, &outcome) {
            eprintln!(
                "warning: the run's result could not be recorded in the state database: {e:#}"
            );
        }
    }
    ping(
        job,
        match outcome.result {
            RunResult::Success | RunResult::Partial => "",
            _ => "/fail",
        },
    );
    Finished { run_id, outcome }
}

fn record(state: &State, id: i64, outcome: &Outcome) -> Result<()> {
    state.finish_run(id, outcome)?;
    let Some(report) = &outcome.report else {
        return Ok(());
    };
    for doc in report.as_array().into_iter().flatten() {
        if let Some(members) = doc.as_array() {
            state.record_sources(id, &source_runs(members))?;
        }
        if let Some(record) = doc.get("record") {
            if let Some(id_text) = doc.get("id").and_then(|v| v.as_str()) {
                state.record_drill(&drill(id_text, Some(id), record))?;
            }
        }
    }
    Ok(())
}

/// Each source's part, from `backup --json` (one object per source).
fn source_runs(members: &[serde_json::Value]) -> Vec<SourceRun<'_>> {
    members
        .iter()
        .filter_map(|m| {
            let summary = m.get("summary");
            let num = |k: &str| summary.and_then(|s| s.get(k)).and_then(|v| v.as_u64());
            let error = m.get("error").and_then(|v| v.as_str());
            Some(SourceRun {
                source: m.get("source")?.as_str()?,
                kind: m.get("kind").and_then(|v| v.as_str()).unwrap_or(""),
                ok: error.is_none(),
                duration: summary
                    .and_then(|s| s.get("duration_secs"))
                    .and_then(|v| v.as_f64()),
                bytes: num("bytes"),
                bytes_added: num("stored_added"),
                error,
            })
        })
        .collect()
}

/// The drill index entry from `drill --json`: the slowest step's RTO, the oldest RPO (and
/// the largest targets: steps are judged against their own).
fn drill(id: &str, run: Option<i64>, record: &serde_json::Value) -> Drill {
    let steps = record.get("steps").and_then(|s| s.as_array());
    let worst = |k: &str| {
        steps
            .into_iter()
            .flatten()
            .filter_map(|s| s.get(k).and_then(|v| v.as_f64()))
            .reduce(f64::max)
    };
    Drill {
        id: id.to_string(),
        run,
        time: record
            .get("started")
            .and_then(|v| v.as_str())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(jiff::Timestamp::now),
        scenario: record
            .get("scenario")
            .and_then(|v| v.as_str())
            .map(String::from),
        result: record
            .get("result")
            .and_then(|v| v.as_str())
            .unwrap_or("failed")
            .to_string(),
        rto_secs: worst("rto_secs"),
        rpo_secs: worst("rpo_secs"),
        rto_target_secs: worst("rto_target_secs"),
        rpo_target_secs: worst("rpo_target_secs"),
    }
}

/// The job's command lines, one after another; the first that does not succeed ends the run.
fn run_steps(req: &Request, stop: &Arc<AtomicBool>) -> Outcome {
    let deadline = Instant::now() + req.job.timeout;
    let mut reports = Vec::new();
    let mut log = Tail::default();
    let mut outcome = (RunResult::Success, Some(0), None);
    for line in req.job.action.command_lines() {
        let step = match spawn_step(req, &line, deadline) {
            Ok(c) => c,
            Err(e) => {
                outcome = (RunResult::Failed, None, Some(format!("{e:#}")));
                break;
            }
        };
        let (result, code, error, out, err) = wait_step(step, deadline, stop);
        reports.extend(json_documents(&out));
        log.push(&err);
        outcome = (result, code, error);
        if !matches!(result, RunResult::Success | RunResult::Partial) {
            break;
        }
    }
    let (result, exit_code, error) = outcome;
    let error = error.or_else(|| {
        (result == RunResult::Failed).then(|| last_error_line(&log.text()).unwrap_or_default())
    });
    Outcome {
        result,
        exit_code,
        error: error.filter(|e| !e.is_empty()).map(|e| redact(&e)),
        report: (!reports.is_empty()).then_some(serde_json::Value::Array(reports)),
        log: redact(&log.text()),
    }
}

fn spawn_step(req: &Request, line: &[String], deadline: Instant) -> Result<StepChild> {
    let exe = std::env::current_exe().context("locating the bulwark binary")?;
    let wait = deadline.saturating_duration_since(Instant::now());
    let mut cmd = Command::new(exe);
    cmd.args(&req.global_args)
        .args(["--json", "--quiet", "--retry-lock"])
        // Jobs that need the repository's exclusive lock wait for it, within the timeout.
        .arg(format!("{}s", wait.as_secs().max(1)))
        .args(line)
        .env(
            crate::audit::VIA_ENV,
            format!("job {} ({})", req.job.name, req.trigger),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            die_with_parent();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting `bulwark {}`", line.join(" ")))?;
    let stdout = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        })
    });
    // Stderr goes on to ours (the journal, a terminal) and into the excerpt.
    let stderr = child.stderr.take().map(|err| {
        std::thread::spawn(move || {
            let mut tail = Tail::default();
            for line in BufReader::new(err).split(b'\n').map_while(|l| l.ok()) {
                let _ = std::io::stderr().write_all(&line);
                let _ = std::io::stderr().write_all(b"\n");
                tail.push(&line);
                tail.push(b"\n");
            }
            tail.text().into_bytes()
        })
    });
    Ok(StepChild {
        child,
        stdout,
        stderr,
    })
}

struct StepChild {
    child: Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

type StepEnd = (RunResult, Option<i32>, Option<String>, Vec<u8>, Vec<u8>);

/// Waits for the step; past the deadline, or when asked to stop, it gets SIGTERM, then
/// after a grace SIGKILL.
fn wait_step(mut step: StepChild, deadline: Instant, stop: &Arc<AtomicBool>) -> StepEnd {
    let pgid = step.child.id() as libc::pid_t;
    let mut ending: Option<(Instant, RunResult)> = None;
    let status = loop {
        match step.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        match ending {
            None if stop.load(Ordering::SeqCst) => {
                signal_group(pgid, libc::SIGTERM);
                ending = Some((now, RunResult::Interrupted));
            }
            None if now >= deadline => {
                signal_group(pgid, libc::SIGTERM);
                ending = Some((now, RunResult::Timeout));
            }
            Some((since, _)) if now.duration_since(since) > STOP_GRACE => {
                signal_group(pgid, libc::SIGKILL);
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = step.stdout.and_then(|t| t.join().ok()).unwrap_or_default();
    let err = step.stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let (result, code, error) = match (ending, status) {
        (Some((_, RunResult::Timeout)), _) => (
            RunResult::Timeout,
            status.and_then(|s| s.code()),
            Some("stopped: the job ran past its timeout".to_string()),
        ),
        (Some((_, r)), _) => (
            r,
            status.and_then(|s| s.code()),
            Some("stopped by a shutdown".into()),
        ),
        (None, Some(s)) => classify(s),
        (None, None) => (
            RunResult::Failed,
            None,
            Some("lost track of the step".into()),
        ),
    };
    (result, code, error, out, err)
}

fn classify(status: ExitStatus) -> (RunResult, Option<i32>, Option<String>) {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(0) => (RunResult::Success, Some(0), None),
        Some(c) if c == i32::from(exit::PARTIAL) => (RunResult::Partial, Some(c), None),
        Some(c) if c == i32::from(exit::INTERRUPTED) => {
            (RunResult::Interrupted, Some(c), Some("interrupted".into()))
        }
        Some(c) => (RunResult::Failed, Some(c), None),
        None => (
            RunResult::Interrupted,
            None,
            Some(format!(
                "killed by signal {}",
                status.signal().unwrap_or_default()
            )),
        ),
    }
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: signals the step's own process group.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// In a child between fork and exec: a SIGTERM when the parent dies (the daemon killed
/// with SIGKILL must not leave a backup running unwatched), and no signals blocked (the
/// daemon blocks those it waits for).
pub fn die_with_parent() {
    // SAFETY: prctl and sigprocmask are async-signal-safe.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Every JSON document a step printed (a job of two commands prints two).
fn json_documents(out: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(out)
        .into_iter::<serde_json::Value>()
        .map_while(|v| v.ok())
        .collect()
}

fn last_error_line(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
}

/// The end of a stream, at most [`LOG_EXCERPT`] bytes.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > LOG_EXCERPT {
            let cut = self.0.len() - LOG_EXCERPT;
            self.0.drain(..cut);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// Passwords in connection URLs (`scheme://user:secret@host`) and `password=` settings are
/// replaced before anything is stored or shown.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    redact_settings(&out)
}

fn redact_settings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        let (head, tail) = rest.split_at(i + "password=".len());
        out.push_str(head);
        out.push_str("***");
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '&' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Tells the job's dead-man URL how the run went; a failure to reach it is a warning only.
fn ping(job: &Job, suffix: &str) {
    let Some(url) = &job.ping_url else { return };
    let url = format!("{}{suffix}", url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build();
    let sent = client.and_then(|c| c.get(&url).send().and_then(|r| r.error_for_status()));
    if let Err(e) = sent {
        eprintln!("warning: ping {}: {e}", redact(&url));
    }
}

/// The run-job lock: one run of a job at a time on this host, whoever starts it.
pub struct JobLock {
    _file: std::fs::File,
}

impl JobLock {
    pub fn take(state_dir: &Path, job: &str) -> Result<Option<Self>> {
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{job}.lock")))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file we own; released when the file closes.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        Ok((r == 0).then_some(Self { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact("error: cannot reach postgres://app:s3cret@db:5432/app (refused)"),
            "error: cannot reach postgres://app:***@db:5432/app (refused)"
        );
        assert_eq!(
            redact("redis://:pw@h:6379 and http://h/x"),
            "redis://:***@h:6379 and http://h/x"
        );
        assert_eq!(
            redact("host=db password=hunter2 user=x"),
            "host=db password=*** user=x"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn reports_become_source_and_drill_rows() {
        let backup: serde_json::Value = serde_json::json!([
            {"source": "db", "kind": "postgres", "summary": {"bytes": 10, "stored_added": 4, "duration_secs": 1.5}},
            {"source": "cache", "kind": "redis", "error": "connection refused"}
        ]);
        let rows = source_runs(backup.as_array().expect("array"));
        assert_eq!(rows.len(), 2);
        assert!(rows[0].ok && rows[0].bytes_added == Some(4));
        assert!(!rows[1].ok && rows[1].error == Some("connection refused"));
        let record = serde_json::json!({"started": "2026-01-01T00:00:00Z", "scenario": "x",
            "result": "passed", "steps": [{"rpo_secs": 3.0, "rto_secs": 12.5}, {"rpo_secs": 9.0, "rto_secs": 1.0}]});
        let d = drill("abc", Some(1), &record);
        assert_eq!((d.rto_secs, d.rpo_secs), (Some(12.5), Some(9.0)));
        assert_eq!(d.result, "passed");
    }
}
