//! Running PostgreSQL's server tools on a data directory: as the directory's owner (the server
//! refuses root), stopping a server, and the throwaway cluster a sandbox restores into.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::conn::{debian_bin_dir, PgConn};
use crate::connectors::process;
use crate::connectors::sandbox::Throwaway;
use crate::error::{Error, ErrorKind, Result, ResultExt};

/// A value for postgresql.conf, quoted.
pub(super) fn quote_conf(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Appends settings to a configuration file of the data directory.
pub(super) fn append_conf(file: &Path, conf: &str) -> Result<()> {
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .and_then(|mut f| f.write_all(conf.as_bytes()))
        .with_context(|| format!("writing {}", file.display()))
}

/// A server tool run as the data directory's owner (PostgreSQL refuses to run as root).
pub(super) fn as_owner(bin: Option<&Path>, tool: &str, owner: &fs::Metadata) -> Command {
    let program = bin
        .map(|b| b.join(tool))
        .unwrap_or_else(|| PathBuf::from(tool));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && owner.uid() != 0 {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", owner.uid()))
            .arg(format!("--regid={}", owner.gid()))
            .arg("--init-groups")
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Stops the throwaway server running on a data directory, if one does, and waits for it:
/// an immediate shutdown, since its data is discarded anyway and a server busy with crash
/// recovery (a backend killed by a signal) does not finish a fast one; if even that fails,
/// the postmaster is killed. `bin`: the server tools; default those of the directory's
/// PG_VERSION.
pub fn stop(dir: &Path, bin: Option<&Path>) {
    let Ok(owner) = fs::metadata(dir.join("PG_VERSION")) else {
        return;
    };
    let bin = bin.map(Path::to_path_buf).or_else(|| {
        fs::read_to_string(dir.join("PG_VERSION"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .and_then(debian_bin_dir)
    });
    let stopped = as_owner(bin.as_deref(), "pg_ctl", &owner)
        .arg("-D")
        .arg(dir)
        .args(["-m", "immediate", "-w", "-t", "30", "stop"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    let postmaster = fs::read_to_string(dir.join("postmaster.pid"))
        .ok()
        .and_then(|pid| pid.lines().next()?.trim().parse::<libc::pid_t>().ok());
    // Only a process of the directory's owner: the pid file may be stale and its pid reused.
    let ours = |pid: libc::pid_t| {
        fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == owner.uid())
    };
    if let (false, Some(pid)) = (stopped, postmaster.filter(|p| ours(*p))) {
        // SAFETY: kill(2) has no memory preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The server tools to run a cluster for data from a `major` server: `explicit` (which must
/// hold them), else `configured` if it holds them, else Debian's for that major version, else
/// the newest newer one installed (a logical dump restores into a newer server, never an
/// older one).
pub fn server_bin_dir(
    explicit: Option<&Path>,
    configured: Option<&Path>,
    major: u32,
) -> Result<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").exists() && d.join("pg_ctl").exists();
    if let Some(b) = explicit {
        return match has_server(b) {
            true => Ok(b.to_path_buf()),
            false => Err(Error::invalid(format!(
                "{} holds no initdb and pg_ctl: a PostgreSQL sandbox runs a throwaway server with them",
                b.display()
            ))),
        };
    }
    let debian = |v: u32| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
    let newer = || {
        fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|v| *v >= major && has_server(&debian(*v)))
            .max()
    };
    configured
        .filter(|d| has_server(d))
        .map(Path::to_path_buf)
        .or_else(|| Some(debian(major)).filter(|d| has_server(d)))
        .or_else(|| newer().map(debian))
        .ok_or_else(|| {
            Error::invalid(format!(
                "a PostgreSQL sandbox runs a throwaway server of version {major} or newer, and none is installed: install postgresql-{major} (its initdb and pg_ctl) or pass --pg-bin-dir"
            ))
        })
}

/// A PostgreSQL cluster made for a sandbox: initdb into a fresh directory, a server that
/// listens only on a Unix socket inside it (no TCP port to collide with or to expose), with
/// archiving and fsync off. Dropping it stops the server and removes the directory; an
/// interrupt does the same through the sandbox registry.
pub struct ThrowawayCluster {
    pub conn: PgConn,
    pub root: PathBuf,
    // Dropped in this order: the server stops before its directory goes.
    _server: Throwaway,
    _dir: Throwaway,
}

/// The port number in the socket's name; nothing listens on TCP.
const SOCKET_PORT: u16 = 5432;
/// sun_path holds 108 bytes on Linux, the terminating zero included.
const SOCKET_PATH_MAX: usize = 107;

impl ThrowawayCluster {
    /// Creates and starts a cluster under `scratch` with the tools in `bin`.
    pub fn start(scratch: &Path, bin: &Path) -> Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("bulwark-pg-sandbox-")
            .tempdir_in(scratch)
            .with_context(|| format!("creating a sandbox directory in {}", scratch.display()))?
            .keep();
        let dir = Throwaway::dir(&root);
        let socket = root.join(format!(".s.PGSQL.{SOCKET_PORT}"));
        if socket.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(Error::invalid(format!(
                "the sandbox server's socket path {} is longer than a Unix socket allows; choose a shorter --spool-dir",
                socket.display()
            )));
        }
        if let Some((uid, gid)) = server_user()? {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", root.display()))?;
        }
        let owner = fs::metadata(&root).with_context(|| format!("reading {}", root.display()))?;
        let data = root.join("data");
        let mut initdb = as_owner(Some(bin), "initdb", &owner);
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        process::output(initdb, format!("{}", bin.join("initdb").display()))
            .map_err(|e| e.context("creating the sandbox cluster"))?;
        append_conf(
            &data.join("postgresql.conf"),
            &format!(
                "\n# bulwark sandbox: socket only, nothing durable, nothing archived\n\
                 listen_addresses = ''\nunix_socket_directories = {}\nport = {SOCKET_PORT}\n\
                 fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                 archive_mode = off\n",
                quote_conf(&root.display().to_string())
            ),
        )?;
        let server = {
            let (data, bin) = (data.clone(), bin.to_path_buf());
            Throwaway::new(move || stop(&data, Some(&bin)))
        };
        let log = root.join("server.log");
        let mut pg_ctl = as_owner(Some(bin), "pg_ctl", &owner);
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "start"]);
        process::output(pg_ctl, "pg_ctl start of the sandbox cluster").map_err(|e| {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Error::new(
                ErrorKind::Source,
                format!(
                    "the sandbox server did not start; its log ends with:\n{}",
                    tail.join("\n")
                ),
            )
            .with_source(e)
        })?;
        Ok(Self {
            conn: PgConn::local(&root, SOCKET_PORT, "postgres").with_bin_dir(Some(bin.into())),
            root,
            _server: server,
            _dir: dir,
        })
    }
}

/// The user a server we start runs as: ourselves, or when we are root (which PostgreSQL
/// refuses) the `postgres` user every PostgreSQL package creates.
fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: passwd is plain data (integers and pointers); all zeroes is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of pwd's fields
    // (only the numeric ids are read).
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(Error::invalid(
            "PostgreSQL refuses to run as root and this machine has no 'postgres' user to run the sandbox server as: run bulwark as another user or install PostgreSQL's server package",
        ));
    }
    Ok(Some((pwd.pw_uid, pwd.pw_gid)))
}
