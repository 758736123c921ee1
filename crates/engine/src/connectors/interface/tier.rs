//! Where a datastore comes in a recovery of the whole stack.

use serde::Serialize;

/// The part of an AI platform a datastore holds, in the order a full recovery brings them
/// back: the databases everything else refers to first, then the application state in caches,
/// then vectors (rebuildable, but slow to rebuild), then files and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Database,
    Cache,
    Vectors,
    Files,
    Config,
}

impl Tier {
    /// A source's recovery priority when the config sets none (lower comes first).
    pub fn default_priority(self) -> u32 {
        match self {
            Tier::Database => 10,
            Tier::Cache => 20,
            Tier::Vectors => 30,
            Tier::Files => 40,
            Tier::Config => 50,
        }
    }
}
