//! A Qdrant server for the tests: the one `QDRANT_URL` names, or a `qdrant` binary
//! (`QDRANT_BIN`, else on PATH) started in a temp dir on free ports. No registry ships Qdrant,
//! so the Qdrant tests are `#[ignore]`d with the reason (the test summary counts them as
//! ignored, not passed); `scripts/test.sh` runs them with `--ignored` when a server is there,
//! and a test run that way without one fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::connectors::qdrant::api::{Client, Method};
use serde_json::{json, Value};

use super::free_port;

pub struct Qdrant {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub url: String,
    pub api_key: Option<String>,
    /// Collection names get this prefix on a shared server, so parallel tests never meet.
    prefix: String,
    client: Client,
}

fn binary() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("QDRANT_BIN") {
        return Some(PathBuf::from(b));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("qdrant"))
            .find(|p| p.is_file())
    })
}

impl Qdrant {
    /// A server to test against.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("QDRANT_URL") {
            let prefix = format!("t{}_{}_", std::process::id(), free_port());
            let client =
                Client::new(&url, std::env::var("QDRANT_API_KEY").ok()).expect("QDRANT_URL");
            return Self {
                child: None,
                dir: None,
                api_key: std::env::var("QDRANT_API_KEY").ok(),
                url,
                prefix,
                client,
            };
        }
        Self::own(None)
    }

    /// A server of our own (needed to choose its API key).
    pub fn own(api_key: Option<&str>) -> Self {
        let bin = binary().unwrap_or_else(|| {
            panic!(
                "no qdrant binary: set QDRANT_BIN or put `qdrant` on PATH to run the Qdrant tests"
            )
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("qdrant.log")).expect("log");
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir.path())
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", free_port().to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", dir.path().join("storage"))
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                dir.path().join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(k) = api_key {
            cmd.env("QDRANT__SERVICE__API_KEY", k);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let url = format!("http://127.0.0.1:{port}");
        let client = Client::new(&url, api_key.map(str::to_string)).expect("url");
        let started = Instant::now();
        loop {
            if client.version().is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(dir.path().join("qdrant.log")).unwrap_or_default();
                panic!("qdrant exited ({status}) before answering:\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "qdrant did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child: Some(child),
            dir: Some(dir),
            url,
            api_key: api_key.map(str::to_string),
            prefix: String::new(),
            client,
        }
    }

    /// The collection name a test calls `base`.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A REST call that must succeed; its `result`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        self.client
            .call(m, path, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Creates collection `base` with `config` and upserts `points` (Qdrant's JSON) in batches.
    pub fn create(&self, base: &str, config: Value, points: &[Value]) -> String {
        let name = self.name(base);
        self.call("PUT", &format!("/collections/{name}"), Some(config));
        self.upsert(&name, points);
        name
    }

    pub fn upsert(&self, name: &str, points: &[Value]) {
        for batch in points.chunks(1000) {
            self.call(
                "PUT",
                &format!("/collections/{name}/points?wait=true"),
                Some(json!({ "points": batch })),
            );
        }
    }

    /// Every point of a collection with vectors and payload, by id.
    pub fn all_points(&self, name: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = Value::Null;
        loop {
            let mut body = json!({ "limit": 1000, "with_payload": true, "with_vector": true });
            if !offset.is_null() {
                body["offset"] = offset.clone();
            }
            let page = self.call(
                "POST",
                &format!("/collections/{name}/points/scroll"),
                Some(body),
            );
            out.extend(page["points"].as_array().expect("points").iter().cloned());
            offset = page["next_page_offset"].clone();
            if offset.is_null() {
                return out;
            }
        }
    }

    pub fn count(&self, name: &str) -> u64 {
        self.call(
            "POST",
            &format!("/collections/{name}/points/count"),
            Some(json!({ "exact": true })),
        )["count"]
            .as_u64()
            .expect("count")
    }

    pub fn exists(&self, name: &str) -> bool {
        self.call("GET", &format!("/collections/{name}/exists"), None)["exists"]
            .as_bool()
            .expect("exists")
    }

    pub fn info(&self, name: &str) -> Value {
        self.call("GET", &format!("/collections/{name}"), None)
    }
}

impl Drop for Qdrant {
    fn drop(&mut self) {
        match self.child.as_mut() {
            Some(child) => {
                // SIGTERM lets it flush; then make sure it is gone.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {
                // A shared server: remove what this test created.
                if let Ok(list) = self.client.get("/collections") {
                    for c in list["collections"].as_array().into_iter().flatten() {
                        if let Some(n) = c["name"].as_str().filter(|n| n.starts_with(&self.prefix))
                        {
                            let _ = self.client.delete(&format!("/collections/{n}"));
                        }
                    }
                }
            }
        }
    }
}

/// Asserts two scrolls hold the same points: ids and payloads exactly, vectors up to
/// rounding (Qdrant normalises cosine vectors again when they are restored).
pub fn assert_same_points(want: &[Value], got: &[Value]) {
    fn close(a: &Value, b: &Value, at: &str) {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().expect("f64"), y.as_f64().expect("f64"));
                assert!((x - y).abs() <= 1e-6 + 1e-5 * y.abs(), "{at}: {x} vs {y}");
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}: lengths");
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    close(p, q, &format!("{at}[{i}]"));
                }
            }
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>(),
                    "{at}: vector names"
                );
                for (k, p) in x {
                    close(p, &y[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }
    let by_id = |v: &[Value]| {
        v.iter()
            .map(|p| (p["id"].to_string(), p.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (want, got) = (by_id(want), by_id(got));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "point ids"
    );
    for (id, w) in &want {
        let g = &got[id];
        assert_eq!(w["payload"], g["payload"], "point {id}: payload");
        close(&w["vector"], &g["vector"], &format!("point {id}"));
    }
}
