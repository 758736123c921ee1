//! Starting a local redis-server on a data directory: for `restore --start`, for sandboxes and
//! for the test harness. Loopback only, on a port of our choosing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::resp::{Conn, RedisUrl, Reply};
use crate::error::{Error, ErrorKind, Result};

/// A server we started. It is stopped when this is dropped, unless it was started to keep
/// running (`restore --start`) and came up.
pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
    keep: bool,
}

/// The redis-server binary: `BULWARK_REDIS_SERVER`, else the one on PATH.
fn binary() -> PathBuf {
    std::env::var_os("BULWARK_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

impl RedisServer {
    /// Starts redis-server in `dir` (loading `dump.rdb`, or the AOF if `extra` turns
    /// appendonly on) and waits until it has loaded its data and answers. `extra` are
    /// further `--option value` arguments.
    pub fn start(dir: &Path, port: u16, extra: &[&str], keep_running: bool) -> Result<Self> {
        let mut server = Self::spawn(dir, port, extra)?;
        server.wait_ready(Duration::from_secs(600))?;
        server.keep = keep_running;
        Ok(server)
    }

    /// Starts redis-server without waiting for it: the caller can take charge of the process
    /// (a sandbox registers it for removal) before [`Self::wait_ready`].
    pub fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Result<Self> {
        let mut cmd = Command::new(binary());
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--dbfilename", "dump.rdb"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C meant for bulwark does not stop a server that
            // is to keep running.
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (install it: apt-get install redis-server, or set BULWARK_REDIS_SERVER)"
            } else {
                ""
            };
            Error::new(
                ErrorKind::Source,
                format!("cannot run {}{hint}", binary().display()),
            )
            .with_source(e)
        })?;
        // Watched as our child while it starts, so a server that exits (port taken, bad
        // files) is reported at once rather than waited for.
        Ok(Self {
            port,
            dir: dir.to_path_buf(),
            child: Some(child),
            keep: false,
        })
    }

    fn failed(dir: &Path, port: u16) -> Error {
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        Error::new(
            ErrorKind::Source,
            format!(
                "redis-server on port {port} did not start; its log ends:\n  {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            ),
        )
    }

    pub fn url(&self) -> RedisUrl {
        RedisUrl::local(self.port)
    }

    /// Waits until the server answers PING (not "LOADING").
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(Self::failed(&self.dir, self.port));
            };
            if child.try_wait()?.is_some() {
                self.child = None;
                return Err(Self::failed(&self.dir, self.port));
            }
            let pid = child.id().to_string();
            if let Some(answering) = self.answering_pid() {
                if answering == pid {
                    return Ok(());
                }
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "port {} is taken by another Redis (process {answering})",
                        self.port
                    ),
                ));
            }
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "redis-server on port {} did not become ready in {}s",
                        self.port,
                        timeout.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of the Redis answering PING on our port, once it has loaded its data.
    fn answering_pid(&self) -> Option<String> {
        let mut c = Conn::open(&self.url()).ok()?;
        c.send(&[b"PING"]).ok()?;
        c.flush().ok()?;
        match c.reply().ok()? {
            Reply::Status(s) if s == "PONG" => c.info_field("server", "process_id").ok()?,
            _ => None,
        }
    }

    /// The server's process id, while we have it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops the server (without saving, unless `extra` configured saving).
    pub fn stop(&mut self) {
        // A signal to our own process, not SHUTDOWN to the port, which may be someone
        // else's. SIGTERM makes Redis shut down cleanly; with `save ""` it writes no RDB.
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on the pid of a child we have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
        }
    }
}
