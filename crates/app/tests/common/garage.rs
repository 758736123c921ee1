//! A throwaway Garage S3 server on free loopback ports, for tests against real object storage.

use std::process::{Child, Command, Stdio};

use super::free_port;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Garage {
    child: Child,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
    pub endpoint: String,
}

fn garage_binary() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return Some(p.into());
    }
    let home = std::env::var("HOME").unwrap_or_default();
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(std::path::PathBuf::from)
        .chain([std::path::PathBuf::from(format!("{home}/.cargo/bin"))])
        .map(|d| d.join("garage"))
        .find(|p| p.exists())
}

impl Garage {
    /// Starts Garage, or returns None (after saying so loudly) when it is not installed.
    pub fn start() -> Option<Self> {
        let Some(bin) = garage_binary() else {
            eprintln!("SKIPPED: no `garage` binary (install with `cargo install garage --locked`, or set GARAGE_BIN); S3 tests did not run");
            if std::env::var("CI").is_ok() {
                panic!("CI must run the S3 tests: garage is not installed");
            }
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc, s3) = (free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let root = dir.path().display();
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                hex_secret()
            ),
        )
        .expect("write config");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env_remove("AWS_CA_BUNDLE")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("garage starts");
        let mut g = Garage {
            child,
            config,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
        };
        let node = g.wait_for_node(&bin);
        g.admin(&bin, &["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.admin(&bin, &["layout", "apply", "--version", "1"]);
        g.admin(
            &bin,
            &[
                "key", "import", "--yes", "-n", "test", ACCESS_KEY, SECRET_KEY,
            ],
        );
        Some(g)
    }

    fn wait_for_node(&mut self, bin: &std::path::Path) -> String {
        let start = Instant::now();
        loop {
            let out = Command::new(bin)
                .arg("-c")
                .arg(&self.config)
                .args(["node", "id", "-q"])
                .output()
                .expect("garage cli");
            if out.status.success() {
                let s = String::from_utf8_lossy(&out.stdout);
                return s.trim().split('@').next().unwrap_or_default().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "garage did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs an admin command; a node that has just started may refuse the first attempts
    /// (seen on a loaded machine), so it is tried for a few seconds.
    fn admin(&self, bin: &std::path::Path, args: &[&str]) {
        let started = Instant::now();
        loop {
            let out = Command::new(bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .expect("garage cli");
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "garage {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates a bucket the test key may use.
    pub fn bucket(&self, name: &str) {
        let bin = garage_binary().expect("garage");
        self.admin(&bin, &["bucket", "create", name]);
        self.admin(
            &bin,
            &[
                "bucket", "allow", "--read", "--write", "--owner", name, "--key", "test",
            ],
        );
    }

    /// Environment for bulwark to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("BULWARK_S3_ENDPOINT".into(), self.endpoint.clone()),
            ("BULWARK_S3_REGION".into(), "garage".into()),
        ]
    }
}

fn hex_secret() -> String {
    (0..32).map(|_| format!("{:02x}", rand_byte())).collect()
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() as u8
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
