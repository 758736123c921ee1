//! Test harness: runs the real `bulwark` binary in a temp dir with a cheap KDF, and helpers to
//! build and compare directory trees.

#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod faults;
pub mod garage;
pub mod pitr;
pub mod postgres;
pub mod qdrant;
pub mod redis;
pub mod smtp;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    engine::connectors::free_port().expect("free port")
}

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub extra: Vec<(String, String)>,
    /// Run bulwark as this uid (via setpriv) to test permission errors when tests run as root.
    pub as_uid: Option<u32>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            extra: Vec::new(),
            as_uid: None,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> String {
        self.path("repo").to_string_lossy().into_owned()
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.extra.push((k.to_string(), v.to_string()));
    }

    pub fn command(&self) -> Command {
        let mut c = match self.as_uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                ]);
                c.arg(env!("CARGO_BIN_EXE_bulwark"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_bulwark")),
        };
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("BULWARK_") || k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("BULWARK_PASSWORD", PASSWORD)
            .env("BULWARK_KDF_MEMORY_KIB", "1024")
            .env("BULWARK_REPOSITORY", self.repo())
            .env("BULWARK_STATE_DIR", self.path("state"))
            .env("BULWARK_CACHE_DIR", self.path("cache"));
        for (k, v) in &self.extra {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.command().args(args).output().expect("bulwark runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "bulwark {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }

    pub fn init(&self) {
        self.ok(&["init"]);
    }

    /// Adds lines at the end of bulwark.toml.
    pub fn append_config(&self, text: &str) {
        let path = self.path("bulwark.toml");
        let mut config = fs::read_to_string(&path).unwrap_or_default();
        config.push_str(text);
        fs::write(path, config).expect("config");
    }

    /// The repository's largest pack (file data, where one flipped byte damages a file).
    pub fn largest_pack(&self) -> PathBuf {
        files_under(&self.path("repo/data"))
            .into_iter()
            .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a pack")
    }
}

/// Every file below `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A SQLite database with a table `notes` of `rows` rows.
pub fn sqlite_notes(path: &Path, rows: u32) {
    rusqlite::Connection::open(path)
        .expect("sqlite")
        .execute_batch(&format!(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO notes SELECT i, 'note ' || i FROM n;"
        ))
        .expect("sample");
}

/// A small tree with the kinds of things a platform keeps: text, binary, empty file, nested
/// dirs, a symlink, odd permissions.
pub fn write_sample_tree(root: &Path) {
    fs::create_dir_all(root.join("uploads/2026/11")).expect("mkdir");
    fs::create_dir_all(root.join("logs")).expect("mkdir");
    fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    fs::write(
        root.join("uploads/2026/11/report.txt"),
        "quarterly numbers\n".repeat(5000),
    )
    .expect("write");
    fs::write(
        root.join("uploads/2026/11/blob.bin"),
        pseudo_random(3 * 1024 * 1024 + 17, 1),
    )
    .expect("write");
    fs::write(
        root.join("logs/app.log"),
        (0..20000)
            .map(|i| format!("{i} INFO request served\n"))
            .collect::<String>(),
    )
    .expect("write");
    fs::write(root.join("empty.txt"), "").expect("write");
    fs::write(root.join("secret.env"), "TOKEN=abc\n").expect("write");
    fs::set_permissions(root.join("secret.env"), fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink("uploads/2026/11/report.txt", root.join("latest-report"))
        .expect("symlink");
}

pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Path -> description (kind, mode, size, content hash, link target, mtime for files).
pub fn digest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(p)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for e in entries {
        let rel = e
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let m = fs::symlink_metadata(&e).expect("lstat");
        let desc = if m.file_type().is_symlink() {
            format!(
                "link -> {} mtime={}",
                fs::read_link(&e).expect("readlink").display(),
                m.mtime()
            )
        } else if m.is_dir() {
            walk(root, &e, out);
            format!("dir {:o}", m.mode() & 0o7777)
        } else {
            let data = fs::read(&e).expect("read");
            format!(
                "file {:o} {} {} mtime={}",
                m.mode() & 0o7777,
                data.len(),
                blake3::hash(&data).to_hex(),
                m.mtime()
            )
        };
        out.insert(rel, desc);
    }
}

/// Where a restore of `source` (an absolute path) lands under `target`.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").expect("absolute"))
}

/// Forwards connections to `upstream`, cutting each after `budget` bytes from the server.
pub fn cutting_proxy(upstream: u16, budget: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
            });
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let mut sent = 0;
                let mut buf = [0u8; 16384];
                while sent < budget {
                    match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let n = n.min(budget - sent);
                            if client.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            sent += n;
                        }
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop. None (said loudly) without root.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("mkdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root); a disk-full test did not run");
            assert!(
                std::env::var("CI").is_err(),
                "CI runs as root and must run the disk-full test"
            );
            return None;
        }
        Some(Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost (`cert.pem`, `key.pem` in `dir`),
/// made by openssl; false (said loudly; fails under CI) if it cannot be made.
pub fn self_signed_certificate(dir: &Path) -> bool {
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        eprintln!("SKIPPED: openssl could not make a test certificate; a TLS test did not run");
        assert!(std::env::var("CI").is_err(), "CI must run the TLS tests");
    }
    made
}

/// The one log file of the env's state directory.
pub fn audit_log(env: &Env) -> PathBuf {
    std::fs::read_dir(env.path("state/audit"))
        .expect("audit dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "log")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("pending"))
        })
        .expect("an audit log")
}
