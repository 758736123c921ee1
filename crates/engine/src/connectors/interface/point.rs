//! Which state of a source a restore brings back: the newest, a backup set's, or a moment's.

use super::parse_time;

/// Which state of each source a drill or a recovery brings back.
#[derive(Debug, Clone)]
pub enum Point {
    /// The newest: what a failure now would recover.
    Latest,
    /// The snapshots of one backup set (an id prefix).
    Set(String),
    /// The newest state at or before this moment (PostgreSQL with WAL: exactly this moment).
    Time { at: jiff::Timestamp, text: String },
}

impl Point {
    /// The point a command line asks for: a set, a time (with offset), or the newest.
    pub fn from_args(set: Option<&str>, time: Option<&str>) -> crate::error::Result<Self> {
        Ok(match (set, time) {
            (Some(set), _) => Point::Set(set.to_string()),
            (None, Some(t)) => Point::Time {
                at: parse_time(t)?,
                text: t.to_string(),
            },
            (None, None) => Point::Latest,
        })
    }

    /// True unless a set was named: the restore starts from the newest snapshot that holds
    /// the point, and may pick another base itself (a PITR to a time).
    pub fn latest(&self) -> bool {
        !matches!(self, Point::Set(_))
    }

    /// For messages and records.
    pub fn describe(&self) -> String {
        match self {
            Point::Latest => "the newest state".into(),
            Point::Set(s) => format!("backup set {s}"),
            Point::Time { text, .. } => format!("the state at {text}"),
        }
    }
}
