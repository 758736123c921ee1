//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`):
//! `chromedriver` on a free loopback port, one browser session with a fresh profile. Dropping
//! it ends the session and stops the driver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::free_port;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether Chromium and its driver are installed; says why not (and fails under CI).
pub fn available() -> bool {
    let installed = ["chromium", "chromedriver"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !installed {
        eprintln!("SKIPPED: chromium or chromedriver is not installed (scripts/install-deps.sh installs them); the browser tests did not run");
        if std::env::var("CI").is_ok() {
            panic!("CI must run the browser tests: chromium or chromedriver is not installed");
        }
    }
    installed
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with its profile under `dir`.
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("{base}/status"))
            .send()
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = dir.join("chromium-profile");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,2000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let mut b = Self {
            driver,
            base,
            session: String::new(),
            http,
        };
        let created = b.call("POST", "/session", caps);
        b.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        b
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "POST" => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
            "DELETE" => self.http.delete(url),
            _ => self.http.get(url),
        };
        let text = req
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}: {text}"));
        let value = answer["value"].clone();
        if value.get("error").is_some() {
            panic!("WebDriver {method} {path}: {value}");
        }
        value
    }

    pub fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching a CSS selector now.
    pub fn all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            json!({ "using": "css selector", "value": css }),
        )
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e[ELEMENT].as_str().map(String::from))
        .collect()
    }

    /// The first element matching `css`, waiting up to 20 s for it to appear.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self.all(css).into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                let page = self.script("return document.documentElement.outerHTML");
                panic!(
                    "no element matches {css} at {}:\n{}",
                    self.url(),
                    page.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The text of the first element matching `css`, once it satisfies `ready` (20 s at most).
    pub fn text_when(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self
                .all(css)
                .first()
                .map(|e| self.text(e))
                .unwrap_or_default();
            if ready(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed what was expected; it shows {text:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    pub fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
    }

    /// Runs `script` in the page; its return value.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Saves a screenshot of the page as `path` (PNG).
    pub fn screenshot(&self, path: &Path) -> PathBuf {
        let data = self.call("GET", "/screenshot", json!({}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        std::fs::write(path, png).expect("screenshot written");
        path.to_path_buf()
    }

    /// The browser console's messages since the last call, as `LEVEL message` lines.
    pub fn console(&self) -> Vec<String> {
        self.call("POST", "/se/log", json!({ "type": "browser" }))
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
