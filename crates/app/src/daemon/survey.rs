//! What the daemon knows of the stack between jobs: `bulwark assess --json` (each source's
//! health and recovery point, the repository's size, snapshots and last check, the last
//! drills), run as a child process every few minutes and after every job, so that the API
//! and `/metrics` answer from memory and the daemon never talks to a datastore itself.

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
}

/// Runs `bulwark assess --json` with the daemon's config.
pub fn take(config: &Path) -> Survey {
    let time = Timestamp::now();
    let output = std::env::current_exe().and_then(|exe| {
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .args(["--json", "--quiet", "assess"])
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
    match output {
        Ok((stdout, stderr)) => match serde_json::from_slice::<serde_json::Value>(&stdout) {
            Ok(v) if v.get("overall_status").is_some() => Survey {
                time,
                assess: Some(v),
                error: None,
            },
            _ => Survey {
                time,
                assess: None,
                error: Some(super::runner::redact(
                    String::from_utf8_lossy(&stderr).trim(),
                )),
            },
        },
        Err(e) => Survey {
            time,
            assess: None,
            error: Some(format!("running assess: {e}")),
        },
    }
}
