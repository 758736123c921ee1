//! The engine's one error type: a kind the CLI maps to an exit code, a message, the context it
//! happened in (repository path, item, pack) and whether retrying may help.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No key in the repository opens with the given password.
    WrongPassword,
    /// There is no repository at the given location.
    NoRepository,
    /// The object asked for (snapshot, key, file) does not exist.
    NotFound,
    /// Something already exists where we were asked to create it.
    AlreadyExists,
    /// Another process holds a conflicting lock.
    Locked,
    /// Repository data failed authentication, decoding or a hash check.
    Corrupt,
    /// The storage backend failed (network, permissions, quota).
    Storage,
    /// Local I/O failed (reading a source, writing a restore target).
    Io,
    /// The caller asked for something invalid (bad flag value, unknown snapshot).
    InvalidInput,
    /// A source (dump command, stream) failed while producing data.
    Source,
    /// The repository was written by a format version this build does not read.
    Unsupported,
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<String>,
    retryable: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            context: Vec::new(),
            retryable: false,
            source: None,
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Adds what we were doing when this happened; the outermost context is printed first.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context.push(context.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error for another reader: kind and whole text (context and cause included).
    pub fn duplicate(&self) -> Self {
        Self {
            kind: self.kind,
            message: self.to_string(),
            context: Vec::new(),
            retryable: self.retryable,
            source: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ctx in self.context.iter().rev() {
            write!(f, "{ctx}: ")?;
        }
        f.write_str(&self.message)?;
        // The whole cause chain, so the root cause ("Connection refused") is never lost, but
        // each distinct message once: libraries often repeat their source in their own text.
        let mut shown = String::new();
        let mut cause = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            let text = c.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown.push_str(&text);
            }
            cause = c.source();
        }
        Ok(())
    }
}

/// The cause is already part of `Display`; not exposing it as `source()` keeps error chains
/// printed by the CLI from repeating it.
impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let retryable = matches!(
            e.kind(),
            std::io::ErrorKind::Interrupted
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::WouldBlock
        );
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        Error::new(kind, "I/O error")
            .with_source(e)
            .retryable(retryable)
    }
}

impl From<opendal::Error> for Error {
    fn from(e: opendal::Error) -> Self {
        let kind = match e.kind() {
            opendal::ErrorKind::NotFound => ErrorKind::NotFound,
            opendal::ErrorKind::AlreadyExists | opendal::ErrorKind::ConditionNotMatch => {
                ErrorKind::AlreadyExists
            }
            _ => ErrorKind::Storage,
        };
        let retryable = e.is_temporary();
        Error::new(kind, "storage error")
            .with_source(e)
            .retryable(retryable)
    }
}

/// Adds context to any result whose error converts into ours.
pub trait ResultExt<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}
