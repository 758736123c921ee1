//! Throwaways: the servers, directories and collections a sandbox restore creates. Each one is
//! registered while it lives, so that an interrupted process removes it too (the application's
//! signal handler calls [`remove_all`]); on every other path dropping its guard removes it.
//! This is process-wide state on purpose: a signal arrives for the process, not for a call.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Cleanup = Box<dyn FnOnce() + Send>;

static LIVE: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Something throwaway that exists while this guard does.
#[must_use = "the throwaway is removed when the guard is dropped"]
pub struct Throwaway {
    id: u64,
    /// A directory to remove once more when the guard goes: an interrupt's removal can race
    /// with restore threads that recreate entries, and the guard goes after they are done.
    dir: Option<PathBuf>,
}

impl Throwaway {
    pub fn new(cleanup: impl FnOnce() + Send + 'static) -> Self {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        live().push((id, Box::new(cleanup)));
        Self { id, dir: None }
    }

    /// A directory, removed with everything in it. On an interrupt the restore's threads
    /// may still be creating entries while it goes, so removal is retried until it holds,
    /// and tried again when the guard is dropped.
    pub fn dir(path: &Path) -> Self {
        let path: PathBuf = path.to_path_buf();
        let again = path.clone();
        let mut guard = Self::new(move || {
            // Gone means gone and still gone a moment later: a writer thread between its
            // check and its create can bring a directory back once.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::fs::remove_dir_all(&path).is_err() && path.exists() {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                std::thread::sleep(Duration::from_millis(50));
                if !path.exists() {
                    break;
                }
            }
        });
        guard.dir = Some(again);
        guard
    }

    /// A child process we started: asked to stop (SIGTERM), killed if it has not within
    /// 10 s. Never signals a pid that is no longer our running child.
    pub fn process(pid: u32) -> Self {
        Self::new(move || stop_process(pid))
    }
}

impl Throwaway {
    /// Forgets the throwaway without removing it: its owner has removed it already (a
    /// process reaped by its owner must not be signalled again: its pid may be reused).
    pub fn disarm(self) {
        drop(self.take());
        std::mem::forget(self);
    }

    fn take(&self) -> Option<Cleanup> {
        let mut live = live();
        live.iter()
            .position(|(id, _)| *id == self.id)
            .map(|i| live.remove(i).1)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Some(cleanup) = self.take() {
            cleanup();
        }
        if let Some(dir) = self.dir.as_ref().filter(|d| d.exists()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The process was told to stop (Ctrl-C, SIGTERM): every throwaway alive is removed, and
/// work that checks [`interrupted`] stops before starting more. Returns how many there were.
pub fn interrupt() -> usize {
    INTERRUPTED.store(true, Ordering::SeqCst);
    remove_all()
}

/// True once [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Removes every throwaway still alive, newest first (a server before its directory).
/// Returns how many there were.
fn remove_all() -> usize {
    let all: Vec<(u64, Cleanup)> = std::mem::take(&mut *live());
    let n = all.len();
    for (_, cleanup) in all.into_iter().rev() {
        cleanup();
    }
    n
}

fn live() -> std::sync::MutexGuard<'static, Vec<(u64, Cleanup)>> {
    // A cleanup that panicked cannot leave the list inconsistent: entries are removed
    // before they run.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn stop_process(pid: u32) {
    let pid = pid as libc::pid_t;
    // Only a child of ours that is still running is signalled: once reaped (by us or its
    // owner), its pid may already belong to another process.
    if !running_child(pid) {
        return;
    }
    // SAFETY: kill(2) on our own running, unreaped child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !running_child(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above: still our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: waits for our own child, which SIGKILL ends.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// True while `pid` is a child of ours that has not exited; reaps it if it has.
fn running_child(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: WNOHANG never blocks; for a pid that is not our child it fails (ECHILD).
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_and_interrupted_throwaways_are_removed() {
        let base = tempfile::tempdir().expect("tempdir");
        let (a, b) = (base.path().join("a"), base.path().join("b"));
        std::fs::create_dir(&a).expect("a");
        std::fs::create_dir(&b).expect("b");
        let guard_a = Throwaway::dir(&a);
        let guard_b = Throwaway::dir(&b);
        drop(guard_a);
        assert!(!a.exists());
        assert!(b.exists());
        assert!(remove_all() >= 1);
        assert!(!b.exists());
        drop(guard_b);
    }
}
