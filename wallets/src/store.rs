//! Opening the sled databases that hold an agent's state.
//!
//! sled takes an exclusive file lock on its database. When a database is dropped, a
//! background flusher thread may hold it for a few milliseconds more, so a restart in
//! the same process (a supervisor restarting an agent, a test reopening a store) can
//! find the lock still taken. [`open`] waits for such a lock for a bounded time instead
//! of failing at once; a lock held longer (another process owns the database) is still
//! reported as an error.
//!
//! [`AtomicWriter`] writes several keys (in one or several trees of a database) all
//! or none across a crash, without sled's batches and transactions: each of those
//! rolls sled's I/O buffer twice, which is two writes to disk, each synced on a sled
//! thread, for every batch. An agent that writes a few keys per message paid for
//! four to six disk writes per deal that way.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
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

/// The tree that holds an [`AtomicWriter`]'s pending write.
const INTENTS: &[u8] = b"__agora_atomic_intents";
/// The key of the pending write in [`INTENTS`].
const PENDING: &[u8] = b"pending";
/// The first byte of an encoded intent: its format.
const INTENT_FORMAT: u8 = 1;

/// One key to set or remove, for [`AtomicWriter::write`].
#[derive(Debug)]
pub struct Write<'a> {
    /// The tree of the key.
    pub tree: &'a sled::Tree,
    /// The key.
    pub key: Vec<u8>,
    /// The new value; `None` removes the key.
    pub value: Option<Vec<u8>>,
}

impl<'a> Write<'a> {
    /// Sets `key` to `value` in `tree`.
    pub fn set(tree: &'a sled::Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            tree,
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// All-or-nothing writes of several keys of one sled database.
///
/// A write of more than one key first records all of it as an intent under one key,
/// then applies it key by key, then removes the intent. sled recovers a prefix of its
/// log after a crash, so whenever any part of the write survived, the intent did too,
/// and [`AtomicWriter::open`] applies it again. Writes are serialized by a lock, so
/// at most one intent is ever pending, and every write to a tree that takes part in
/// atomic writes must go through the writer (single keys too): otherwise replaying
/// an intent after a crash could undo a later write to the same key.
///
/// Nothing here waits for the disk; flush the database to make writes durable.
#[derive(Debug)]
pub struct AtomicWriter {
    intents: sled::Tree,
    lock: Mutex<()>,
}

impl AtomicWriter {
    /// Opens the writer of `db` (opened from `path`), first applying a write that a
    /// crash interrupted (and flushing it).
    ///
    /// # Errors
    /// The sled error; [`sled::Error::Unsupported`] when a pending write cannot be
    /// read back.
    pub fn open(db: &sled::Db, path: &Path) -> sled::Result<Self> {
        let intents = db.open_tree(INTENTS)?;
        if let Some(pending) = intents.get(PENDING)? {
            let writes = decode_intent(&pending).ok_or_else(|| {
                sled::Error::Unsupported(format!(
                    "the pending atomic write of the database at {} is unreadable (format {:?})",
                    path.display(),
                    pending.first()
                ))
            })?;
            for (tree, key, value) in writes {
                let tree = db.open_tree(tree)?;
                match value {
                    Some(v) => tree.insert(key, v)?,
                    None => tree.remove(key)?,
                };
            }
            intents.remove(PENDING)?;
            db.flush()?;
            tracing::warn!(target: "wallet::store", path = %path.display(),
                "applied an atomic write that a crash had interrupted");
        }
        Ok(Self {
            intents,
            lock: Mutex::new(()),
        })
    }

    /// Writes every key of `writes`, all or none should the process die during the
    /// call, and in order with every other write through this writer.
    ///
    /// # Errors
    /// The sled error; after one, the write may be partly applied in memory (sled
    /// failed), and the intent replays it at the next open.
    pub fn write(&self, writes: &[Write<'_>]) -> sled::Result<()> {
        let _serial = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let [w] = writes {
            return apply(w);
        }
        self.intents.insert(PENDING, encode_intent(writes))?;
        for w in writes {
            apply(w)?;
        }
        self.intents.remove(PENDING)?;
        Ok(())
    }
}

fn apply(w: &Write<'_>) -> sled::Result<()> {
    match &w.value {
        Some(v) => w.tree.insert(w.key.as_slice(), v.as_slice()).map(drop),
        None => w.tree.remove(w.key.as_slice()).map(drop),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys, values and tree names of an agent's stores are far below 4 GiB.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// `[format] ([tree][key][0 | 1 value])*`, each field length-prefixed.
fn encode_intent(writes: &[Write<'_>]) -> Vec<u8> {
    let size: usize = writes
        .iter()
        .map(|w| 16 + w.key.len() + w.value.as_ref().map_or(0, Vec::len) + w.tree.name().len())
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(INTENT_FORMAT);
    for w in writes {
        put_bytes(&mut out, &w.tree.name());
        put_bytes(&mut out, &w.key);
        match &w.value {
            Some(v) => {
                out.push(1);
                put_bytes(&mut out, v);
            }
            None => out.push(0),
        }
    }
    out
}

type Decoded = Vec<(Vec<u8>, Vec<u8>, Option<Vec<u8>>)>;

fn decode_intent(bytes: &[u8]) -> Option<Decoded> {
    fn take<'b>(rest: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    fn field(rest: &mut &[u8]) -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(take(rest, 4)?.try_into().ok()?);
        take(rest, usize::try_from(len).ok()?).map(<[u8]>::to_vec)
    }
    let (&format, mut rest) = bytes.split_first()?;
    if format != INTENT_FORMAT {
        return None;
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let tree = field(&mut rest)?;
        let key = field(&mut rest)?;
        let value = match take(&mut rest, 1)? {
            [1] => Some(field(&mut rest)?),
            [0] => None,
            _ => return None,
        };
        out.push((tree, key, value));
    }
    Some(out)
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

    #[test]
    fn an_interrupted_write_is_applied_at_open_and_removals_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = open(&path).unwrap();
            let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
            a.insert("gone", "old").unwrap();
            // What a crash after the intent and before its keys leaves behind.
            let writes = [
                Write::set(&a, "k", "1"),
                Write::set(&b, "k", vec![2; 3]),
                Write {
                    tree: &a,
                    key: b"gone".to_vec(),
                    value: None,
                },
            ];
            db.open_tree(INTENTS)
                .unwrap()
                .insert(PENDING, encode_intent(&writes))
                .unwrap();
            db.flush().unwrap();
        }
        let db = open(&path).unwrap();
        let writer = AtomicWriter::open(&db, &path).unwrap();
        let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
        assert_eq!(a.get("k").unwrap().unwrap().as_ref(), b"1");
        assert_eq!(b.get("k").unwrap().unwrap().as_ref(), &[2, 2, 2]);
        assert!(a.get("gone").unwrap().is_none());
        assert!(db.open_tree(INTENTS).unwrap().is_empty());
        // And the writer goes on writing.
        writer
            .write(&[Write::set(&a, "k", "3"), Write::set(&b, "k", "4")])
            .unwrap();
        assert_eq!(a.get("k").unwrap().unwrap().as_ref(), b"3");
        assert!(db.open_tree(INTENTS).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_intent_is_an_error_naming_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = open(&path).unwrap();
        let a = db.open_tree("a").unwrap();
        let mut bytes = encode_intent(&[Write::set(&a, "k", "v")]);
        bytes.truncate(bytes.len() - 1);
        db.open_tree(INTENTS)
            .unwrap()
            .insert(PENDING, bytes)
            .unwrap();
        let err = AtomicWriter::open(&db, &path).unwrap_err().to_string();
        assert!(
            err.contains("pending atomic write") && err.contains(&path.display().to_string()),
            "{err}"
        );
        db.open_tree(INTENTS)
            .unwrap()
            .insert(PENDING, vec![9, 0])
            .unwrap();
        let err = AtomicWriter::open(&db, &path).unwrap_err().to_string();
        assert!(err.contains("format Some(9)"), "{err}");
    }
}
