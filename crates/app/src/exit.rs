//! Exit codes (documented in the README) and how errors are shown.

use std::process::ExitCode;

use engine::ErrorKind;

pub const OK: u8 = 0;
pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const WRONG_PASSWORD: u8 = 3;
pub const PARTIAL: u8 = 4;
pub const NO_REPOSITORY: u8 = 5;
pub const DAMAGED: u8 = 6;
pub const MISMATCH: u8 = 7;
/// `assess`: the stack is degraded (a target missed, a warning).
pub const DEGRADED: u8 = 8;
/// `assess`: the stack is critical (a source unreachable or never backed up, the repository
/// unreadable, a recovery point twice its RPO old).
pub const CRITICAL: u8 = 9;
pub const LOCKED: u8 = 10;
/// `wal-fetch` only: PostgreSQL takes any restore_command status up to 125 for "not in the
/// archive" and ends recovery there as if the WAL had ended; above 125 it aborts recovery.
pub const ABORT_RECOVERY: u8 = 128;

/// What a successful command run amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Finished, but some items failed; details were printed.
    Partial,
    /// Finished, and found damaged or missing data.
    Damaged,
    /// Restored, but the data does not match the figures recorded at backup time.
    Mismatch,
    /// Finished, and what it checked is failing (a source that cannot be reached).
    Failed,
    Degraded,
    Critical,
    /// Stopped by Ctrl-C or SIGTERM after cleaning up.
    Interrupted,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        ExitCode::from(match s {
            Status::Ok => OK,
            Status::Partial => PARTIAL,
            Status::Damaged => DAMAGED,
            Status::Mismatch => MISMATCH,
            Status::Failed => FAILED,
            Status::Degraded => DEGRADED,
            Status::Critical => CRITICAL,
            Status::Interrupted => INTERRUPTED,
        })
    }
}

/// An error that is only its message, told apart from others by its type.
macro_rules! message_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::error::Error for $name {}
    };
}

message_error!(
    /// A usage error found after argument parsing (bad combination, bad value).
    Usage
);
message_error!(
    /// `wal-fetch`: the file is not in the archive (the normal end of recovery).
    NotArchived
);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

fn code_for(err: &anyhow::Error) -> (u8, Option<&'static str>) {
    if err.downcast_ref::<Usage>().is_some() {
        return (USAGE, None);
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<engine::Error>() {
            return match e.kind() {
                ErrorKind::WrongPassword => (
                    WRONG_PASSWORD,
                    Some("check BULWARK_PASSWORD / BULWARK_PASSWORD_FILE"),
                ),
                ErrorKind::Locked => (LOCKED, None),
                ErrorKind::NoRepository => (
                    NO_REPOSITORY,
                    Some("create it with `bulwark init`, or check --repo"),
                ),
                ErrorKind::InvalidInput => (USAGE, None),
                ErrorKind::Corrupt => (
                    DAMAGED,
                    Some("run `bulwark check --read-data` to see what is affected"),
                ),
                _ => (FAILED, None),
            };
        }
    }
    (FAILED, None)
}

pub fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    let (code, hint) = code_for(err);
    show(err, json, code, hint)
}

/// Errors of `wal-fetch`, which runs as PostgreSQL's restore_command: a file truly absent is
/// exit 1; anything else (damaged, unreadable, a gap, the repository unreachable, bad
/// configuration) must not pass for the end of the WAL, so it aborts recovery.
pub fn report_restore_command(err: &anyhow::Error, json: bool) -> ExitCode {
    if err.downcast_ref::<NotArchived>().is_some() {
        return show(err, json, FAILED, None);
    }
    show(
        err,
        json,
        ABORT_RECOVERY,
        Some("recovery was aborted rather than ended early; fix the cause and start the server again to resume"),
    )
}

fn show(err: &anyhow::Error, json: bool, code: u8, hint: Option<&str>) -> ExitCode {
    let message = format!("{err:#}");
    // A message that already names what to run knows better than the generic hint.
    let hint = hint.filter(|_| !message.contains("`bulwark "));
    if json {
        let v = serde_json::json!({ "error": message, "exit_code": code, "hint": hint });
        println!("{v}");
    }
    match hint {
        Some(h) => eprintln!("error: {message} (exit {code}). Hint: {h}"),
        None => eprintln!("error: {message} (exit {code})"),
    }
    ExitCode::from(code)
}

/// Exit status after Ctrl-C or SIGTERM.
pub const INTERRUPTED: u8 = 130;

/// From here on a Ctrl-C or SIGTERM first removes what sandboxes this process created (a
/// server, its directory, drill collections), then exits 130 after `grace`: the time the
/// command gets to finish on its own (a drill writes its record as interrupted and exits 130
/// itself). Only commands that create sandboxes set it: wal-fetch must keep the default,
/// which PostgreSQL tells apart from failure.
pub fn remove_sandboxes_on_interrupt(grace: std::time::Duration) {
    remove_sandboxes_on_interrupt_then(grace, || {});
}

/// As `remove_sandboxes_on_interrupt`, and when the grace runs out with the command still
/// busy, `last_words` runs before the exit (a recovery writes its record as interrupted).
pub fn remove_sandboxes_on_interrupt_then(
    grace: std::time::Duration,
    last_words: impl Fn() + Send + 'static,
) {
    let _ = ctrlc::set_handler(move || {
        let removed = engine::connectors::sandbox::interrupt();
        eprintln!("interrupted: removed {removed} sandbox resource(s)");
        std::thread::sleep(grace);
        last_words();
        std::process::exit(INTERRUPTED.into());
    });
}
