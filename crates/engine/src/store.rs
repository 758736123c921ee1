//! Storage: one OpenDAL operator (with retry, timeout, concurrency-limit and logging layers)
//! and the repository's key layout on top of it. This is the only place that knows paths.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opendal::layers::{
    ConcurrentLimitLayer, LoggingLayer, RetryEvent, RetryInterceptor, RetryLayer, TimeoutLayer,
};
use opendal::{EntryMode, Operator};

use crate::error::{Error, ErrorKind, Result, ResultExt};

/// Objects above this size are uploaded in parts (S3 multipart, OBS multipart).
const MULTIPART_ABOVE: usize = 16 << 20;
/// Size of each part (S3 asks for at least 5 MiB but the last).
const MULTIPART_PART: usize = 8 << 20;
/// Parts of one object in flight at once.
const MULTIPART_CONCURRENCY: usize = 4;

/// Where a repository lives, parsed from `PATH`, `local:PATH`, `s3://BUCKET/PREFIX`,
/// `obs://BUCKET/PREFIX` or `memory:` (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Local(PathBuf),
    S3 { bucket: String, root: String },
    Obs { bucket: String, root: String },
    Memory,
}

impl Backend {
    pub fn parse(url: &str) -> Result<Self> {
        let bucket_and_root = |rest: &str| -> Result<(String, String)> {
            let (bucket, root) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::invalid(format!(
                    "repository URL '{url}' names no bucket"
                )));
            }
            Ok((bucket.to_string(), format!("/{}", root.trim_matches('/'))))
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, root) = bucket_and_root(rest)?;
            Ok(Backend::S3 { bucket, root })
        } else if let Some(rest) = url.strip_prefix("obs://") {
            let (bucket, root) = bucket_and_root(rest)?;
            Ok(Backend::Obs { bucket, root })
        } else if url == "memory:" {
            Ok(Backend::Memory)
        } else {
            let path = url.strip_prefix("local:").unwrap_or(url);
            if path.is_empty() {
                return Err(Error::invalid("empty repository path"));
            }
            if path.contains("://") {
                return Err(Error::invalid(format!(
                    "unknown repository scheme in '{url}' (use a path, s3://, or obs://)"
                )));
            }
            Ok(Backend::Local(PathBuf::from(path)))
        }
    }
}

/// Settings for object storage; ignored by the local backend except the limits.
#[derive(Clone, Default)]
pub struct StorageOptions {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Use `bucket.host` addressing instead of `host/bucket`.
    pub virtual_host_style: bool,
    /// Maximum concurrent storage operations (0: the default of 16).
    pub concurrency: usize,
    /// How many times a failed operation is retried (None: 5).
    pub retries: Option<usize>,
    /// Delay before the first retry; doubles each time (None: 1 s).
    pub retry_delay: Option<Duration>,
    /// Timeout of one request (None: 120 s).
    pub timeout: Option<Duration>,
}

impl fmt::Debug for StorageOptions {
    // Credentials never appear in logs or error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// The object kinds of a repository; see docs/repository-format.md for the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Config,
    Key,
    Snapshot,
    Index,
    Pack,
    Lock,
    /// Log archives kept beside the snapshots, per source (PostgreSQL's WAL:
    /// `<source>/<timeline>/<file>`), under `wal/` since format version 1.
    Log,
    /// Records of restore drills (sealed JSON), under `drills/` since format version 1.
    Drill,
    /// Records of recoveries (sealed JSON), under `recoveries/` since format version 1.
    Recovery,
    /// Records of backup sets (sealed JSON), under `sets/` since format version 1.
    Set,
    /// Records of checks (sealed JSON), under `checks/` since format version 1.
    Check,
    /// Seals of hosts' audit logs (sealed JSON, one per log, rewritten), under `audit/` since
    /// format version 1.
    Audit,
    /// Prune's deletion marks (sealed), under `marks/` since format version 1.
    Mark,
    /// Maintenance settings (sealed JSON, rewritten), `maintenance` since format version 1.
    Maintenance,
}

impl ObjectKind {
    fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Index => "index/",
            ObjectKind::Pack => "data/",
            ObjectKind::Lock => "locks/",
            ObjectKind::Log => "wal/",
            ObjectKind::Drill => "drills/",
            ObjectKind::Recovery => "recoveries/",
            ObjectKind::Set => "sets/",
            ObjectKind::Check => "checks/",
            ObjectKind::Audit => "audit/",
            ObjectKind::Mark => "marks/",
            ObjectKind::Maintenance => "",
        }
    }

    /// Whether objects of this kind are named by the BLAKE3 of their bytes (locks and audit
    /// seals are rewritten in place; keys and WAL have names of their own).
    pub fn content_addressed(self) -> bool {
        !matches!(
            self,
            ObjectKind::Config
                | ObjectKind::Lock
                | ObjectKind::Log
                | ObjectKind::Audit
                | ObjectKind::Maintenance
        )
    }

    fn path(self, name: &str) -> String {
        match self {
            ObjectKind::Config => "config".to_string(),
            ObjectKind::Maintenance => "maintenance".to_string(),
            ObjectKind::Pack => format!("data/{}/{name}", name.get(..2).unwrap_or("00")),
            _ => format!("{}{name}", self.dir()),
        }
    }
}

/// An object found by listing: its name (without directories), size, and when it was last
/// written where the listing says (S3 does; a local listing may not: `Store::modified` asks).
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub modified: Option<jiff::Timestamp>,
}

pub struct Store {
    op: Operator,
    runtime: Arc<tokio::runtime::Runtime>,
    url: String,
    /// As parsed from the URL, with a local path made absolute.
    backend: Backend,
    /// Cleared once the local filesystem refuses O_DIRECT.
    direct_io: AtomicBool,
}

/// Reports each retry on stderr through the log facade; the app decides whether it is shown.
struct RetryLog;

impl RetryInterceptor for RetryLog {
    fn intercept(&self, event: RetryEvent<'_>) {
        log::warn!(
            "storage {} failed (attempt {}), retrying in {:.1}s: {}",
            event.op,
            event.attempt,
            event.retry_after.as_secs_f64(),
            event.err
        );
    }
}

impl Store {
    /// Opens the storage of an existing repository. A local path that does not exist, or is
    /// not a directory, is no repository: nothing is created there (a mistyped or unmounted
    /// path must not turn into an empty directory).
    pub fn open(url: &str, options: &StorageOptions) -> Result<Self> {
        Self::connect(url, options, false)
    }

    /// Opens the storage for a new repository, creating a local directory if needed.
    pub fn create(url: &str, options: &StorageOptions) -> Result<Self> {
        Self::connect(url, options, true)
    }

    fn connect(url: &str, options: &StorageOptions, create: bool) -> Result<Self> {
        let backend = match Backend::parse(url)? {
            Backend::Local(path) => {
                if create {
                    std::fs::create_dir_all(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                }
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(Error::new(
                            ErrorKind::NoRepository,
                            format!("repository at {} is a file, not a directory", path.display()),
                        ))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Error::new(
                            ErrorKind::NoRepository,
                            format!(
                                "repository at {} does not exist (is the path right, and the disk mounted?)",
                                path.display()
                            ),
                        ))
                    }
                    Err(e) => {
                        return Err(Error::from(e).context(format!("opening {}", path.display())))
                    }
                }
                let abs = path
                    .canonicalize()
                    .with_context(|| format!("resolving {}", path.display()))?;
                Backend::Local(abs)
            }
            other => other,
        };
        let op = build_operator(&backend, options)
            .with_context(|| format!("cannot open storage at {url}"))?;
        let retry = RetryLayer::new()
            .with_max_times(options.retries.unwrap_or(5))
            .with_min_delay(options.retry_delay.unwrap_or(Duration::from_secs(1)))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .with_notify(RetryLog);
        let limit = if options.concurrency == 0 {
            16
        } else {
            options.concurrency
        };
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(options.timeout.unwrap_or(Duration::from_secs(120))),
            )
            .layer(retry)
            .layer(ConcurrentLimitLayer::new(limit))
            .layer(LoggingLayer::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bulwark-io")
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Io, "cannot start I/O runtime").with_source(e))?;
        Ok(Self {
            op,
            runtime: Arc::new(runtime),
            url: url.to_string(),
            backend,
            direct_io: AtomicBool::new(true),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one request on the I/O runtime and waits for it. The request is a task of its own
    /// there rather than polled on the calling thread: the connection's task and the one taking
    /// in the body then share a worker, instead of waking this thread for every piece of the
    /// body that arrives (measured: 0.1 s less CPU in a two-second restore from S3).
    fn run<T: Send + 'static>(
        &self,
        request: impl Future<Output = opendal::Result<T>> + Send + 'static,
    ) -> opendal::Result<T> {
        self.runtime
            .block_on(self.runtime.spawn(request))
            .unwrap_or_else(|e| {
                Err(opendal::Error::new(
                    opendal::ErrorKind::Unexpected,
                    format!("the I/O task failed: {e}"),
                ))
            })
    }

    /// Local disk (or memory): latency is low, so fewer parallel transfers are needed.
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_) | Backend::Memory)
    }

    pub fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        Ok(into_vec(self.read_reply(kind, name)?))
    }

    fn read_reply(&self, kind: ObjectKind, name: &str) -> Result<opendal::Buffer> {
        let path = kind.path(name);
        let (op, p) = (self.op.clone(), path.clone());
        self.run(async move { op.read(&p).await })
            .with_context(|| format!("reading {path}"))
    }

    /// `read` into a reused buffer.
    pub fn read_into(&self, kind: ObjectKind, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        let Backend::Local(root) = &self.backend else {
            copy_into(self.read_reply(kind, name)?, buf);
            return Ok(());
        };
        let path = kind.path(name);
        buf.clear();
        std::fs::File::open(root.join(&path))
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, buf))
            .with_context(|| format!("reading {path}"))?;
        Ok(())
    }

    /// `read_range` into a reused buffer. On local disk this is one positioned read straight
    /// into it; elsewhere the object store's reply is copied in.
    pub fn read_range_into(
        &self,
        kind: ObjectKind,
        name: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Backend::Local(root) = &self.backend else {
            copy_into(self.read_range_reply(kind, name, range)?, buf);
            return Ok(());
        };
        let path = kind.path(name);
        let mut read = || -> std::io::Result<()> {
            let file = std::fs::File::open(root.join(&path))?;
            buf.resize((range.end - range.start) as usize, 0);
            std::os::unix::fs::FileExt::read_exact_at(&file, buf, range.start)
        };
        read().map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(format!("{path} is shorter than expected (asked {range:?})"))
            } else {
                Error::from(e).context(format!("reading {path} bytes {range:?}"))
            }
        })
    }

    pub fn read_range(&self, kind: ObjectKind, name: &str, range: Range<u64>) -> Result<Vec<u8>> {
        Ok(into_vec(self.read_range_reply(kind, name, range)?))
    }

    fn read_range_reply(
        &self,
        kind: ObjectKind,
        name: &str,
        range: Range<u64>,
    ) -> Result<opendal::Buffer> {
        let path = kind.path(name);
        let (op, p, r) = (self.op.clone(), path.clone(), range.clone());
        let buf = self
            .run(async move { op.read_with(&p).range(r).await })
            .with_context(|| format!("reading {path} bytes {range:?}"))?;
        let got = buf.len() as u64;
        if got != range.end - range.start {
            return Err(Error::corrupt(format!(
                "{path} is shorter than expected (asked {range:?}, got {got} bytes)"
            )));
        }
        Ok(buf)
    }

    /// Writes a whole object. On the local backend the data and then its directory entry are
    /// synced before this returns, so a written object survives a power cut. Packs and WAL
    /// objects skip the page cache there when the filesystem allows (see `direct_write`).
    pub fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        let path = kind.path(name);
        let local = match &self.backend {
            Backend::Local(root) => Some((root.join(&path), root.join(".tmp"))),
            _ => None,
        };
        let direct = local.as_ref().filter(|_| {
            matches!(kind, ObjectKind::Pack | ObjectKind::Log)
                && self.direct_io.load(Ordering::Relaxed)
        });
        let written_directly = match direct {
            Some((full, tmp)) => crate::direct_write::write(tmp, full, bytes)
                .with_context(|| format!("writing {path}"))?,
            None => false,
        };
        if !written_directly {
            if direct.is_some() {
                self.direct_io.store(false, Ordering::Relaxed);
            }
            // A large object goes up in parts sent side by side; a part per request below
            // MULTIPART_ABOVE would only add requests (an 8 MiB pack is one PUT).
            let parts = bytes.len() > MULTIPART_ABOVE && !self.is_local();
            let (op, p, body) = (self.op.clone(), path.clone(), bytes.to_vec());
            self.run(async move {
                let write = op.write_with(&p, body);
                match parts {
                    true => {
                        write
                            .chunk(MULTIPART_PART)
                            .concurrent(MULTIPART_CONCURRENCY)
                            .await
                    }
                    false => write.await,
                }
            })
            .with_context(|| format!("writing {path}"))?;
        }
        if let Some(dir) = local.as_ref().and_then(|(full, _)| full.parent()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing directory {}", dir.display()))?;
        }
        Ok(())
    }

    /// When an object was last written, if the backend says.
    pub fn modified(&self, kind: ObjectKind, name: &str) -> Result<Option<jiff::Timestamp>> {
        let path = kind.path(name);
        let (op, p) = (self.op.clone(), path.clone());
        let meta = self
            .run(async move { op.stat(&p).await })
            .with_context(|| format!("checking {path}"))?;
        Ok(meta.last_modified().map(|t| t.into_inner()))
    }

    /// Removes partial files that failed writes (disk full, crash) left in a local repository's
    /// `.tmp/`. Only safe when no other process writes: call it under an exclusive lock.
    pub fn remove_temp_files(&self) -> Result<u64> {
        let Backend::Local(root) = &self.backend else {
            return Ok(0);
        };
        let dir = root.join(".tmp");
        let mut freed = 0;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::from(e).context(format!("listing {}", dir.display()))),
        };
        for entry in entries.flatten() {
            freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
        Ok(freed)
    }

    /// The directory of a local repository.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match &self.backend {
            Backend::Local(root) => Some(root),
            _ => None,
        }
    }

    /// Tells the kernel that these objects are about to be read, so that it reads them into
    /// the page cache ahead of the reader (local disk only; a hint: failures are ignored).
    pub fn will_read<'a>(&self, kind: ObjectKind, names: impl IntoIterator<Item = &'a str>) {
        let Backend::Local(root) = &self.backend else {
            return;
        };
        for name in names {
            if let Ok(file) = std::fs::File::open(root.join(kind.path(name))) {
                use std::os::fd::AsRawFd;
                // SAFETY: a plain system call on a descriptor this function owns.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
            }
        }
    }

    pub fn exists(&self, kind: ObjectKind, name: &str) -> Result<bool> {
        let path = kind.path(name);
        let (op, p) = (self.op.clone(), path.clone());
        self.run(async move { op.exists(&p).await })
            .with_context(|| format!("checking {path}"))
    }

    pub fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = kind.path(name);
        let (op, p) = (self.op.clone(), path.clone());
        self.run(async move { op.delete(&p).await })
            .with_context(|| format!("deleting {path}"))?;
        Ok(())
    }

    /// Lists the objects of a kind (recursively for packs).
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<Listed>> {
        self.list_under(kind, "")
    }

    /// The directories directly under a kind's directory (e.g. the WAL archive's sources).
    pub fn list_dirs(&self, kind: ObjectKind) -> Result<Vec<String>> {
        let dir = kind.dir();
        let op = self.op.clone();
        let entries = self
            .run(async move { op.list(dir).await })
            .or_else(|e| {
                if e.kind() == opendal::ErrorKind::NotFound {
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("listing {dir}"))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode() == EntryMode::DIR && e.path() != dir)
            .map(|e| e.name().trim_end_matches('/').to_string())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .collect())
    }

    /// Lists the objects of a kind under a sub-directory (e.g. one source's WAL), recursively;
    /// names are the last path component.
    pub fn list_under(&self, kind: ObjectKind, sub: &str) -> Result<Vec<Listed>> {
        let dir = format!("{}{sub}", kind.dir());
        let dir = dir.as_str();
        let (op, d) = (self.op.clone(), dir.to_string());
        let entries = self
            .run(async move { op.list_with(&d).recursive(true).await })
            .or_else(|e| {
                if e.kind() == opendal::ErrorKind::NotFound {
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("listing {}", if dir.is_empty() { "/" } else { dir }))?;
        let mut out = Vec::new();
        for entry in entries {
            if entry.metadata().mode() != EntryMode::FILE {
                continue;
            }
            let name = entry.name().to_string();
            if name.starts_with('.') {
                continue;
            }
            out.push(Listed {
                name,
                size: entry.metadata().content_length(),
                modified: entry.metadata().last_modified().map(|t| t.into_inner()),
            });
        }
        Ok(out)
    }
}

/// An object store's reply (pieces as they came off the network) into a reused buffer: one
/// copy into pages already mapped, where `into_vec` would allocate (and fault in) a fresh
/// buffer per read.
fn copy_into(reply: opendal::Buffer, buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(reply.len());
    for piece in reply {
        buf.extend_from_slice(&piece);
    }
}

/// Takes the bytes out of OpenDAL's buffer without copying them when they are contiguous and
/// unshared (the usual case), so a pack is not held twice.
fn into_vec(buf: opendal::Buffer) -> Vec<u8> {
    let bytes = buf.to_bytes();
    drop(buf);
    Vec::from(bytes)
}

fn build_operator(backend: &Backend, o: &StorageOptions) -> Result<Operator> {
    use opendal::services;
    let op = match backend {
        Backend::Local(root) => {
            let root = root.to_string_lossy();
            let builder = services::Fs::default()
                .root(&root)
                .atomic_write_dir(&format!("{root}/.tmp"));
            Operator::new(builder)?
        }
        Backend::S3 { bucket, root } => {
            let mut b = services::S3::default()
                .bucket(bucket)
                .root(root)
                .disable_ec2_metadata();
            if let Some(v) = &o.endpoint {
                b = b.endpoint(v);
            }
            b = b.region(o.region.as_deref().unwrap_or("us-east-1"));
            if let (Some(k), Some(s)) = (&o.access_key_id, &o.secret_access_key) {
                b = b
                    .access_key_id(k)
                    .secret_access_key(s)
                    .disable_config_load();
            }
            if let Some(t) = &o.session_token {
                b = b.session_token(t);
            }
            if o.virtual_host_style {
                b = b.enable_virtual_host_style();
            }
            with_http_client(Operator::new(b)?, o.endpoint.as_deref())?
        }
        Backend::Obs { bucket, root } => {
            let mut b = services::Obs::default().bucket(bucket).root(root);
            let endpoint = o.endpoint.as_deref().ok_or_else(|| {
                Error::invalid(
                    "Huawei OBS needs an endpoint (e.g. https://obs.cn-north-4.myhuaweicloud.com)",
                )
            })?;
            b = b.endpoint(endpoint);
            if let (Some(k), Some(s)) = (&o.access_key_id, &o.secret_access_key) {
                b = b.access_key_id(k).secret_access_key(s);
            }
            with_http_client(Operator::new(b)?, Some(endpoint))?
        }
        Backend::Memory => Operator::new(services::Memory::default())?,
    };
    Ok(op)
}

/// `op` with an HTTP client of its own. OpenDAL's default client is made on first use and
/// panics when the system has no CA certificates (a slim container image); a plain `http://`
/// endpoint needs none (and skips reading them at every start), and for HTTPS a missing
/// bundle is an error that says what to install.
fn with_http_client(op: Operator, endpoint: Option<&str>) -> Result<Operator> {
    let plain = endpoint.is_some_and(|e| e.starts_with("http://"));
    let builder = reqwest::Client::builder();
    let builder = if plain {
        builder.tls_certs_only([])
    } else {
        builder
    };
    let client = builder.build().map_err(|e| {
        Error::invalid(format!(
            "cannot set up HTTPS: {e} (install the ca-certificates package, or name a CA bundle in SSL_CERT_FILE)"
        ))
    })?;
    let transport = opendal::HttpTransporter::new(
        opendal_http_transport_reqwest::ReqwestTransport::new(client),
    );
    Ok(op.with_context(opendal::OperationContext::new().with_http_transport(transport)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Backend::parse("/srv/repo").expect("ok"),
            Backend::Local("/srv/repo".into())
        );
        assert_eq!(
            Backend::parse("local:rel").expect("ok"),
            Backend::Local("rel".into())
        );
        assert_eq!(
            Backend::parse("s3://bk/prod/x/").expect("ok"),
            Backend::S3 {
                bucket: "bk".into(),
                root: "/prod/x".into()
            }
        );
        assert_eq!(
            Backend::parse("s3://bk").expect("ok"),
            Backend::S3 {
                bucket: "bk".into(),
                root: "/".into()
            }
        );
        assert!(Backend::parse("s3:///x").is_err());
        assert!(Backend::parse("gs://x").is_err());
        assert!(Backend::parse("").is_err());
    }

    #[test]
    fn layout_and_round_trip_on_fs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            dir.path().to_str().expect("utf8"),
            &StorageOptions::default(),
        )
        .expect("opens");
        store
            .write(ObjectKind::Pack, "abcdef", b"pack")
            .expect("writes");
        store.write(ObjectKind::Config, "", b"cfg").expect("writes");
        assert!(dir.path().join("data/ab/abcdef").exists());
        assert_eq!(
            store
                .read_range(ObjectKind::Pack, "abcdef", 1..3)
                .expect("range"),
            b"ac"
        );
        assert!(store.read_range(ObjectKind::Pack, "abcdef", 1..30).is_err());
        // The reused-buffer forms read the same bytes and report the same short read.
        let mut buf = b"previous contents, longer".to_vec();
        store
            .read_range_into(ObjectKind::Pack, "abcdef", 1..3, &mut buf)
            .expect("range");
        assert_eq!(buf, b"ac");
        let short = store
            .read_range_into(ObjectKind::Pack, "abcdef", 1..30, &mut buf)
            .expect_err("past the end");
        assert_eq!(short.kind(), ErrorKind::Corrupt, "{short}");
        store
            .read_into(ObjectKind::Pack, "abcdef", &mut buf)
            .expect("whole");
        assert_eq!(buf, b"pack");
        let missing = store
            .read_into(ObjectKind::Pack, "abcdee", &mut buf)
            .expect_err("missing");
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
        let listed = store.list(ObjectKind::Pack).expect("lists");
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("abcdef", 4));
        assert!(store
            .list(ObjectKind::Snapshot)
            .expect("empty ok")
            .is_empty());
        let err = store
            .read(ObjectKind::Snapshot, "nope")
            .expect_err("missing");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        store.delete(ObjectKind::Pack, "abcdef").expect("deletes");
        assert!(!store
            .exists(ObjectKind::Pack, "abcdef")
            .expect("exists works"));
    }
}
