//! One module per kind of datastore, each holding both directions (backup and restore).

pub mod config;
pub mod files;
pub mod interface;
pub mod postgres;
pub mod process;
pub mod qdrant;
pub mod redis;
pub mod registry;
pub mod sandbox;
pub mod sqlite;
pub mod stream;

pub use interface::{Connector, Datastore};
pub use registry::Kind;

/// A loopback port nothing listens on right now, for servers we start (restores, sandboxes).
pub fn free_port() -> crate::error::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The receiving end of a channel of byte buffers, as a reader: for data produced on another
/// thread (a tee of a stream, pages fetched ahead). A closed channel is the end of the data, so
/// the producer's own result must still be checked.
pub struct ChannelReader {
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: crossbeam_channel::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Passes bytes through while sending a copy down a channel (to a [`ChannelReader`] on another
/// thread) and counting them; a receiver that has gone away stops the copying, not the reading.
pub struct Tee<'a, R> {
    inner: R,
    tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
    bytes: &'a mut u64,
}

impl<'a, R> Tee<'a, R> {
    pub fn new(inner: R, tx: crossbeam_channel::Sender<Vec<u8>>, bytes: &'a mut u64) -> Self {
        Self {
            inner,
            tx: Some(tx),
            bytes,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Tee<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        *self.bytes += n as u64;
        if n == 0 {
            self.tx = None;
        } else if let Some(tx) = &self.tx {
            if tx.send(out[..n].to_vec()).is_err() {
                self.tx = None;
            }
        }
        Ok(n)
    }
}
