//! Qdrant's REST API, as much of it as backups and restores need: one blocking client that
//! adds the API key, unwraps Qdrant's `{"result": ...}` envelope and turns failures into errors
//! that say which server and what it answered.

use std::io::Read;
use std::time::Duration;

use reqwest::blocking::{multipart, Client as Http, RequestBuilder, Response};
pub use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};

/// Longest an ordinary request (a scroll page, an upsert batch) may take: a hung server must
/// not hang a backup forever. Snapshot transfers and creation are not bounded.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Qdrant's parameters for an exact search that ignores quantized copies: the reference
/// answer a restored collection must give.
pub fn exact_params() -> Value {
    json!({ "exact": true, "quantization": { "ignore": true } })
}

#[derive(Clone)]
pub struct Client {
    base: String,
    api_key: Option<String>,
    http: Http,
}

impl Client {
    /// A client for the server at `url` (http:// or https://).
    pub fn new(url: &str, api_key: Option<String>) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base)
            .map_err(|e| Error::invalid(format!("Qdrant URL '{url}': {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::invalid(format!(
                "Qdrant URL '{url}': expected http://host:port or https://host:port"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::invalid(format!(
                "Qdrant URL '{}': put the API key in password_file or password_env, not in the URL",
                parsed.host_str().unwrap_or_default()
            )));
        }
        let http = Http::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per request instead: snapshots of large collections take long to transfer.
            .timeout(None)
            .build()
            .map_err(|e| Error::invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            base,
            api_key,
            http,
        })
    }

    /// The server, as shown to users (never with the API key).
    pub fn describe(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(k) => r.header("api-key", k),
            None => r,
        }
    }

    /// Sends a request and returns the response if it succeeded; otherwise an error naming
    /// what was asked and what the server said.
    fn send(&self, what: &str, r: RequestBuilder) -> Result<Response> {
        let resp = r.send().map_err(|e| self.transport(what, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().unwrap_or_default();
        let said = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["status"]["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let (kind, hint) = match status.as_u16() {
            401 | 403 => (
                ErrorKind::Source,
                "; check the API key (password_file / password_env, or QDRANT_API_KEY for restores)",
            ),
            404 => (ErrorKind::NotFound, ""),
            _ => (ErrorKind::Source, ""),
        };
        Err(Error::new(
            kind,
            format!(
                "Qdrant at {} refused {what}: HTTP {status}: {said}{hint}",
                self.base
            ),
        ))
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> Error {
        let why = if e.is_connect() {
            "cannot connect (is Qdrant running and the URL right?)".to_string()
        } else if e.is_timeout() {
            "timed out".to_string()
        } else {
            // The chain holds the useful part ("connection reset", "unexpected EOF").
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(c) = src {
                s.push_str(&format!(": {c}"));
                src = c.source();
            }
            s
        };
        Error::new(
            ErrorKind::Source,
            format!("Qdrant at {}: {what}: {why}", self.base),
        )
        .retryable(true)
    }

    /// A JSON call; returns the `result` member of the answer.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call_as(method, path, body)
    }

    /// A JSON call whose `result` is read straight into `T` (scroll pages: no detour
    /// through `Value` for a million floats).
    pub fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        self.call_within(method, path, body, Some(REQUEST_TIMEOUT))
    }

    /// A call that may legitimately take very long (writing a snapshot of a huge collection).
    pub fn call_unbounded<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        self.call_within(method, path, None, None)
    }

    fn call_within<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<T> {
        let what = format!("{method} {path}");
        let mut r = self.request(method, path);
        if let Some(t) = timeout {
            r = r.timeout(t);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).map_err(|e| Error::invalid(e.to_string()))?);
        }
        self.result(&what, r)
    }

    /// A call whose JSON body was serialized by the caller (point batches).
    pub fn call_raw(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Value> {
        let what = format!("{method} {path}");
        let r = self
            .request(method, path)
            .timeout(REQUEST_TIMEOUT)
            .header("content-type", "application/json")
            .body(body);
        self.result(&what, r)
    }

    fn result<T: DeserializeOwned>(&self, what: &str, r: RequestBuilder) -> Result<T> {
        let resp = self.send(what, r)?;
        let bytes = resp.bytes().map_err(|e| self.transport(what, &e))?;
        self.parse(what, &bytes)
    }

    /// The `result` of an answer read earlier with `call_bytes`.
    pub fn parse<T: DeserializeOwned>(&self, what: &str, answer: &[u8]) -> Result<T> {
        #[derive(Deserialize)]
        struct Envelope<T> {
            result: T,
        }
        let v: Envelope<T> = serde_json::from_slice(answer).map_err(|e| {
            Error::new(
                ErrorKind::Source,
                format!("Qdrant at {}: {what}: unreadable answer: {e}", self.base),
            )
        })?;
        Ok(v.result)
    }

    /// A JSON call whose answer is returned unparsed, to be parsed on another thread.
    pub fn call_bytes(&self, method: Method, path: &str, body: &Value) -> Result<bytes::Bytes> {
        let what = format!("{method} {path}");
        let r = self
            .request(method, path)
            .timeout(REQUEST_TIMEOUT)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).map_err(|e| Error::invalid(e.to_string()))?);
        let resp = self.send(&what, r)?;
        resp.bytes().map_err(|e| self.transport(&what, &e))
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::PUT, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.call(Method::DELETE, path, None)
    }

    /// The server's version, which proves it answers (`/` needs no key: a wrong key shows at
    /// the caller's next request).
    pub fn version(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Root {
            version: Option<String>,
        }
        let what = "GET /";
        let resp = self.send(what, self.request(Method::GET, "/"))?;
        let bytes = resp.bytes().map_err(|e| self.transport(what, &e))?;
        let root: Root = serde_json::from_slice(&bytes).map_err(|_| {
            Error::new(
                ErrorKind::Source,
                format!("{} does not answer like a Qdrant server", self.base),
            )
        })?;
        Ok(root.version.unwrap_or_else(|| "unknown".into()))
    }

    /// A streamed download (a snapshot file).
    pub fn download(&self, path: &str) -> Result<impl Read> {
        self.send(&format!("GET {path}"), self.request(Method::GET, path))
    }

    /// Streams `reader` as the multipart field `field` (`len` bytes) and returns the result.
    pub fn upload(
        &self,
        path: &str,
        field: &str,
        filename: &str,
        reader: impl Read + Send + 'static,
        len: u64,
    ) -> Result<Value> {
        let part = multipart::Part::reader_with_length(reader, len).file_name(filename.to_string());
        let form = multipart::Form::new().part(field.to_string(), part);
        self.result(
            &format!("POST {path}"),
            self.request(Method::POST, path).multipart(form),
        )
    }
}

/// A path segment (collection or snapshot name) made safe for a URL.
pub fn seg(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
