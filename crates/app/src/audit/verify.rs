//! `audit verify`: each entry's MAC, the sequence, the links between entries, and the seal in
//! the repository against the log's end. Every finding names the entry and line concerned.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Entry, Seal};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A line that is not an entry at all.
    Unreadable { line: usize },
    /// The entry's content does not match its MAC.
    Edited { seq: u64, line: usize },
    /// Entries `from..=to` are not in the log.
    Deleted { from: u64, to: u64 },
    /// The entry comes after one with a higher number (moved, or written twice).
    Reordered { seq: u64, line: usize, after: u64 },
    /// A genuine entry that does not follow the one numbered before it (taken from another log).
    Unlinked { seq: u64, line: usize },
    /// The repository's seal names an entry past the log's end.
    Truncated { sealed: u64, last: u64 },
    /// The sealed entry is in the log but differs from what was sealed.
    Rewritten { seq: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreadable { line } => write!(f, "line {line} is not an audit entry (edited or damaged)"),
            Problem::Edited { seq, line } => write!(f, "entry {seq} (line {line}) was edited: its content does not match its MAC"),
            Problem::Deleted { from, to } if from == to => write!(f, "entry {from} was deleted"),
            Problem::Deleted { from, to } => write!(f, "entries {from} to {to} were deleted"),
            Problem::Reordered { seq, line, after } => write!(f, "entry {seq} (line {line}) is out of order: it comes after entry {after}"),
            Problem::Unlinked { seq, line } => write!(f, "entry {seq} (line {line}) does not follow entry {}: it was taken from elsewhere", seq - 1),
            Problem::Truncated { sealed, last } => write!(f, "the log was truncated: the repository's seal names entry {sealed}, the log ends at entry {last}"),
            Problem::Rewritten { seq } => write!(f, "entry {seq} differs from the one sealed into the repository: the log was rewritten"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub entries: usize,
    pub last: u64,
    pub sealed: Option<Seal>,
    pub problems: Vec<Problem>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the lines of a log against `key` and the repository's `seal`.
pub fn verify(lines: &[String], key: &[u8; 32], seal: Option<Seal>) -> Verdict {
    let mut problems = Vec::new();
    // (line number, entry) in file order, for those that parse.
    let mut entries: Vec<(usize, Entry)> = Vec::new();
    for (i, text) in lines.iter().enumerate() {
        match serde_json::from_str::<Entry>(text) {
            Ok(e) => entries.push((i + 1, e)),
            Err(_) => problems.push(Problem::Unreadable { line: i + 1 }),
        }
    }
    let genuine: BTreeMap<u64, &Entry> = entries
        .iter()
        .filter(|(_, e)| e.body.mac(key) == e.mac)
        .map(|(_, e)| (e.body.seq, e))
        .collect();
    let mut highest = 0;
    for (line, e) in &entries {
        let seq = e.body.seq;
        if genuine.get(&seq).is_none_or(|g| g.mac != e.mac) {
            problems.push(Problem::Edited { seq, line: *line });
        } else if seq <= highest {
            problems.push(Problem::Reordered {
                seq,
                line: *line,
                after: highest,
            });
        } else {
            let expected_prev = if seq == 1 {
                Some(String::new())
            } else {
                genuine.get(&(seq - 1)).map(|p| p.mac.clone())
            };
            if expected_prev.is_some_and(|p| p != e.body.prev) {
                problems.push(Problem::Unlinked { seq, line: *line });
            }
        }
        highest = highest.max(seq);
    }
    let present: BTreeSet<u64> = entries.iter().map(|(_, e)| e.body.seq).collect();
    let mut missing = (1..=highest).filter(|s| !present.contains(s)).peekable();
    while let Some(from) = missing.next() {
        let mut to = from;
        while missing.peek() == Some(&(to + 1)) {
            to = missing.next().unwrap_or(to);
        }
        problems.push(Problem::Deleted { from, to });
    }
    if let Some(s) = &seal {
        if s.seq > highest {
            problems.push(Problem::Truncated {
                sealed: s.seq,
                last: highest,
            });
        } else if genuine.get(&s.seq).is_none_or(|e| e.mac != s.mac) {
            problems.push(Problem::Rewritten { seq: s.seq });
        }
    }
    Verdict {
        entries: entries.len(),
        last: highest,
        sealed: seal,
        problems,
    }
}
