//! How Bulwark reaches a PostgreSQL server: libpq connection keywords handed to the client
//! tools (psql, pg_dump, pg_restore, pg_basebackup), so every libpq feature (.pgpass, sockets,
//! sslmode, service files) works the same for our queries and for the dumps. The password, if
//! we hold one, travels in `PGPASSWORD`: never on a command line, never in a log.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::de::DeserializeOwned;

use crate::connectors::process;
use crate::error::{Error, ErrorKind, Result};

#[derive(Clone)]
pub struct PgConn {
    /// libpq keywords other than dbname and password.
    params: Vec<(String, String)>,
    /// The database named in the URL: where server-wide queries go.
    pub maintenance_db: String,
    password: Option<String>,
    bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PgConn {
    /// Parses `postgres://user[:password]@host[:port]/db?keyword=value`. A password in the URL
    /// is accepted but moved to `PGPASSWORD` for the tools.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("bad PostgreSQL URL: {why}"));
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "postgres" && u.scheme() != "postgresql" {
            return Err(bad("it must start with postgres:// or postgresql://"));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let mut params = Vec::new();
        if let Some(host) = u.host_str().filter(|h| !h.is_empty()) {
            params.push(("host".into(), host.trim_matches(['[', ']']).to_string()));
        }
        if let Some(port) = u.port() {
            params.push(("port".into(), port.to_string()));
        }
        if !u.username().is_empty() {
            params.push(("user".into(), decode(u.username())));
        }
        let mut maintenance_db = decode(u.path().trim_start_matches('/'));
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "dbname" => maintenance_db = v.into_owned(),
                "password" => {
                    return Err(bad("put the password in a file or PGPASSWORD, not the URL"))
                }
                _ => {
                    params.retain(|(pk, _)| pk != k.as_ref());
                    params.push((k.into_owned(), v.into_owned()));
                }
            }
        }
        if maintenance_db.is_empty() {
            maintenance_db = "postgres".into();
        }
        Ok(Self {
            params,
            maintenance_db,
            password: u.password().map(decode),
            bin_dir: None,
        })
    }

    /// A server on this machine reached through its Unix socket in `socket_dir`.
    pub fn local(socket_dir: &Path, port: u16, user: &str) -> Self {
        Self {
            params: vec![
                ("host".into(), socket_dir.display().to_string()),
                ("port".into(), port.to_string()),
                ("user".into(), user.into()),
            ],
            maintenance_db: "postgres".into(),
            password: None,
            bin_dir: None,
        }
    }

    pub fn with_password(mut self, password: Option<String>) -> Self {
        if password.is_some() {
            self.password = password;
        }
        self
    }

    pub fn with_bin_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.bin_dir = dir;
        self
    }

    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `user@host:port` for messages; never the password.
    pub fn describe(&self) -> String {
        format!(
            "{}@{}:{}",
            self.param("user").unwrap_or("(default user)"),
            self.param("host").unwrap_or("(local socket)"),
            self.param("port").unwrap_or("5432")
        )
    }

    /// A libpq keyword/value connection string for database `db`.
    pub fn conninfo(&self, db: &str) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut s = format!("dbname={}", quote(db));
        for (k, v) in &self.params {
            s.push_str(&format!(" {k}={}", quote(v)));
        }
        s
    }

    /// A client tool from the configured bin directory (or PATH), with the password and a
    /// connect timeout in its environment.
    pub fn tool(&self, name: &str) -> Command {
        let program = match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        };
        let mut cmd = Command::new(program);
        cmd.env("PGAPPNAME", "bulwark");
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            cmd.env("PGCONNECT_TIMEOUT", "15");
        }
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }

    /// psql set up for scripts: no psqlrc, unaligned tuples only, stop at the first error.
    pub fn psql(&self, db: &str) -> Command {
        let mut cmd = self.tool("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.conninfo(db));
        cmd
    }

    /// Runs `sql`, which must return one row with one JSON value, and parses it.
    pub fn query<T: DeserializeOwned>(&self, db: &str, sql: &str) -> Result<T> {
        let mut cmd = self.psql(db);
        cmd.arg("-c").arg(sql);
        let out = process::output(cmd, format!("psql on {} database {db}", self.describe()))
            .map_err(|e| self.explain(e))?;
        serde_json::from_str(out.trim()).map_err(|e| {
            Error::new(
                ErrorKind::Source,
                format!("unexpected answer from {}: {e}", self.describe()),
            )
        })
    }

    /// Runs a psql `script` on database `db` and hands its output to `read`. The script is fed
    /// on a thread: a large script and a large answer would otherwise deadlock.
    pub fn run_script<T>(
        &self,
        db: &str,
        script: String,
        what: String,
        read: impl FnOnce(std::io::BufReader<std::process::ChildStdout>) -> Result<T>,
    ) -> Result<T> {
        use std::io::Write;
        let mut cmd = self.psql(db);
        cmd.args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = process::Child::spawn(cmd, what.clone())?;
        let mut stdin = child.take_stdin()?;
        let stdout = std::io::BufReader::with_capacity(256 * 1024, child.take_stdout()?);
        let feeder = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
        let answer = read(stdout);
        let fed = feeder.join();
        child.wait().map_err(|e| self.explain(e))?;
        let answer = answer?;
        if !matches!(fed, Ok(Ok(()))) {
            return Err(Error::new(
                ErrorKind::Source,
                format!("psql stopped reading the script of the {what}"),
            ));
        }
        Ok(answer)
    }

    /// Runs statements for their effect.
    pub fn execute(&self, db: &str, sql: &str) -> Result<()> {
        let mut cmd = self.psql(db);
        cmd.arg("-c").arg(sql);
        process::output(cmd, format!("psql on {} database {db}", self.describe()))
            .map(|_| ())
            .map_err(|e| self.explain(e))
    }

    /// Turns the usual connection failures into advice.
    pub fn explain(&self, e: Error) -> Error {
        let text = e.to_string();
        let hint = if text.contains("password authentication failed") {
            "the server rejected the password: check password_file / PGPASSWORD / ~/.pgpass"
        } else if text.contains("no password supplied") {
            "the server wants a password: set password_file in the source, PGPASSWORD, or ~/.pgpass"
        } else if text.contains("Connection refused") || text.contains("could not connect") {
            "is the server running, and are host and port right?"
        } else if text.contains("cannot start") {
            "PostgreSQL client tools not found: install postgresql-client or set bin_dir"
        } else {
            return e;
        };
        Error::new(ErrorKind::Source, format!("{}: {hint}", self.describe())).with_source(e)
    }
}

/// The major version of a client tool (`pg_dump (PostgreSQL) 15.18 (Debian ...)` is 15).
pub fn tool_major(conn: &PgConn, tool: &str) -> Result<u32> {
    let mut cmd = conn.tool(tool);
    cmd.arg("--version");
    let out = process::output(cmd, format!("{tool} --version")).map_err(|e| conn.explain(e))?;
    out.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse::<u32>().ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Source,
                format!("cannot read {tool}'s version from '{}'", out.trim()),
            )
        })
}

/// Debian keeps each major version's tools in /usr/lib/postgresql/N/bin, off PATH.
pub fn debian_bin_dir(major: u32) -> Option<PathBuf> {
    let dir = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    dir.join("pg_dump").exists().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_conninfo_without_the_password() {
        let c = PgConn::parse("postgres://app%40x:s3cr%27t@db.local:6543/main?sslmode=require")
            .expect("valid");
        assert_eq!(c.maintenance_db, "main");
        assert_eq!(c.password.as_deref(), Some("s3cr't"));
        let info = c.conninfo("o'brien");
        assert_eq!(
            info,
            "dbname='o\\'brien' host='db.local' port='6543' user='app@x' sslmode='require'"
        );
        assert!(!c.describe().contains("s3cr"));
        let local = PgConn::parse("postgresql:///?host=/run/postgresql").expect("socket");
        assert_eq!(local.maintenance_db, "postgres");
        assert!(local.conninfo("x").contains("host='/run/postgresql'"));
        assert!(PgConn::parse("mysql://x").is_err());
        assert!(PgConn::parse("postgres://h/db?password=x").is_err());
    }
}
