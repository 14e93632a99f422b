//! Persisted agent state: one sled database per host, keys prefixed by agent.
//!
//! What survives a crash: the last sequence accepted from each remote sender in
//! each dialogue (so replays stay rejected after a restart) and each dialogue's
//! state as its skill saved it. Writes that a decision depends on are flushed before
//! the decision is acted on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wallets::store::{AtomicWriter, Write};
use wallets::{Address, B256};

use crate::error::{Error, Result};

/// The host's database.
#[derive(Clone, Debug)]
pub struct HostStore {
    path: PathBuf,
    replay: sled::Tree,
    dialogues: sled::Tree,
    /// Every write to `dialogues` goes through it: several dialogues at once are
    /// written all or none.
    writer: Arc<AtomicWriter>,
    commits: Arc<GroupCommit>,
}

/// Group commit: every caller of [`HostStore::flush`] waits for one flush that
/// started after its call, and all callers waiting at the same time share that one
/// flush. A flood of messages costs one fsync per round, not one per message.
#[derive(Debug)]
struct GroupCommit {
    state: Mutex<CommitState>,
    wake: Condvar,
    done: tokio::sync::watch::Sender<(u64, Option<String>)>,
}

#[derive(Debug, Default)]
struct CommitState {
    requested: u64,
}

impl GroupCommit {
    fn new() -> Self {
        Self {
            state: Mutex::new(CommitState::default()),
            wake: Condvar::new(),
            done: tokio::sync::watch::channel((0, None)).0,
        }
    }

    /// The flusher thread: flushes while there are requests newer than the last
    /// completed round; ends once the store is dropped.
    fn start(self: &Arc<Self>, db: &sled::Db) {
        let weak = Arc::downgrade(self);
        let db = db.clone();
        let spawned = std::thread::Builder::new()
            .name("agora-store-flush".into())
            .spawn(move || loop {
                let Some(me) = weak.upgrade() else { return };
                let target = {
                    let mut st = me.state.lock().unwrap_or_else(PoisonError::into_inner);
                    loop {
                        if st.requested > me.done.borrow().0 {
                            break Some(st.requested);
                        }
                        let (guard, waited) = me
                            .wake
                            .wait_timeout(st, std::time::Duration::from_millis(200))
                            .unwrap_or_else(PoisonError::into_inner);
                        st = guard;
                        if waited.timed_out() && st.requested <= me.done.borrow().0 {
                            // Idle: let go of the store to see whether it was dropped.
                            break None;
                        }
                    }
                };
                if let Some(target) = target {
                    let error = db.flush().err().map(|e| e.to_string());
                    me.done.send_replace((target, error));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(target: "agent::store", error = %e, "cannot start the flush thread");
        }
    }
}

impl HostStore {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`Error::Store`] when sled cannot open it (for example another process
    /// holds it).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let err = |source| Error::Store {
            path: path.clone(),
            source,
        };
        let db = wallets::store::open(&path).map_err(err)?;
        let replay = db.open_tree("replay").map_err(err)?;
        let dialogues = db.open_tree("dialogues").map_err(err)?;
        let writer = Arc::new(AtomicWriter::open(&db, &path).map_err(err)?);
        let commits = Arc::new(GroupCommit::new());
        commits.start(&db);
        Ok(Self {
            path,
            replay,
            dialogues,
            writer,
            commits,
        })
    }

    /// The store of one agent.
    pub fn agent(&self, agent: Address) -> AgentStore {
        AgentStore {
            host: self.clone(),
            agent,
        }
    }

    fn err(&self, source: sled::Error) -> Error {
        Error::Store {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes everything to disk.
    ///
    /// # Errors
    /// [`Error::Store`] on I/O failure.
    pub async fn flush(&self) -> Result<()> {
        self.flush_after(None).await
    }

    /// A mark of the flushes asked for so far: writes made before taking it are on
    /// disk once [`HostStore::flush_after`] with it returns.
    pub fn mark(&self) -> u64 {
        self.commits
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requested
    }

    /// Waits until the writes made before `mark` ([`HostStore::mark`]) are on disk:
    /// at once if a flush asked for after the mark has completed, by waiting for one
    /// already asked for, or else by asking for one. `None` always asks for a flush.
    ///
    /// # Errors
    /// [`Error::Store`] on I/O failure.
    pub async fn flush_after(&self, mark: Option<u64>) -> Result<()> {
        let mut done = self.commits.done.subscribe();
        let target = {
            let mut st = self
                .commits
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match mark {
                // A flush asked for after the mark covers the writes before it.
                Some(m) if st.requested > m => m + 1,
                _ => {
                    st.requested += 1;
                    self.commits.wake.notify_one();
                    st.requested
                }
            }
        };
        loop {
            {
                let (flushed, error) = &*done.borrow_and_update();
                if *flushed >= target {
                    return match error {
                        None => Ok(()),
                        Some(reason) => Err(Error::Flush {
                            path: self.path.clone(),
                            reason: reason.clone(),
                        }),
                    };
                }
            }
            done.changed().await.map_err(|_| Error::Flush {
                path: self.path.clone(),
                reason: "the flush thread stopped".into(),
            })?;
        }
    }
}

/// A dialogue as persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DialogueRecord {
    /// The other agent.
    pub peer: Address,
    /// Unix milliseconds of the last update.
    pub updated_ms: u64,
    /// Whether the skill closed it.
    pub closed: bool,
    /// The skill's state.
    pub state: serde_json::Value,
}

/// One agent's slice of the host store.
#[derive(Clone, Debug)]
pub struct AgentStore {
    host: HostStore,
    agent: Address,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl AgentStore {
    /// The last sequence accepted from `sender` in `dialogue`, and its expiry.
    ///
    /// # Errors
    /// [`Error::Store`] or [`Error::Corrupt`].
    pub fn last_sequence(&self, sender: Address, dialogue: B256) -> Result<Option<(u64, u64)>> {
        let k = key(&[&self.agent.0, &sender.0, &dialogue.0]);
        let Some(v) = self.host.replay.get(k).map_err(|e| self.host.err(e))? else {
            return Ok(None);
        };
        let bytes: [u8; 16] = v.as_ref().try_into().map_err(|_| Error::Corrupt {
            what: format!("replay record of {sender} in {dialogue}"),
            reason: format!("{} bytes, expected 16", v.len()),
        })?;
        let (seq, expiry) = bytes.split_at(8);
        let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default());
        let expiry = u64::from_be_bytes(expiry.try_into().unwrap_or_default());
        Ok(Some((seq, expiry)))
    }

    /// Records that `sequence` (expiring at `expiry`) was accepted from `sender` in
    /// `dialogue`. Call [`HostStore::flush`] (through [`AgentStore::flush`]) before
    /// acting on the message.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn set_last_sequence(
        &self,
        sender: Address,
        dialogue: B256,
        sequence: u64,
        expiry: u64,
    ) -> Result<()> {
        let k = key(&[&self.agent.0, &sender.0, &dialogue.0]);
        // The record must outlive every message of the dialogue accepted so far, so it
        // keeps the latest expiry seen, not the last message's: an earlier message
        // that expires later could be replayed once the record was pruned.
        self.host
            .replay
            .fetch_and_update(k, |old| {
                let kept = old
                    .and_then(|o| o.get(8..16))
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
                let mut v = [0u8; 16];
                v[..8].copy_from_slice(&sequence.to_be_bytes());
                v[8..].copy_from_slice(&expiry.max(kept).to_be_bytes());
                Some(v.to_vec())
            })
            .map(|_| ())
            .map_err(|e| self.host.err(e))
    }

    /// Forgets replay records whose messages have all expired (they cannot be
    /// replayed any more: the expiry check rejects them). Returns how many went.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub fn prune_replay(&self, now_ms: u64) -> Result<usize> {
        let mut gone = 0;
        for item in self.host.replay.scan_prefix(self.agent.0) {
            let (k, v) = item.map_err(|e| self.host.err(e))?;
            let expiry = v
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if expiry <= now_ms {
                self.host.replay.remove(k).map_err(|e| self.host.err(e))?;
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// The saved dialogue, if any.
    ///
    /// # Errors
    /// [`Error::Store`] or [`Error::Corrupt`].
    pub fn dialogue(&self, dialogue: B256) -> Result<Option<DialogueRecord>> {
        let k = key(&[&self.agent.0, &dialogue.0]);
        match self.host.dialogues.get(k).map_err(|e| self.host.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    what: format!("dialogue {dialogue}"),
                    reason: e.to_string(),
                }),
        }
    }

    /// The peer of a saved dialogue, read without decoding its state.
    ///
    /// # Errors
    /// [`Error::Store`] or [`Error::Corrupt`].
    pub fn dialogue_peer(&self, dialogue: B256) -> Result<Option<Address>> {
        #[derive(Deserialize)]
        struct PeerOnly {
            peer: Address,
        }
        let k = key(&[&self.agent.0, &dialogue.0]);
        match self.host.dialogues.get(k).map_err(|e| self.host.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice::<PeerOnly>(&v)
                .map(|p| Some(p.peer))
                .map_err(|e| Error::Corrupt {
                    what: format!("dialogue {dialogue}"),
                    reason: e.to_string(),
                }),
        }
    }

    /// Saves a dialogue and flushes it to disk before returning.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn save_dialogue(&self, dialogue: B256, record: &DialogueRecord) -> Result<()> {
        self.write_dialogues(&[(dialogue, record.clone())])?;
        self.host.flush().await
    }

    /// Writes several dialogues in one atomic batch (all or none), without waiting for
    /// the disk: they are visible at once and durable after the next [`AgentStore::flush`].
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Corrupt`] when a record does not serialize.
    pub fn write_dialogues(&self, records: &[(B256, DialogueRecord)]) -> Result<()> {
        let writes = records
            .iter()
            .map(|(dialogue, record)| {
                let v = serde_json::to_vec(record).map_err(|e| Error::Corrupt {
                    what: format!("dialogue {dialogue}"),
                    reason: e.to_string(),
                })?;
                Ok(Write::set(
                    &self.host.dialogues,
                    key(&[&self.agent.0, &dialogue.0]),
                    v,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.host
            .writer
            .write(&writes)
            .map_err(|e| self.host.err(e))
    }

    /// The state of a dialogue as `T`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it is not a `T`.
    pub fn dialogue_state<T: DeserializeOwned>(&self, dialogue: B256) -> Result<Option<T>> {
        self.dialogue(dialogue)?
            .map(|r| {
                serde_json::from_value(r.state).map_err(|e| Error::Corrupt {
                    what: format!("state of dialogue {dialogue}"),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Every dialogue of this agent that is not closed, oldest update first.
    ///
    /// # Errors
    /// [`Error::Store`] or [`Error::Corrupt`].
    pub fn open_dialogues(&self) -> Result<Vec<(B256, DialogueRecord)>> {
        let mut out = Vec::new();
        for item in self.host.dialogues.scan_prefix(self.agent.0) {
            let (k, v) = item.map_err(|e| self.host.err(e))?;
            let id = k
                .get(20..52)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(B256)
                .ok_or_else(|| Error::Corrupt {
                    what: "dialogue key".into(),
                    reason: format!("{} bytes", k.len()),
                })?;
            let record: DialogueRecord =
                serde_json::from_slice(&v).map_err(|e| Error::Corrupt {
                    what: format!("dialogue {id}"),
                    reason: e.to_string(),
                })?;
            if !record.closed {
                out.push((id, record));
            }
        }
        out.sort_by_key(|(_, r)| r.updated_ms);
        Ok(out)
    }

    /// Flushes the host store.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn flush(&self) -> Result<()> {
        self.host.flush().await
    }

    /// [`HostStore::mark`].
    pub fn mark(&self) -> u64 {
        self.host.mark()
    }

    /// [`HostStore::flush_after`].
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn flush_after(&self, mark: u64) -> Result<()> {
        self.host.flush_after(Some(mark)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flush_asked_after_a_mark_covers_it_and_none_is_asked_twice() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostStore::open(dir.path().join("db")).unwrap();
        let completed = || host.commits.done.borrow().0;
        // Nothing asked since the mark: flush_after asks for a flush and waits for it.
        let m = host.mark();
        host.flush_after(Some(m)).await.unwrap();
        assert_eq!(host.mark(), m + 1);
        assert!(completed() > m);
        // A flush asked (and done) after the mark: nothing more is asked.
        let m = host.mark();
        host.flush().await.unwrap();
        host.flush_after(Some(m)).await.unwrap();
        assert_eq!(host.mark(), m + 1);
        // Concurrent waiters on one mark share the flush one of them asks for.
        let m = host.mark();
        let (a, b) = tokio::join!(host.flush_after(Some(m)), host.flush_after(Some(m)));
        a.unwrap();
        b.unwrap();
        assert_eq!(host.mark(), m + 1);
        assert!(completed() > m);
    }

    #[tokio::test]
    async fn records_survive_reopening_and_are_separate_per_agent() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, peer) = (Address([1; 20]), Address([2; 20]), Address([3; 20]));
        let d = B256([9; 32]);
        {
            let host = HostStore::open(dir.path()).unwrap();
            let sa = host.agent(a);
            sa.set_last_sequence(peer, d, 41, 1_000).unwrap();
            sa.save_dialogue(
                d,
                &DialogueRecord {
                    peer,
                    updated_ms: 5,
                    closed: false,
                    state: serde_json::json!({"total": 3}),
                },
            )
            .await
            .unwrap();
        }
        let host = HostStore::open(dir.path()).unwrap();
        let (sa, sb) = (host.agent(a), host.agent(b));
        assert_eq!(sa.last_sequence(peer, d).unwrap(), Some((41, 1_000)));
        assert_eq!(sb.last_sequence(peer, d).unwrap(), None);
        let open = sa.open_dialogues().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].0, d);
        assert!(sb.open_dialogues().unwrap().is_empty());
        #[derive(Deserialize)]
        struct S {
            total: u32,
        }
        assert_eq!(sa.dialogue_state::<S>(d).unwrap().unwrap().total, 3);
        assert_eq!(sa.dialogue_peer(d).unwrap(), Some(peer));
        assert_eq!(sb.dialogue_peer(d).unwrap(), None);
        assert_eq!(sa.prune_replay(999).unwrap(), 0);
        assert_eq!(sa.prune_replay(1_000).unwrap(), 1);
        assert_eq!(sa.last_sequence(peer, d).unwrap(), None);
    }

    /// Regression: the replay record took the last message's expiry, so a later
    /// message expiring sooner let the record be pruned while an earlier message
    /// could still be replayed.
    #[test]
    fn the_replay_record_keeps_the_latest_expiry_of_its_dialogue() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostStore::open(dir.path()).unwrap();
        let s = host.agent(Address([1; 20]));
        let (peer, d) = (Address([2; 20]), B256([3; 32]));
        s.set_last_sequence(peer, d, 1, 5_000).unwrap();
        s.set_last_sequence(peer, d, 2, 2_000).unwrap();
        assert_eq!(
            s.prune_replay(2_000).unwrap(),
            0,
            "message 1 is still valid"
        );
        assert_eq!(s.last_sequence(peer, d).unwrap().map(|(q, _)| q), Some(2));
        assert_eq!(s.prune_replay(5_000).unwrap(), 1);
    }
}
