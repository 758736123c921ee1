//! Starting a local redis-server on a data directory: for `restore --start`, for sandboxes and
//! for the test harness. Loopback only, on a port of our choosing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::resp::{Conn, RedisUrl, Reply};
use crate::error::{Error, ErrorKind, Result};

/// A server we started. Foreground servers are stopped when this is dropped; daemonized
/// ones (`restore --start`) outlive us.
pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
}

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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
    pub fn start(dir: &Path, port: u16, extra: &[&str], daemonize: bool) -> Result<Self> {
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
            .stderr(Stdio::piped());
        if daemonize {
            cmd.args(["--daemonize", "yes", "--pidfile"])
                .arg(dir.join("redis.pid"));
        }
        let mut child = cmd.spawn().map_err(|e| {
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
        if daemonize {
            // The launcher exits once the daemon has forked.
            let out = child.wait()?;
            if !out.success() {
                return Err(Self::failed(dir, port));
            }
        }
        let mut server = Self {
            port,
            dir: dir.to_path_buf(),
            child: (!daemonize).then_some(child),
        };
        server.wait_ready(Duration::from_secs(600))?;
        Ok(server)
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
    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait()?.is_some() {
                    self.child = None;
                    return Err(Self::failed(&self.dir, self.port));
                }
            }
            if let Ok(mut c) = Conn::open(&self.url()) {
                if c.send(&[b"PING"]).and_then(|_| c.flush()).is_ok() {
                    if let Ok(Reply::Status(s)) = c.reply() {
                        if s == "PONG" {
                            return Ok(());
                        }
                    }
                }
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

    /// Stops the server without saving.
    pub fn stop(&mut self) {
        if let Ok(mut c) = Conn::open(&self.url()) {
            let _ = c.send(&[b"SHUTDOWN", b"NOSAVE"]);
            let _ = c.flush();
            let _ = c.reply();
        }
        if let Some(mut child) = self.child.take() {
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
        if self.child.is_some() {
            self.stop();
        }
    }
}
