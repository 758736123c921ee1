//! Bulwark's engine: the repository format and everything that moves data in and out of it.
//! It knows nothing of command lines or terminals; progress leaves through a channel.

pub mod backup;
pub mod backup_set;
mod blob_stream;
pub mod buffers;
pub mod catalog;
pub mod check;
pub mod check_record;
pub mod chunker;
pub mod codec;
pub mod connectors;
pub mod copy;
pub mod crypto;
pub mod diff;
mod direct_write;
pub mod error;
pub mod filter;
pub mod id;
pub mod index;
pub mod index_cache;
pub mod item_data;
pub mod items;
pub mod lock;
pub mod maintenance;
pub mod marks;
pub mod pack;
pub mod pack_sink;
pub mod prefetch;
pub mod progress;
pub mod prune;
pub mod recovery;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod resume;
pub mod set_manifest;
pub mod snapshot;
pub mod stats;
pub mod store;

pub use error::{Error, ErrorKind, Result};
