//! One async lock per key: requests about one payment or one purchase take turns.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// One async lock per key, dropped when nobody holds or waits for it.
#[derive(Debug)]
pub(crate) struct KeyLocks<K>(std::sync::Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>);

impl<K> Default for KeyLocks<K> {
    fn default() -> Self {
        Self(std::sync::Mutex::default())
    }
}

/// A held turn of one key; the next waiter's turn comes when it drops.
pub(crate) struct KeyTurn<'a, K: Hash + Eq> {
    locks: &'a KeyLocks<K>,
    key: Option<K>,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> KeyLocks<K> {
    /// Waits for `key`'s turn.
    pub(crate) async fn lock(&self, key: K) -> KeyTurn<'_, K> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        KeyTurn {
            locks: self,
            key: Some(key),
            lock,
            guard: Some(guard),
        }
    }
}

impl<K: Hash + Eq> Drop for KeyTurn<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self
            .locks
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's reference and ours: nobody else waits.
        if Arc::strong_count(&self.lock) == 2 {
            if let Some(key) = self.key.take() {
                map.remove(&key);
            }
        }
    }
}
