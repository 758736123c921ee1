//! Progress is one channel of events; the CLI draws bars from it, the daemon forwards it.

use crossbeam_channel::Sender;

#[derive(Debug, Clone)]
pub enum Progress {
    /// A new phase of work (e.g. "loading index", "uploading").
    Phase(String),
    /// Work on an item started.
    Item(String),
    /// Bytes read from a source or restored to a target.
    Bytes(u64),
    /// A total that is known in advance (restore, check).
    Total { items: u64, bytes: u64 },
    /// Something the user should see but that does not stop the operation.
    Warning { path: String, message: String },
}

/// Sends progress events if someone listens; never blocks and never fails.
#[derive(Clone, Default)]
pub struct Reporter(Option<Sender<Progress>>);

impl Reporter {
    pub fn new(tx: Sender<Progress>) -> Self {
        Self(Some(tx))
    }

    pub fn none() -> Self {
        Self(None)
    }

    pub fn send(&self, p: Progress) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(p);
        }
    }
}
