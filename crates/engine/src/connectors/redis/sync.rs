//! Taking an RDB snapshot over the network by acting as a replica: PSYNC asks for a full
//! resynchronisation and the server streams a point-in-time RDB, either with its length up
//! front (written to the server's disk first) or, in diskless mode, ended by a random
//! 40-byte marker. Either way the stream is only complete when its end is seen: a
//! connection that drops midway is an error, never a short file.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

use super::resp::{Conn, RedisUrl};
use crate::error::{Error, ErrorKind, Result};

/// What the server said about the snapshot it is sending.
#[derive(Debug, Clone)]
pub struct SyncStart {
    /// The replication id and offset the RDB corresponds to.
    pub replid: String,
    pub offset: u64,
    /// True when the server streams the RDB without writing it to its disk first.
    pub diskless: bool,
}

const MARK_LEN: usize = 40;

enum Framing {
    /// `$<length>`: this many bytes remain.
    Length(u64),
    /// `$EOF:<mark>`: the stream ends with the mark; the last `MARK_LEN` bytes read are
    /// held back until we know they are not it.
    Mark {
        mark: Vec<u8>,
        held: Vec<u8>,
        start: usize,
        found: bool,
    },
    Done,
}

/// The RDB bytes of a full resynchronisation.
pub struct RdbStream {
    r: BufReader<TcpStream>,
    framing: Framing,
    read: u64,
    who: String,
}

/// What to grant a Redis 6+ ACL user so it can take backups.
const ACL_HINT: &str =
    "the user needs the replication commands: ACL SETUSER <user> +psync +replconf +ping +info +config|get";

/// Starts a full resynchronisation; `waiting` is told when the server is preparing the
/// snapshot (it sends keep-alive newlines meanwhile).
pub fn start(url: &RedisUrl, mut waiting: impl FnMut()) -> Result<(SyncStart, RdbStream)> {
    let mut c = Conn::open(url)?;
    let who = c.describe().to_string();
    let denied = |e: Error| {
        if e.message().contains("NOPERM") {
            Error::new(ErrorKind::Source, format!("{}; {ACL_HINT}", e.message()))
        } else {
            e
        }
    };
    // We take the end-marked (diskless) form and want the RDB only, no command stream after.
    c.cmd(&["REPLCONF", "capa", "eof", "capa", "psync2"])
        .map_err(denied)?;
    // Redis before 7.0 does not know rdb-only; the transfer works without it.
    let _ = c.cmd(&["REPLCONF", "rdb-only", "1"]);
    c.send(&[b"PSYNC", b"?", b"-1"])?;
    c.flush()?;
    let reply = next_line(&mut c, &mut waiting)?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let start = match text.strip_prefix("+FULLRESYNC ") {
        Some(rest) => {
            let mut parts = rest.split_whitespace();
            let replid = parts.next().unwrap_or_default().to_string();
            let offset = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
            (replid, offset)
        }
        None if text.starts_with('-') => {
            return Err(denied(Error::new(
                ErrorKind::Source,
                format!("{who} refused the replication request: {}", &text[1..]),
            )))
        }
        None => {
            return Err(Error::new(
                ErrorKind::Source,
                format!("{who} answered PSYNC unexpectedly: {text}"),
            ))
        }
    };
    let header = next_line(&mut c, &mut waiting)?;
    let framing = match header.strip_prefix(b"$EOF:") {
        Some(mark) if mark.len() == MARK_LEN => Framing::Mark {
            mark: mark.to_vec(),
            held: Vec::new(),
            start: 0,
            found: false,
        },
        Some(_) => {
            return Err(Error::new(
                ErrorKind::Source,
                format!("{who} sent a malformed end marker"),
            ))
        }
        None => {
            let len = header
                .strip_prefix(b"$")
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Source,
                        format!(
                            "{who} sent '{}' where the snapshot should begin",
                            String::from_utf8_lossy(&header)
                        ),
                    )
                })?;
            Framing::Length(len)
        }
    };
    let diskless = matches!(framing, Framing::Mark { .. });
    Ok((
        SyncStart {
            replid: start.0,
            offset: start.1,
            diskless,
        },
        RdbStream {
            r: c.into_reader(),
            framing,
            read: 0,
            who,
        },
    ))
}

/// The next non-empty line; empty ones are the keep-alives of a server still preparing.
fn next_line(c: &mut Conn, waiting: &mut impl FnMut()) -> Result<Vec<u8>> {
    loop {
        let line = c.line()?;
        if !line.is_empty() {
            return Ok(line);
        }
        waiting();
    }
}

fn cut_short(who: &str, read: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!(
            "{who} closed the replication connection after {read} bytes, before the end of the snapshot"
        ),
    )
}

impl Read for RdbStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Done => Ok(0),
            Framing::Length(remaining) => {
                if *remaining == 0 {
                    self.framing = Framing::Done;
                    return Ok(0);
                }
                let want = out
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let n = self.r.read(&mut out[..want])?;
                if n == 0 {
                    return Err(cut_short(&self.who, self.read));
                }
                *remaining -= n as u64;
                self.read += n as u64;
                Ok(n)
            }
            Framing::Mark {
                mark,
                held,
                start,
                found,
            } => loop {
                // Everything but the last MARK_LEN bytes seen is data; the server sends
                // nothing after the mark until we answer, so the mark ends what we read.
                let data = held.len() - *start;
                if data > MARK_LEN {
                    let n = (data - MARK_LEN).min(out.len());
                    out[..n].copy_from_slice(&held[*start..*start + n]);
                    *start += n;
                    self.read += n as u64;
                    return Ok(n);
                }
                if *found {
                    self.framing = Framing::Done;
                    return Ok(0);
                }
                held.drain(..*start);
                *start = 0;
                let buf = self.r.fill_buf()?;
                if buf.is_empty() {
                    return Err(cut_short(&self.who, self.read));
                }
                let k = buf.len();
                held.extend_from_slice(buf);
                self.r.consume(k);
                *found = held.ends_with(mark);
            },
        }
    }
}
