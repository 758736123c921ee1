//! One module per kind of datastore, each holding both directions (backup and restore).

pub mod config;
pub mod files;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod stream;
