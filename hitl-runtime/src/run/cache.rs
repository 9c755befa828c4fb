//! The state cache: recently used states by (thread, namespace), so a run that
//! continues where the last one stopped does not rebuild its state from blobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ids::CheckpointId;

/// Recently used states by (thread, namespace), valid for one checkpoint id.
/// Checkpoints never change, so a state cached for a checkpoint id is that
/// checkpoint's state in every process.
pub(crate) struct StateCache<S> {
    capacity: usize,
    entries: Mutex<CacheMap<S>>,
}

/// (thread, namespace) -> (checkpoint, its state).
type CacheMap<S> = HashMap<(Arc<str>, Arc<str>), (CheckpointId, Arc<S>)>;

impl<S> StateCache<S> {
    pub(super) fn new(capacity: usize) -> Self {
        StateCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheMap<S>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn peek(&self, thread: &Arc<str>, ns: &Arc<str>) -> Option<CheckpointId> {
        if self.capacity == 0 {
            return None;
        }
        self.lock()
            .get(&(thread.clone(), ns.clone()))
            .map(|(id, _)| *id)
    }

    /// Takes the state out (so the run owns it and can mutate it without a copy).
    pub(crate) fn take(
        &self,
        thread: &Arc<str>,
        ns: &Arc<str>,
        id: CheckpointId,
    ) -> Option<Arc<S>> {
        let mut entries = self.lock();
        let key = (thread.clone(), ns.clone());
        match entries.get(&key) {
            Some((cached, _)) if *cached == id => entries.remove(&key).map(|(_, s)| s),
            _ => None,
        }
    }

    pub(crate) fn put(&self, thread: &Arc<str>, ns: &Arc<str>, id: CheckpointId, state: Arc<S>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            // Cheap eviction: drop an arbitrary half.
            let drop_keys: Vec<_> = entries
                .keys()
                .take(self.capacity / 2 + 1)
                .cloned()
                .collect();
            for k in drop_keys {
                entries.remove(&k);
            }
        }
        entries.insert((thread.clone(), ns.clone()), (id, state));
    }
}
