//! One module per kind of datastore, each holding both directions (backup and restore).

pub mod config;
pub mod files;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod stream;

/// A loopback port nothing listens on right now, for servers we start (restores, sandboxes).
pub fn free_port() -> crate::error::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
