//! A `bulwark daemon` started by a test on a free loopback port, and a small HTTP client for
//! its API. Dropping it stops the daemon (SIGTERM, then SIGKILL).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Env};

pub const ADMIN: &str = "admin-token-for-tests-0001";
pub const READER: &str = "read-token-for-tests-0001";

/// The `[daemon]` section with an admin and a read-only token, listening on `port`.
pub fn section(port: u16) -> String {
    format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [daemon.tokens.ops]\nrole = \"admin\"\ntoken = \"{ADMIN}\"\n\n\
         [daemon.tokens.grafana]\nrole = \"read\"\ntoken = \"{READER}\"\n\n"
    )
}

pub fn port() -> u16 {
    free_port()
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Daemon {
    /// Starts the daemon of `env`'s config and waits for /healthz.
    pub fn start(env: &Env, port: u16) -> Self {
        let log = env.path(&format!("daemon-{}.log", std::process::id() ^ port as u32));
        let file = std::fs::File::create(&log).expect("log");
        let child = env
            .command()
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("daemon starts");
        let d = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.get("/healthz", None).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "daemon did not come up:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("client");
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut req = match method {
            "POST" => client.post(url),
            _ => client.get(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send() {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        self.request("GET", path, token)
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        self.request("POST", path, token)
    }

    /// GET as the reader; asserts 200 and parses the JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path, Some(READER));
        assert_eq!(code, 200, "{path}: {body}\n{}", self.log());
        serde_json::from_str(&body).expect("JSON")
    }

    /// Waits until `done` holds for the runs the API lists (newest first).
    pub fn wait_runs(
        &self,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let runs = self.json("/api/runs?limit=1000");
            let runs = runs.as_array().cloned().unwrap_or_default();
            if done(&runs) {
                return runs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {runs:#?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (at most 90 s) until `done` holds; on timeout the daemon's alerts and log are
    /// shown.
    pub fn wait_until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nalerts: {}\nlog:\n{}",
                self.get("/api/alerts", Some(READER)).1,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signals the daemon this test started.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let code = self.child.wait().ok().and_then(|s| s.code());
        std::mem::forget(self);
        code
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs of `job` in an API listing.
pub fn of<'a>(runs: &'a [serde_json::Value], job: &str) -> Vec<&'a serde_json::Value> {
    runs.iter().filter(|r| r["job"] == job).collect()
}

/// A local HTTP server that answers 200 to everything and keeps each request's first line
/// (`GET /path HTTP/1.1`) and body: a real receiver for dead-man pings and webhooks.
pub struct Receiver {
    pub port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    pub fn start() -> Self {
        Self::answering(200)
    }

    /// A receiver that answers every request with `status` (500: a broken receiver).
    pub fn answering(status: u16) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                seen.lock().expect("requests").push((
                    first.trim().to_string(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = reader.get_mut().write_all(answer.as_bytes());
            }
        });
        Self { port, requests }
    }

    /// The requests so far, oldest first: request line and body.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().expect("requests").clone()
    }

    /// The request lines so far, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.requests
            .lock()
            .expect("requests")
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }
}

/// Writes `env`'s config (the `[daemon]` section on a free port, a files source `uploads` of
/// a sample tree, then `extra`: jobs, more sources) and creates its repository; the port.
pub fn configure(env: &Env, extra: &str) -> u16 {
    super::write_sample_tree(&env.path("data"));
    let port = port();
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "{}[sources.uploads]\nkind = \"files\"\npaths = [\"data\"]\n\n{extra}",
            section(port)
        ),
    )
    .expect("config");
    env.init();
    port
}
