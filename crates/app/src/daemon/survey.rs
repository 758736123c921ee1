//! What the daemon knows of the stack between jobs: `bulwark assess --json` (each source's
//! health and recovery point, the repository's size, snapshots and last check, the last
//! drills) and `bulwark audit verify --json`, run as child processes every few minutes and
//! after every job, so that the API and `/metrics` answer from memory and the daemon never
//! talks to a datastore itself.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;

/// How often the stack is assessed when no job ran.
pub const INTERVAL: Duration = Duration::from_secs(300);
/// An assessment that takes longer is abandoned (an unreachable server may hang a probe).
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct Survey {
    pub time: Timestamp,
    /// `assess --json` as printed; None when it could not run, with the reason.
    pub assess: Option<serde_json::Value>,
    pub error: Option<String>,
    /// `audit verify --json`: whether the audit log's chain is intact; None when it could not
    /// be verified (no repository: the assessment says so).
    pub audit: Option<serde_json::Value>,
}

/// Runs `bulwark assess --json` and `bulwark audit verify --json` with the daemon's config.
pub fn take(config: &Path) -> Survey {
    let time = Timestamp::now();
    let (assess, error) = match child_json(config, &["assess"]) {
        Ok(v) if v.get("overall_status").is_some() => (Some(v), None),
        Ok(_) => (None, Some("assess printed no assessment".to_string())),
        Err(e) => (None, Some(e)),
    };
    let audit = child_json(config, &["audit", "verify"])
        .ok()
        .filter(|v| v.get("ok").is_some());
    Survey {
        time,
        assess,
        error,
        audit,
    }
}

/// What `bulwark --json COMMAND` prints, or its stderr (redacted) when that is not JSON.
fn child_json(config: &Path, command: &[&str]) -> Result<serde_json::Value, String> {
    let output = std::env::current_exe().and_then(|exe| {
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .args(["--json", "--quiet"])
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = std::time::Instant::now() + TIMEOUT;
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                // A hung probe: killed (not yet reaped, so the id is still this child's).
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok::<_, std::io::Error>((
            stdout.join().unwrap_or_default(),
            stderr.join().unwrap_or_default(),
        ))
    });
    let name = command.join(" ");
    match output {
        Ok((stdout, stderr)) => serde_json::from_slice(&stdout)
            .map_err(|_| super::runner::redact(String::from_utf8_lossy(&stderr).trim())),
        Err(e) => Err(format!("running {name}: {e}")),
    }
}
