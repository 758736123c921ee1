//! Streams: standard input, or the standard output of a command (a dump). A command that exits
//! non-zero or is killed fails the backup: a stream cut short must never become a snapshot.

use std::process::{Command, Stdio};

use crate::backup::{SnapshotWriter, Source};
use crate::connectors::files::connector::{restore_tree, tree_sandbox};
use crate::connectors::interface::Tier;
use crate::connectors::interface::{
    fields_of, ConfigError, Connector, Datastore, Health, Kind, Point, Recovery, RestoreInput,
    RestoreRequest, Restored, Section,
};
use crate::connectors::process::Child;
use crate::error::{Error, Result};
use crate::items::{Item, ItemKind};
use crate::snapshot::SourceInfo;

pub enum StreamInput {
    Stdin,
    /// Run with `sh -c`.
    Command(String),
}

pub struct StreamSource {
    name: String,
    filename: String,
    input: StreamInput,
}

impl StreamSource {
    pub fn new(name: &str, filename: &str, input: StreamInput) -> Result<Self> {
        if filename.is_empty()
            || filename.starts_with('/')
            || filename.split('/').any(|c| c == "..")
        {
            return Err(Error::invalid(format!(
                "stream file name '{filename}' must be a relative path"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            filename: filename.to_string(),
            input,
        })
    }
}

/// The item a stream is stored as: a private file stamped with the time of the backup.
pub fn stream_item(path: &str) -> Item {
    let mut item = Item::new(path, ItemKind::File);
    item.mode = 0o100600;
    item.mtime_ns = jiff::Timestamp::now().as_nanosecond() as i64;
    item
}

impl Source for StreamSource {
    fn info(&self) -> SourceInfo {
        SourceInfo::new(&self.name, crate::connectors::Kind::Stream)
    }

    fn paths(&self) -> Vec<String> {
        match &self.input {
            StreamInput::Stdin => vec!["<stdin>".into()],
            StreamInput::Command(c) => vec![c.clone()],
        }
    }

    fn run(&mut self, w: &mut SnapshotWriter) -> Result<()> {
        let item = stream_item(&self.filename);
        match &self.input {
            StreamInput::Stdin => {
                w.put_stream(item, std::io::stdin().lock())?;
            }
            StreamInput::Command(cmd) => run_command(w, item, cmd)?,
        }
        Ok(())
    }
}

fn run_command(w: &mut SnapshotWriter, item: Item, cmd: &str) -> Result<()> {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = Child::spawn(sh, format!("command `{cmd}`"))?;
    let streamed = w.put_stream(item, child.take_stdout()?);
    child
        .finish(streamed)
        .map(|_| ())
        .map_err(|e| Error::new(e.kind(), format!("{e}; the backup is discarded")))
}

/// Command sources (`kind = "command"` in bulwark.toml) and ad-hoc streams: restored as the
/// one file they hold, into a directory.
pub struct StreamConnector;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandSettings {
    /// A shell command whose standard output is backed up.
    command: String,
    /// The file name the stream is stored under (default: NAME.out).
    filename: Option<String>,
}

struct CommandDatastore {
    name: String,
    settings: CommandSettings,
}

impl Connector for StreamConnector {
    fn kind(&self) -> Kind {
        Kind::Stream
    }

    fn tier(&self) -> Tier {
        Tier::Files
    }

    fn restore_options(&self) -> &'static [&'static str] {
        fields_of::<NoOptions>()
    }

    fn config_keys(&self) -> &'static [&'static str] {
        fields_of::<CommandSettings>()
    }

    fn configure(&self, name: &str, section: &Section) -> Result<Box<dyn Datastore>, ConfigError> {
        let settings: CommandSettings = section.parse()?;
        if settings.command.trim().is_empty() {
            return Err(ConfigError::new(
                "command",
                "a command source needs `command = \"...\"`",
            ));
        }
        let filename = settings
            .filename
            .clone()
            .unwrap_or_else(|| format!("{name}.out"));
        StreamSource::new(name, &filename, StreamInput::Command(String::new()))
            .map_err(|e| ConfigError::new("filename", e.to_string()))?;
        Ok(Box::new(CommandDatastore {
            name: name.to_string(),
            settings,
        }))
    }

    fn restore(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        req.options_as::<NoOptions>(Kind::Stream)?;
        restore_tree(input, req, std::path::Path::new(req.target()?), &[], false)
    }

    fn sandbox(&self, input: &RestoreInput<'_>, req: &RestoreRequest) -> Result<Restored> {
        req.options_as::<NoOptions>(Kind::Stream)?;
        tree_sandbox(input, req, &[])
    }
}

/// A restore that takes no kind-specific options.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

impl Datastore for CommandDatastore {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Stream
    }

    /// Whether the command's program can be found (the command itself is not run).
    fn health(&self) -> Health {
        let program = self
            .settings
            .command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let found = if program.contains('/') {
            std::path::Path::new(&program).exists()
        } else {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|d| d.join(&program).is_file())
            })
        };
        let mut h = Health {
            reachable: found,
            ..Health::default()
        };
        if !found {
            h.error = Some(format!("`{program}` is not found on PATH"));
        }
        h
    }

    /// A command's output has no place of its own to go back to: the plan says so.
    fn recovery(
        &self,
        _snapshot: &crate::snapshot::Snapshot,
        _point: &Point,
        _replace: bool,
    ) -> Result<Recovery> {
        Ok(Recovery {
            method: format!(
                "by hand: its output has no place of its own; `bulwark restore --source {} --target DIR`",
                self.name
            ),
            manual: true,
            ..Recovery::default()
        })
    }

    fn source(&self) -> Result<Box<dyn Source>> {
        let filename = self
            .settings
            .filename
            .clone()
            .unwrap_or_else(|| format!("{}.out", self.name));
        Ok(Box::new(StreamSource::new(
            &self.name,
            &filename,
            StreamInput::Command(self.settings.command.clone()),
        )?))
    }
}
