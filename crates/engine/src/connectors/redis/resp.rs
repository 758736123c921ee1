//! A small RESP2 client: enough for AUTH, INFO, CONFIG, the replication handshake and
//! pipelined RESTOREs. Plain TCP only; the password never appears in messages.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// Where a Redis server is and how to log in.
#[derive(Clone)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl RedisUrl {
    /// `redis://[user[:password]@]host[:port]`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("'{}': {why}", redact(text)));
        if text.starts_with("rediss://") {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "rediss:// (TLS) is not supported yet; use redis:// on a trusted network",
            ));
        }
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "redis" {
            return Err(bad("expected redis://[user[:password]@]host[:port]"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        if !matches!(url.path(), "" | "/") {
            return Err(bad(
                "a path (database number) is not used: every database is backed up and restored",
            ));
        }
        Ok(Self {
            host,
            port: url.port().unwrap_or(6379),
            user: Some(url.username())
                .filter(|u| !u.is_empty())
                .map(percent_decode),
            password: url.password().map(percent_decode),
        })
    }

    /// A server on this machine's loopback, without a password.
    pub fn local(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            user: None,
            password: None,
        }
    }

    /// Sets the password unless the URL carried one.
    pub fn with_password(mut self, password: Option<String>) -> Self {
        if self.password.is_none() {
            self.password = password;
        }
        self
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The URL without the password, for messages.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("redis://{u}@{}:{}", self.host, self.port),
            None => format!("redis://{}:{}", self.host, self.port),
        }
    }
}

/// Undoes URL %XX escapes (a '+' stays a '+', unlike form decoding).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => text.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(b) => b,
            Reply::Status(s) => Some(s.into_bytes()),
            Reply::Int(i) => Some(i.to_string().into_bytes()),
            _ => None,
        }
    }

    pub fn into_string(self) -> String {
        self.into_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn into_array(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v,
            _ => Vec::new(),
        }
    }
}

/// The largest bulk string Redis sends (its default `proto-max-bulk-len`); a longer length
/// is a broken stream, not a reason to allocate.
const MAX_BULK: i64 = 512 << 20;
/// Nesting deeper than any reply Redis builds is a broken stream, not a reason to recurse.
const MAX_DEPTH: usize = 32;

/// Reads RESP2 replies from any byte stream (a server connection, or bytes under test).
pub struct RespReader<R: BufRead> {
    r: R,
    who: String,
}

impl<R: BufRead> RespReader<R> {
    pub fn new(r: R, who: impl Into<String>) -> Self {
        Self { r, who: who.into() }
    }

    fn lost(&self, e: std::io::Error) -> Error {
        Error::new(
            ErrorKind::Source,
            format!("the connection to {} failed", self.who),
        )
        .with_source(e)
    }

    fn malformed(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Source,
            format!("{} sent a malformed reply ({what})", self.who),
        )
    }

    /// A CRLF-terminated line, without the terminator.
    pub fn line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = self
            .r
            .read_until(b'\n', &mut line)
            .map_err(|e| self.lost(e))?;
        if n == 0 || !line.ends_with(b"\n") {
            return Err(Error::new(
                ErrorKind::Source,
                format!("{} closed the connection", self.who),
            ));
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(line)
    }

    fn number(&self, text: &[u8]) -> Result<i64> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.malformed("not a number"))
    }

    /// The next reply; error replies come back as `Reply::Error`.
    pub fn reply(&mut self) -> Result<Reply> {
        self.reply_at(0)
    }

    fn reply_at(&mut self, depth: usize) -> Result<Reply> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("nested too deeply"));
        }
        let line = self.line()?;
        let (tag, rest) = line
            .split_first()
            .ok_or_else(|| self.malformed("an empty line"))?;
        let text = || String::from_utf8_lossy(rest).into_owned();
        Ok(match tag {
            b'+' => Reply::Status(text()),
            b'-' => Reply::Error(text()),
            b':' => Reply::Int(self.number(rest)?),
            b'$' => {
                let n = self.number(rest)?;
                if n > MAX_BULK {
                    return Err(self.malformed("a bulk string longer than Redis sends"));
                }
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    // Read what arrives rather than trust the length with an allocation.
                    let want = n as u64 + 2;
                    let mut buf = Vec::new();
                    let got = (&mut self.r)
                        .take(want)
                        .read_to_end(&mut buf)
                        .map_err(|e| self.lost(e))?;
                    if got as u64 != want {
                        return Err(Error::new(
                            ErrorKind::Source,
                            format!("{} closed the connection", self.who),
                        ));
                    }
                    buf.truncate(n as usize);
                    Reply::Bulk(Some(buf))
                }
            }
            b'*' => {
                let n = self.number(rest)?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::with_capacity((n as usize).min(1024));
                    for _ in 0..n {
                        items.push(self.reply_at(depth + 1)?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!("{} does not speak RESP (is it a Redis server?)", self.who),
                ))
            }
        })
    }

    pub fn into_inner(self) -> R {
        self.r
    }
}

/// One connection, logged in.
pub struct Conn {
    r: RespReader<BufReader<TcpStream>>,
    w: BufWriter<TcpStream>,
    who: String,
}

/// How long a reply may take before the server counts as unresponsive.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl Conn {
    pub fn open(url: &RedisUrl) -> Result<Self> {
        let who = url.describe();
        let unreachable = |e: std::io::Error| {
            Error::new(
                ErrorKind::Source,
                format!("cannot connect to {who} (is the server running and reachable?)"),
            )
            .with_source(e)
        };
        let addrs: Vec<_> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(unreachable)?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(unreachable(e)),
            (None, None) => return Err(unreachable(std::io::ErrorKind::NotFound.into())),
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let mut conn = Self {
            r: RespReader::new(
                BufReader::with_capacity(256 << 10, stream.try_clone()?),
                who.clone(),
            ),
            w: BufWriter::with_capacity(256 << 10, stream),
            who,
        };
        if let Some(pw) = &url.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(u) = &url.user {
                args.push(u.as_bytes());
            }
            args.push(pw.as_bytes());
            if let Err(e) = conn.call(&args) {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!("{} rejected the login: {}", conn.who, e.message()),
                ));
            }
        }
        Ok(conn)
    }

    pub fn describe(&self) -> &str {
        &self.who
    }

    /// Queues a command; `flush` sends the queue.
    pub fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        write!(self.w, "*{}\r\n", args.len())?;
        for a in args {
            write!(self.w, "${}\r\n", a.len())?;
            self.w.write_all(a)?;
            self.w.write_all(b"\r\n")?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.w.flush().map_err(|e| self.r.lost(e))
    }

    /// A CRLF-terminated line, without the terminator.
    pub fn line(&mut self) -> Result<Vec<u8>> {
        self.r.line()
    }

    /// The next reply; error replies come back as `Reply::Error`.
    pub fn reply(&mut self) -> Result<Reply> {
        self.r.reply()
    }

    /// Sends one command and waits for its reply; an error reply is an error.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.send(args)?;
        self.flush()?;
        match self.reply()? {
            Reply::Error(e) => Err(Error::new(
                ErrorKind::Source,
                format!(
                    "{} answered {} with: {e}",
                    self.who,
                    String::from_utf8_lossy(args.first().copied().unwrap_or_default())
                ),
            )),
            r => Ok(r),
        }
    }

    /// `call` with string arguments.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call(&args)
    }

    /// A field of `INFO section`, e.g. `redis_version`.
    pub fn info_field(&mut self, section: &str, field: &str) -> Result<Option<String>> {
        let text = self.cmd(&["INFO", section])?.into_string();
        Ok(text.lines().find_map(|l| {
            l.strip_prefix(field)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        }))
    }

    /// The raw reader, for the replication stream that follows a PSYNC.
    pub fn into_reader(self) -> BufReader<TcpStream> {
        self.r.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply> {
        RespReader::new(bytes, "test").reply()
    }

    #[test]
    fn replies_parse_and_broken_streams_are_errors_not_allocations() {
        let r = parse(b"*2\r\n$3\r\nabc\r\n:42\r\n").expect("parses");
        let items = r.into_array();
        assert_eq!(items[0].clone().into_bytes().as_deref(), Some(&b"abc"[..]));
        assert_eq!(items[1].int(), Some(42));
        // A length no server sends, a body cut short, nesting without end, a stray byte.
        assert!(parse(b"$9223372036854775807\r\n").is_err());
        assert!(parse(b"$100\r\nshort\r\n").is_err());
        assert!(parse(&b"*1\r\n".repeat(10_000)).is_err());
        assert!(parse(b"?\r\n").is_err());
    }

    #[test]
    fn urls() {
        let u = RedisUrl::parse("redis://backup:s%40c+ret@127.0.0.1:6380").expect("parses");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 6380));
        assert_eq!(u.user.as_deref(), Some("backup"));
        assert_eq!(u.password.as_deref(), Some("s@c+ret"));
        assert_eq!(u.describe(), "redis://backup@127.0.0.1:6380");
        assert!(!format!("{u:?}").contains("cret"));
        let u = RedisUrl::parse("redis://localhost")
            .expect("parses")
            .with_password(Some("pw".into()));
        assert_eq!(u.port, 6379);
        assert!(u.has_password());
        let e = RedisUrl::parse("redis://u:hunter2@h/3").expect_err("db path");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(RedisUrl::parse("http://h").is_err());
        assert_eq!(
            RedisUrl::parse("rediss://h").expect_err("tls").kind(),
            ErrorKind::Unsupported
        );
    }
}
