//! A throwaway Garage S3 server on free loopback ports, for tests against real object storage.

use std::process::{Child, Command, Stdio};

use super::free_port;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A second key, given read access only (`read_only_key`).
pub const READ_ONLY_KEY: &str = "GK89abcdef0123456789abcdef";
pub const READ_ONLY_SECRET: &str =
    "89abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567";

/// One Garage server, or a cluster of them on one machine (each node its own process, ports
/// and directories), reached through the first node's S3 endpoint.
pub struct Garage {
    nodes: Vec<Node>,
    bin: std::path::PathBuf,
    _dir: tempfile::TempDir,
    pub endpoint: String,
}

struct Node {
    child: Option<Child>,
    config: std::path::PathBuf,
}

impl Node {
    fn log(&self) -> std::path::PathBuf {
        self.config.with_file_name("garage.log")
    }
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
        Self::start_cluster(1)
    }

    /// Starts `n` Garage nodes in one cluster with replication factor `n`, each in a zone of
    /// its own; None (said loudly) when Garage is not installed.
    pub fn start_cluster(n: usize) -> Option<Self> {
        let Some(bin) = garage_binary() else {
            eprintln!("SKIPPED: no `garage` binary (install with `cargo install garage --locked`, or set GARAGE_BIN); S3 tests did not run");
            if std::env::var("CI").is_ok() {
                panic!("CI must run the S3 tests: garage is not installed");
            }
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = hex_secret();
        let mut endpoint = String::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let (rpc, s3) = (free_port(), free_port());
            let root = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&root).expect("node dir");
            let config = root.join("garage.toml");
            let root = root.display();
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = {n}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n"
                ),
            )
            .expect("write config");
            if i == 0 {
                endpoint = format!("http://127.0.0.1:{s3}");
            }
            nodes.push(Node {
                child: None,
                config,
            });
        }
        let mut g = Garage {
            nodes,
            bin,
            _dir: dir,
            endpoint,
        };
        let mut ids = Vec::new();
        for i in 0..n {
            g.start_node(i);
            ids.push(g.wait_for_node(i));
        }
        for id in &ids[1..] {
            g.admin(&["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let node = id.split('@').next().unwrap_or_default();
            let zone = format!("dc{}", i + 1);
            g.admin(&["layout", "assign", "-z", &zone, "-c", "1G", node]);
        }
        g.admin(&["layout", "apply", "--version", "1"]);
        g.admin(&[
            "key", "import", "--yes", "-n", "test", ACCESS_KEY, SECRET_KEY,
        ]);
        Some(g)
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log())
            .expect("garage log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env_remove("AWS_CA_BUNDLE")
            // One line per S3 request ("PUT /bucket/key?partNumber=1&uploadId=…").
            .env("RUST_LOG", "warn,garage_api_common::generic_server=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("garage starts");
        node.child = Some(child);
    }

    /// Kills node `i` (SIGKILL: no goodbye to its peers).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its old ports and data, waits until it answers, and connects
    /// the first node to it (which would otherwise wait for its next reconnection attempt).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let started = Instant::now();
        // The killed process's ports may take a moment to be free again.
        loop {
            self.start_node(i);
            std::thread::sleep(Duration::from_millis(500));
            let exited = self.nodes[i]
                .child
                .as_mut()
                .map(|c| c.try_wait().ok().flatten().is_some())
                .unwrap_or(true);
            if !exited {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "garage node {i} does not restart"
            );
        }
        let id = self.wait_for_node(i);
        if i > 0 {
            self.admin(&["node", "connect", &id]);
        }
    }

    /// Waits until node `i` answers; returns its `id@address`.
    fn wait_for_node(&self, i: usize) -> String {
        let start = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.nodes[i].config)
                .args(["node", "id", "-q"])
                .output()
                .expect("garage cli");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "garage did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs an admin command on the first node; a node that has just started may refuse the
    /// first attempts (seen on a loaded machine), so it is tried for a few seconds.
    fn admin(&self, args: &[&str]) {
        let started = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.nodes[0].config)
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
        self.admin(&["bucket", "create", name]);
        self.admin(&[
            "bucket", "allow", "--read", "--write", "--owner", name, "--key", "test",
        ]);
    }

    /// Lets `READ_ONLY_KEY` read `bucket`, and nothing more.
    pub fn read_only_key(&self, bucket: &str) {
        self.admin(&[
            "key",
            "import",
            "--yes",
            "-n",
            "ro",
            READ_ONLY_KEY,
            READ_ONLY_SECRET,
        ]);
        self.admin(&["bucket", "allow", "--read", bucket, "--key", "ro"]);
    }

    /// The S3 requests the endpoint's node has logged, one line each.
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.nodes[0].log()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("generic_server"))
            .map(str::to_owned)
            .collect()
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
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
