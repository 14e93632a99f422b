//! Opening the sled databases that hold an agent's state.
//!
//! sled takes an exclusive file lock on its database. When a database is dropped, a
//! background flusher thread may hold it for a few milliseconds more, so a restart in
//! the same process (a supervisor restarting an agent, a test reopening a store) can
//! find the lock still taken. [`open`] waits for such a lock for a bounded time instead
//! of failing at once; a lock held longer (another process owns the database) is still
//! reported as an error.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long [`open`] waits for a lock held by a database being closed.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens (or creates) the sled database at `path`, waiting up to [`LOCK_WAIT`] for a
/// lock that is being released.
///
/// # Errors
/// The sled error when the database cannot be opened, including a lock still held
/// after [`LOCK_WAIT`].
pub fn open(path: &Path) -> sled::Result<sled::Db> {
    open_waiting(path, LOCK_WAIT)
}

/// [`open`] with a chosen wait for the lock.
///
/// # Errors
/// As [`open`], with `wait` in place of [`LOCK_WAIT`].
pub fn open_waiting(path: &Path, wait: Duration) -> sled::Result<sled::Db> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if is_lock_contention(&e) && started.elapsed() < wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn is_lock_contention(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.raw_os_error() == Some(11)
        || e.to_string().contains("could not acquire lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_right_after_drop_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        for i in 0u32..50 {
            let db = open(&path).unwrap();
            db.insert(i.to_be_bytes(), &[1]).unwrap();
            drop(db);
        }
        let db = open(&path).unwrap();
        assert_eq!(db.len(), 50);
    }

    #[test]
    fn a_lock_held_elsewhere_is_still_an_error_after_the_wait() {
        // Two handles in one process share sled's lock only through the same Db, so
        // a second open while the first is alive must time out and fail.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _held = open(&path).unwrap();
        let started = Instant::now();
        let wait = Duration::from_millis(300);
        let err = open_waiting(&path, wait).unwrap_err();
        assert!(started.elapsed() >= wait);
        assert!(err.to_string().contains("lock"), "{err}");
    }
}
