//! Child processes that produce or consume data (dump tools, shell commands). Their stderr is
//! drained on a thread so a chatty tool never blocks on a full pipe, and its tail goes into the
//! error message. A non-zero exit or a signal is always an error: a dump cut short must never
//! pass for a complete one.

use std::io::Read;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::error::{Error, ErrorKind, Result};

/// The last bytes of a tool's stderr kept for the error message.
const STDERR_TAIL: usize = 4096;

pub struct Child {
    child: std::process::Child,
    what: String,
    stderr: Option<JoinHandle<String>>,
    waited: bool,
}

impl Child {
    /// Starts `cmd` with stderr captured; `what` names it in errors ("pg_dump of app").
    pub fn spawn(mut cmd: Command, what: impl Into<String>) -> Result<Self> {
        let what = what.into();
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::new(
                ErrorKind::Source,
                format!("cannot start {program} ({what})"),
            )
            .with_source(e)
        })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut tail: Vec<u8> = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
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
            })
        });
        Ok(Self {
            child,
            what,
            stderr,
            waited: false,
        })
    }

    pub fn take_stdout(&mut self) -> Result<ChildStdout> {
        self.child
            .stdout
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Source, format!("{}: no stdout pipe", self.what)))
    }

    pub fn take_stdin(&mut self) -> Result<ChildStdin> {
        self.child
            .stdin
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Source, format!("{}: no stdin pipe", self.what)))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// The process id, valid until the child is waited for.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Ends a child whose output `read` consumed: kills it if the read failed, waits, and
    /// reports every failure. When both sides failed neither error is dropped: which one
    /// caused the other (a storage error breaking the pipe, or a dying tool truncating the
    /// stream) cannot be told from here.
    pub fn finish<T>(mut self, read: Result<T>) -> Result<T> {
        if read.is_err() {
            self.kill();
        }
        match (read, self.wait()) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(theirs)) => Err(theirs),
            (Err(ours), Ok(())) => Err(ours),
            (Err(ours), Err(theirs)) => Err(Error::new(ours.kind(), format!("{ours}; {theirs}"))),
        }
    }

    /// Waits for the exit; anything but status 0 is an error that quotes stderr's tail.
    pub fn wait(self) -> Result<()> {
        self.wait_with_stderr().map(|_| ())
    }

    /// Like `wait`, and on success returns the tail of stderr (for tools that report problems
    /// there but exit 0).
    pub fn wait_with_stderr(mut self) -> Result<String> {
        self.waited = true;
        let status = self.child.wait().map_err(|e| {
            Error::new(ErrorKind::Source, format!("waiting for {}", self.what)).with_source(e)
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(stderr);
        }
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => match std::os::unix::process::ExitStatusExt::signal(&status) {
                Some(sig) => format!("was killed by a signal ({sig})"),
                None => "was killed by a signal".to_string(),
            },
        };
        let detail = if stderr.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with: {stderr}")
        };
        Err(Error::new(
            ErrorKind::Source,
            format!("{} {how}{detail}", self.what),
        ))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // An error path dropped us mid-stream: do not leave the tool running.
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion and returns its stdout.
pub fn output(mut cmd: Command, what: impl Into<String>) -> Result<String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = Child::spawn(cmd, what)?;
    let mut out = String::new();
    let read = child.take_stdout()?.read_to_string(&mut out);
    child.wait()?;
    read.map_err(|e| Error::new(ErrorKind::Source, "reading a tool's output").with_source(e))?;
    Ok(out)
}
