//! The gateway's task store (sled): every task of every agent, so a restart keeps them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wallets::Address;

use crate::wire::{Task, TaskState};
use crate::{Error, Result};

/// A stored task and its place in its agent's list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) task: Task,
    /// Order of creation, per store.
    pub(crate) seq: u64,
    /// Unix ms of the last status change.
    pub(crate) updated_ms: u64,
}

/// Tasks by (agent, id), and each agent's tasks in order of creation.
#[derive(Debug)]
pub(crate) struct TaskStore {
    path: PathBuf,
    db: sled::Db,
    /// agent ‖ task id → [`Stored`].
    tasks: sled::Tree,
    /// agent ‖ seq (big-endian) → task id.
    order: sled::Tree,
}

fn key(agent: Address, id: &str) -> Vec<u8> {
    let mut k = agent.as_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl TaskStore {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let err = |e: sled::Error| Error::Store {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let db = sled::Config::new().path(path).open().map_err(err)?;
        let tasks = db.open_tree("tasks").map_err(err)?;
        let order = db.open_tree("order").map_err(err)?;
        Ok(Self {
            path: path.to_owned(),
            db,
            tasks,
            order,
        })
    }

    fn err(&self, message: impl ToString) -> Error {
        Error::Store {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    pub(crate) fn get(&self, agent: Address, id: &str) -> Result<Option<Stored>> {
        match self.tasks.get(key(agent, id)).map_err(|e| self.err(e))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.err(format!("task {id}: unreadable record: {e}"))),
            None => Ok(None),
        }
    }

    /// Writes a new task and returns its record.
    pub(crate) fn create(&self, agent: Address, task: Task, now_ms: u64) -> Result<Stored> {
        let seq = self.db.generate_id().map_err(|e| self.err(e))?;
        let stored = Stored {
            task,
            seq,
            updated_ms: now_ms,
        };
        let mut order = agent.as_bytes().to_vec();
        order.extend_from_slice(&seq.to_be_bytes());
        self.order
            .insert(order, stored.task.id.as_bytes())
            .map_err(|e| self.err(e))?;
        self.put(agent, &stored)?;
        Ok(stored)
    }

    /// Writes `stored` over its earlier version.
    pub(crate) fn put(&self, agent: Address, stored: &Stored) -> Result<()> {
        let bytes = serde_json::to_vec(stored).map_err(|e| self.err(e))?;
        self.tasks
            .insert(key(agent, &stored.task.id), bytes)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Waits until every write so far is on disk.
    pub(crate) async fn flush(&self) -> Result<()> {
        self.db
            .flush_async()
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// `agent`'s tasks, most recent first, from the one created before `before` (a
    /// sequence number) if given.
    pub(crate) fn list(
        &self,
        agent: Address,
        before: Option<u64>,
    ) -> impl Iterator<Item = Result<Stored>> + '_ {
        let start = agent.as_bytes().to_vec();
        let mut end = agent.as_bytes().to_vec();
        end.extend_from_slice(&before.unwrap_or(u64::MAX).to_be_bytes());
        self.order.range(start..end).rev().map(move |entry| {
            let (_, id) = entry.map_err(|e| self.err(e))?;
            let id = String::from_utf8_lossy(&id).into_owned();
            self.get(agent, &id)?
                .ok_or_else(|| self.err(format!("task {id} is listed but not stored")))
        })
    }

    /// Marks every unfinished task of every agent failed: a stopped process cannot
    /// resume the work. Returns how many.
    pub(crate) fn fail_unfinished(&self, now_ms: u64, why: &str) -> Result<usize> {
        let mut n = 0;
        for entry in self.tasks.iter() {
            let (k, bytes) = entry.map_err(|e| self.err(e))?;
            let mut stored: Stored = serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("unreadable record: {e}")))?;
            if matches!(
                stored.task.status.state,
                TaskState::Submitted | TaskState::Working
            ) {
                stored.task.status =
                    crate::server::status(TaskState::Failed, Some(why), &stored.task, now_ms);
                stored.updated_ms = now_ms;
                let bytes = serde_json::to_vec(&stored).map_err(|e| self.err(e))?;
                self.tasks.insert(k, bytes).map_err(|e| self.err(e))?;
                n += 1;
            }
        }
        Ok(n)
    }
}
