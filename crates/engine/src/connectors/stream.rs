//! Streams: standard input, or the standard output of a command (a dump). A command that exits
//! non-zero or is killed fails the backup: a stream cut short must never become a snapshot.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::backup::{SnapshotWriter, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::items::{Item, ItemKind};
use crate::snapshot::SourceInfo;

/// The last bytes of a command's stderr kept for the error message.
const STDERR_TAIL: usize = 4096;

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

    fn item(&self) -> Item {
        let mut item = Item::new(self.filename.clone(), ItemKind::File);
        item.mode = 0o100600;
        item.mtime_ns = jiff::Timestamp::now().as_nanosecond() as i64;
        item
    }
}

impl Source for StreamSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            kind: "stream".into(),
        }
    }

    fn paths(&self) -> Vec<String> {
        match &self.input {
            StreamInput::Stdin => vec!["<stdin>".into()],
            StreamInput::Command(c) => vec![c.clone()],
        }
    }

    fn run(&mut self, w: &mut SnapshotWriter) -> Result<()> {
        let item = self.item();
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
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(ErrorKind::Source, format!("cannot start `{cmd}`")).with_source(e)
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Source, "no stdout pipe"))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Source, "no stderr pipe"))?;
    // Drain stderr on a thread so a chatty command cannot block on a full pipe.
    let stderr_thread = std::thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        String::from_utf8_lossy(&tail[tail.len().saturating_sub(STDERR_TAIL)..])
            .trim()
            .to_string()
    });
    let streamed = w.put_stream(item, stdout);
    if streamed.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::new(ErrorKind::Source, "waiting for command").with_source(e))?;
    let err_text = stderr_thread.join().unwrap_or_default();
    streamed?;
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        let detail = if err_text.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with: {err_text}")
        };
        return Err(Error::new(
            ErrorKind::Source,
            format!("command `{cmd}` {how}; the backup is discarded{detail}"),
        ));
    }
    Ok(())
}
