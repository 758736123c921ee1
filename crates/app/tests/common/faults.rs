//! A fault-injecting HTTP proxy between Bulwark and an S3 server. Each request is, at random
//! (seeded), answered 503 without reaching the server, answered 500 after the server did it,
//! cut off (connection reset before or truncated in the response body), delayed, or passed
//! through. Requests and responses are HTTP/1.1 with Content-Length or chunked bodies, which is
//! what S3 clients and servers speak.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicUsize,
    pub faults: AtomicUsize,
}

pub struct FaultyProxy {
    pub port: u16,
    pub counts: Arc<Counts>,
}

/// One HTTP message head and body, as bytes to pass on.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

fn read_head(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            return Some(head);
        }
    }
}

fn header(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Reads a body as framed by `head` (HEAD answers and 204/304 have none).
fn read_body(r: &mut impl BufRead, head: &[u8], no_body: bool) -> Option<Vec<u8>> {
    if no_body {
        return Some(Vec::new());
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size_line = Vec::new();
            r.read_until(b'\n', &mut size_line).ok()?;
            body.extend_from_slice(&size_line);
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&size_line)
                    .trim()
                    .split(';')
                    .next()?,
                16,
            )
            .ok()?;
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            if size == 0 {
                return Some(body);
            }
        }
    }
    let len: usize = header(head, "content-length").map_or(Some(0), |v| v.parse().ok())?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn read_message(r: &mut impl BufRead, no_body: bool) -> Option<Message> {
    let head = read_head(r)?;
    let status_no_body = head.starts_with(b"HTTP/1.1 204") || head.starts_with(b"HTTP/1.1 304");
    let body = read_body(r, &head, no_body || status_no_body)?;
    Some(Message { head, body })
}

fn error_response(code: u16) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>injected fault</Message></Error>",
        if code == 503 { "SlowDown" } else { "InternalError" }
    );
    format!(
        "HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Rng(AtomicU64);

impl Rng {
    fn below(&self, n: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % n
    }
}

impl FaultyProxy {
    /// Proxies to `upstream` on loopback; `percent` of requests get a fault.
    pub fn start(upstream: u16, seed: u64, percent: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let counts = Arc::new(Counts::default());
        let rng = Arc::new(Rng(AtomicU64::new(seed | 1)));
        let shared = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (counts, rng) = (shared.clone(), rng.clone());
                std::thread::spawn(move || serve(client, upstream, &counts, &rng, percent));
            }
        });
        Self { port, counts }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn faults(&self) -> usize {
        self.counts.faults.load(Ordering::Relaxed)
    }
}

/// One client connection: requests in turn, each on the same upstream connection.
fn serve(client: TcpStream, upstream: u16, counts: &Counts, rng: &Rng, percent: u64) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut from_client = BufReader::new(client.try_clone().expect("clone"));
    let mut from_server = BufReader::new(server.try_clone().expect("clone"));
    let (mut to_client, mut to_server) = (client, server);
    while let Some(request) = read_message(&mut from_client, false) {
        counts.requests.fetch_add(1, Ordering::Relaxed);
        let is_head = request.head.starts_with(b"HEAD ");
        let fault = if rng.below(100) < percent {
            counts.faults.fetch_add(1, Ordering::Relaxed);
            rng.below(5)
        } else {
            u64::MAX
        };
        match fault {
            0 => {
                // Refused before the server saw it.
                if to_client.write_all(&error_response(503)).is_err() {
                    break;
                }
                continue;
            }
            1 => {
                // The connection dies before any answer.
                break;
            }
            4 => std::thread::sleep(Duration::from_millis(200 + rng.below(800))),
            _ => {}
        }
        if to_server.write_all(&request.head).is_err()
            || to_server.write_all(&request.body).is_err()
        {
            break;
        }
        let Some(response) = read_message(&mut from_server, is_head) else {
            break;
        };
        let sent = match fault {
            // The server did it; the client hears it failed.
            2 => to_client.write_all(&error_response(500)),
            // The answer is cut off halfway through its body.
            3 if !response.body.is_empty() => {
                let _ = to_client.write_all(&response.head);
                let _ = to_client.write_all(&response.body[..response.body.len() / 2]);
                break;
            }
            _ => to_client
                .write_all(&response.head)
                .and_then(|()| to_client.write_all(&response.body)),
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = to_server.shutdown(Shutdown::Both);
}
