//! Throwaway redis-server processes (Debian's `redis-server`) on free loopback ports, and
//! `redis-cli` as the independent oracle: tests compare `DEBUG DIGEST`, which Redis computes
//! over every key, value and the presence of expiries.

use std::path::Path;
use std::process::Command;

use engine::connectors::redis::server::RedisServer;

use super::free_port;

pub struct Redis {
    pub server: RedisServer,
    pub dir: tempfile::TempDir,
    /// The password `redis-cli` logs in with (requirepass or an ACL user's).
    auth: Option<(String, String)>,
}

/// Whether redis-server is installed; says loudly that the test is skipped if not, which
/// fails under CI.
pub fn available() -> bool {
    let installed = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it); Redis tests did not run");
        if std::env::var("CI").is_ok() {
            panic!("CI must run the Redis tests: redis-server is not installed");
        }
    }
    installed
}

impl Redis {
    /// A server with `extra` options (`--name value` pairs); None (test skipped) when Redis
    /// is not installed, which fails under CI.
    pub fn start(extra: &[&str]) -> Option<Self> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Self::start_in(dir, extra))
    }

    /// A server on the files already in `dir` (a restored RDB or AOF).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Self {
        let mut args = vec!["--enable-debug-command", "yes"];
        args.extend_from_slice(extra);
        let server =
            RedisServer::start(dir.path(), free_port(), &args, false).expect("redis-server starts");
        Self {
            server,
            dir,
            auth: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Makes `cli` log in as `user` (use "default" for requirepass).
    pub fn login(&mut self, user: &str, password: &str) {
        self.auth = Some((user.into(), password.into()));
    }

    fn cli_command(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-p", &self.port().to_string()]);
        if let Some((user, pw)) = &self.auth {
            c.args(["--user", user]).env("REDISCLI_AUTH", pw);
        }
        c
    }

    /// Runs one command; its output without the trailing newline. Error replies panic.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self
            .cli_command()
            .args(args)
            .output()
            .expect("redis-cli runs");
        let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        assert!(
            out.status.success() && !stdout.starts_with("ERR") && !stdout.starts_with("(error)"),
            "redis-cli {args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs a Lua script with no keys (for building large values server-side).
    pub fn eval(&self, script: &str) -> String {
        self.cli(&["EVAL", script, "0"])
    }

    /// Redis's own digest of the whole dataset.
    pub fn digest(&self) -> String {
        self.cli(&["DEBUG", "DIGEST"])
    }

    pub fn dbsize(&self, db: u32) -> u64 {
        self.cli(&["-n", &db.to_string(), "DBSIZE"])
            .parse()
            .expect("DBSIZE is a number")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}
