//! The in-memory checkpointer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::value::RawValue;

use super::{
    Blob, BlobKind, Checkpoint, CheckpointWrite, Checkpointer, ListFilter, PendingThread,
    PendingWrite, Prune, StoredCheckpoint, WriteMode, needed_blobs, prune_keep_set,
    unanswered_interrupts,
};
use crate::error::CheckpointError;
use crate::ids::CheckpointId;

/// Keeps threads in memory, with the same storage model as the durable savers: blobs
/// per channel version, deltas for append channels, pending writes per task, and
/// compare-and-set on the head.
///
/// Cloning it shares the storage. Everything is lost when the process exits: use
/// `SqliteSaver` (feature `sqlite`) or `PostgresSaver` (feature `postgres`) to survive
/// restarts.
#[derive(Debug, Clone, Default)]
pub struct InMemorySaver {
    inner: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
struct Store {
    threads: HashMap<String, HashMap<String, Namespace>>,
}

#[derive(Debug, Default)]
struct Namespace {
    head: Option<CheckpointId>,
    checkpoints: BTreeMap<CheckpointId, Arc<Checkpoint>>,
    blobs: HashMap<(String, CheckpointId), (BlobKind, Box<RawValue>)>,
    writes: HashMap<CheckpointId, Vec<PendingWrite>>,
}

/// Sizes of what an [`InMemorySaver`] holds, in bytes of stored JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredBytes {
    /// Checkpoint records, as their JSON encoding.
    pub checkpoints: usize,
    /// Channel blobs.
    pub blobs: usize,
    /// Pending writes.
    pub writes: usize,
}

impl StoredBytes {
    /// Everything.
    pub fn total(&self) -> usize {
        self.checkpoints + self.blobs + self.writes
    }
}

impl InMemorySaver {
    /// An empty saver.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than losing the process's data: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bytes stored for one thread (all namespaces).
    pub fn stored_bytes(&self, thread: &str) -> StoredBytes {
        let store = self.lock();
        let mut out = StoredBytes::default();
        if let Some(namespaces) = store.threads.get(thread) {
            for ns in namespaces.values() {
                for c in ns.checkpoints.values() {
                    out.checkpoints += serde_json::to_vec(&**c).map_or(0, |v| v.len());
                }
                out.blobs += ns.blobs.values().map(|(_, d)| d.get().len()).sum::<usize>();
                out.writes += ns
                    .writes
                    .values()
                    .flatten()
                    .map(|w| w.value.get().len())
                    .sum::<usize>();
            }
        }
        out
    }

    /// Number of threads stored.
    pub fn thread_count(&self) -> usize {
        self.lock().threads.len()
    }

    /// Replaces the data of a stored blob, to test that corrupt data fails loudly.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn corrupt_blob(&self, thread: &str, ns: &str, channel: &str, data: &str) -> bool {
        let mut store = self.lock();
        let Some(ns) = store.threads.get_mut(thread).and_then(|t| t.get_mut(ns)) else {
            return false;
        };
        let mut hit = false;
        for ((c, _), (_, d)) in &mut ns.blobs {
            if c == channel
                && let Ok(raw) = RawValue::from_string(data.to_owned())
            {
                *d = raw;
                hit = true;
            }
        }
        hit
    }
}

/// Adds writes to a checkpoint's, each by its mode; all or nothing.
fn merge_writes(
    thread: &str,
    existing: &mut Vec<PendingWrite>,
    writes: Vec<PendingWrite>,
) -> Result<(), CheckpointError> {
    for w in &writes {
        if w.kind.mode() == WriteMode::InsertOrConflict
            && existing
                .iter()
                .any(|e| e.task_id == w.task_id && e.idx == w.idx)
        {
            return Err(CheckpointError::WriteConflict {
                thread: thread.to_owned(),
                task: w.task_id,
                idx: w.idx,
            });
        }
    }
    for w in writes {
        match existing
            .iter_mut()
            .find(|e| e.task_id == w.task_id && e.idx == w.idx)
        {
            Some(slot) if w.kind.mode() == WriteMode::Upsert => *slot = w,
            Some(_) => {}
            None => existing.push(w),
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Checkpointer for InMemorySaver {
    async fn get(
        &self,
        thread: &str,
        ns: &str,
        id: Option<CheckpointId>,
        have: Option<CheckpointId>,
    ) -> Result<Option<StoredCheckpoint>, CheckpointError> {
        let store = self.lock();
        let Some(space) = store.threads.get(thread).and_then(|t| t.get(ns)) else {
            return Ok(None);
        };
        let Some(id) = id.or(space.head) else {
            return Ok(None);
        };
        let Some(checkpoint) = space.checkpoints.get(&id) else {
            return Ok(None);
        };
        let mut blobs = Vec::new();
        let channels = if have == Some(id) {
            &[][..]
        } else {
            &checkpoint.channels[..]
        };
        for cv in channels {
            let mut version = cv.version;
            while let Some((kind, data)) = space.blobs.get(&(cv.channel.clone(), version)) {
                blobs.push(Blob {
                    channel: cv.channel.clone(),
                    version,
                    kind: *kind,
                    data: data.clone(),
                });
                match kind {
                    BlobKind::Delta { base } => version = *base,
                    BlobKind::Full => break,
                }
            }
        }
        Ok(Some(StoredCheckpoint {
            checkpoint: checkpoint.clone(),
            blobs,
            writes: space.writes.get(&id).cloned().unwrap_or_default(),
        }))
    }

    async fn head(&self, thread: &str, ns: &str) -> Result<Option<CheckpointId>, CheckpointError> {
        let store = self.lock();
        Ok(store
            .threads
            .get(thread)
            .and_then(|t| t.get(ns))
            .and_then(|n| n.head))
    }

    async fn put(&self, write: CheckpointWrite) -> Result<(), CheckpointError> {
        let mut store = self.lock();
        let space = store
            .threads
            .entry(write.thread.clone())
            .or_default()
            .entry(write.ns.clone())
            .or_default();
        if space.head != write.expected_head {
            return Err(CheckpointError::Conflict {
                thread: write.thread,
                ns: write.ns,
                expected: write.expected_head,
                actual: space.head,
            });
        }
        let id = write.checkpoint.id;
        if let Some(head) = write.expected_head
            && !write.head_writes.is_empty()
        {
            merge_writes(
                &write.thread,
                space.writes.entry(head).or_default(),
                write.head_writes,
            )?;
        }
        for blob in write.blobs {
            space
                .blobs
                .entry((blob.channel, blob.version))
                .or_insert((blob.kind, blob.data));
        }
        space.checkpoints.insert(id, write.checkpoint);
        space.head = Some(id);
        Ok(())
    }

    async fn put_writes(
        &self,
        thread: &str,
        ns: &str,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<(), CheckpointError> {
        let mut store = self.lock();
        let space = store
            .threads
            .entry(thread.to_owned())
            .or_default()
            .entry(ns.to_owned())
            .or_default();
        if writes
            .iter()
            .any(|w| w.kind.mode() == WriteMode::InsertOrConflict)
            && space.head != Some(checkpoint)
        {
            return Err(CheckpointError::Conflict {
                thread: thread.to_owned(),
                ns: ns.to_owned(),
                expected: Some(checkpoint),
                actual: space.head,
            });
        }
        merge_writes(thread, space.writes.entry(checkpoint).or_default(), writes)
    }

    async fn list(
        &self,
        thread: &str,
        ns: &str,
        filter: &ListFilter,
    ) -> Result<Vec<Checkpoint>, CheckpointError> {
        let store = self.lock();
        let Some(space) = store.threads.get(thread).and_then(|t| t.get(ns)) else {
            return Ok(Vec::new());
        };
        Ok(space
            .checkpoints
            .values()
            .rev()
            .filter(|c| filter.matches(c))
            .take(filter.limit.unwrap_or(usize::MAX))
            .map(|c| (**c).clone())
            .collect())
    }

    async fn delete_thread(&self, thread: &str) -> Result<(), CheckpointError> {
        self.lock().threads.remove(thread);
        Ok(())
    }

    async fn prune(&self, thread: &str, keep: Prune) -> Result<usize, CheckpointError> {
        let mut store = self.lock();
        let Some(space) = store.threads.get_mut(thread).and_then(|t| t.get_mut("")) else {
            return Ok(0);
        };
        let all: Vec<Checkpoint> = space.checkpoints.values().map(|c| (**c).clone()).collect();
        let kept = prune_keep_set(&all, space.head, keep);
        let needed = needed_blobs(all.iter().filter(|c| kept.contains(&c.id)), |ch, v| {
            space.blobs.get(&(ch.to_owned(), v)).map(|(k, _)| *k)
        });
        let before = space.checkpoints.len();
        space.checkpoints.retain(|id, _| kept.contains(id));
        space.writes.retain(|id, _| kept.contains(id));
        space.blobs.retain(|key, _| needed.contains(key));
        Ok(before - space.checkpoints.len())
    }

    async fn threads_with_pending_interrupts(
        &self,
        limit: usize,
    ) -> Result<Vec<PendingThread>, CheckpointError> {
        let store = self.lock();
        let mut out = Vec::new();
        for (thread, namespaces) in &store.threads {
            let Some(space) = namespaces.get("") else {
                continue;
            };
            let Some(head) = space.head else { continue };
            let writes = space.writes.get(&head).map_or(&[][..], Vec::as_slice);
            let pending =
                unanswered_interrupts(writes).map_err(|source| CheckpointError::Decode {
                    thread: thread.clone(),
                    what: format!("pending writes of checkpoint {head}"),
                    source,
                })?;
            if !pending.is_empty() {
                out.push(PendingThread {
                    thread: thread.clone(),
                    checkpoint: head,
                    interrupts: pending,
                });
            }
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.checkpoint));
        out.truncate(limit);
        Ok(out)
    }
}
