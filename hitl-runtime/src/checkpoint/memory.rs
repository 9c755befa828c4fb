//! The in-memory checkpointer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::decisions::seal_all;
use super::{
    Blob, BlobKind, Checkpoint, CheckpointWrite, Checkpointer, DecisionEntry, DecisionRecord,
    ListFilter, PendingThread, PendingWrite, Prune, RecordQuery, StoredCheckpoint, WriteMode,
    needed_blobs, prune_keep_set, unanswered_interrupts,
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
    threads: HashMap<Box<str>, Thread>,
    /// Run leases: thread -> (holder, expiry).
    leases: HashMap<Box<str>, (String, Instant)>,
    /// Decision records by thread, in chain order (kept when a thread is deleted).
    decisions: HashMap<Box<str>, Vec<DecisionEntry>>,
}

/// A thread's namespaces: the root one, then subgraphs' (few, looked up by name).
#[derive(Debug, Default)]
struct Thread {
    spaces: Vec<(Box<str>, Namespace)>,
}

impl Thread {
    fn space(&self, ns: &str) -> Option<&Namespace> {
        self.spaces.iter().find(|(n, _)| &**n == ns).map(|(_, s)| s)
    }

    fn space_mut(&mut self, ns: &str) -> Option<&mut Namespace> {
        self.spaces
            .iter_mut()
            .find(|(n, _)| &**n == ns)
            .map(|(_, s)| s)
    }

    fn space_or_new(&mut self, ns: &str) -> &mut Namespace {
        let i = match self.spaces.iter().position(|(n, _)| &**n == ns) {
            Some(i) => i,
            None => {
                // Usually the only one.
                self.spaces.reserve_exact(1);
                self.spaces.push((ns.into(), Namespace::default()));
                self.spaces.len() - 1
            }
        };
        &mut self.spaces[i].1
    }
}

/// One namespace, in sorted vectors: a thread holds a few entries per step, and ids
/// and versions only grow, so new entries go at the end.
#[derive(Debug, Default)]
struct Namespace {
    head: Option<CheckpointId>,
    /// By checkpoint id.
    entries: Vec<Entry>,
    /// By (version, channel).
    blobs: Vec<StoredBlob>,
}

/// A checkpoint and its pending writes (writes may arrive for an id not stored here).
#[derive(Debug)]
struct Entry {
    id: CheckpointId,
    checkpoint: Option<Arc<Checkpoint>>,
    writes: Vec<PendingWrite>,
}

#[derive(Debug)]
struct StoredBlob {
    version: CheckpointId,
    channel: Arc<str>,
    kind: BlobKind,
    data: Box<RawValue>,
}

impl Namespace {
    fn entry(&self, id: CheckpointId) -> Option<&Entry> {
        self.entries
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .map(|i| &self.entries[i])
    }

    fn entry_mut(&mut self, id: CheckpointId) -> &mut Entry {
        let i = match self.entries.binary_search_by_key(&id, |e| e.id) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(
                    i,
                    Entry {
                        id,
                        checkpoint: None,
                        writes: Vec::new(),
                    },
                );
                i
            }
        };
        &mut self.entries[i]
    }

    fn checkpoints(&self) -> impl DoubleEndedIterator<Item = &Arc<Checkpoint>> {
        self.entries.iter().filter_map(|e| e.checkpoint.as_ref())
    }

    fn blob(&self, channel: &str, version: CheckpointId) -> Option<&StoredBlob> {
        self.blobs
            .binary_search_by(|b| (b.version, &*b.channel).cmp(&(version, channel)))
            .ok()
            .map(|i| &self.blobs[i])
    }

    /// Adds a blob unless that (channel, version) is stored already.
    fn add_blob(&mut self, blob: Blob) {
        let key = (blob.version, &*blob.channel);
        if let Err(i) = self
            .blobs
            .binary_search_by(|b| (b.version, &*b.channel).cmp(&key))
        {
            self.blobs.insert(
                i,
                StoredBlob {
                    version: blob.version,
                    channel: blob.channel,
                    kind: blob.kind,
                    data: blob.data,
                },
            );
        }
    }
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
        if let Some(t) = store.threads.get(thread) {
            for (_, ns) in &t.spaces {
                for e in &ns.entries {
                    if let Some(c) = &e.checkpoint {
                        out.checkpoints += serde_json::to_vec(&**c).map_or(0, |v| v.len());
                    }
                    out.writes += e.writes.iter().map(|w| w.value.get().len()).sum::<usize>();
                }
                out.blobs += ns.blobs.iter().map(|b| b.data.get().len()).sum::<usize>();
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
        let Some(ns) = store.threads.get_mut(thread).and_then(|t| t.space_mut(ns)) else {
            return false;
        };
        let mut hit = false;
        for b in &mut ns.blobs {
            if &*b.channel == channel
                && let Ok(raw) = RawValue::from_string(data.to_owned())
            {
                b.data = raw;
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
    existing.reserve_exact(writes.len());
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
        let Some(space) = store.threads.get(thread).and_then(|t| t.space(ns)) else {
            return Ok(None);
        };
        let Some(id) = id.or(space.head) else {
            return Ok(None);
        };
        let Some((checkpoint, writes)) = space
            .entry(id)
            .and_then(|e| Some((e.checkpoint.as_ref()?, &e.writes)))
        else {
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
            while let Some(b) = space.blob(&cv.channel, version) {
                blobs.push(Blob {
                    channel: b.channel.clone(),
                    version,
                    kind: b.kind,
                    data: b.data.clone(),
                });
                match b.kind {
                    BlobKind::Delta { base } => version = base,
                    BlobKind::Full => break,
                }
            }
        }
        Ok(Some(StoredCheckpoint {
            checkpoint: checkpoint.clone(),
            blobs,
            writes: writes.clone(),
        }))
    }

    async fn head(&self, thread: &str, ns: &str) -> Result<Option<CheckpointId>, CheckpointError> {
        let store = self.lock();
        Ok(store
            .threads
            .get(thread)
            .and_then(|t| t.space(ns))
            .and_then(|n| n.head))
    }

    async fn put(&self, write: CheckpointWrite) -> Result<(), CheckpointError> {
        let mut store = self.lock();
        let space = match store.threads.get_mut(&*write.thread) {
            Some(t) => t.space_or_new(&write.ns),
            None => store
                .threads
                .entry(write.thread.as_str().into())
                .or_default()
                .space_or_new(&write.ns),
        };
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
                &mut space.entry_mut(head).writes,
                write.head_writes,
            )?;
        }
        for blob in write.blobs {
            space.add_blob(blob);
        }
        space.entry_mut(id).checkpoint = Some(write.checkpoint);
        space.head = Some(id);
        Ok(())
    }

    async fn put_decisions(
        &self,
        thread: &str,
        ns: &str,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
        records: Vec<DecisionRecord>,
    ) -> Result<(), CheckpointError> {
        let mut store = self.lock();
        let store = &mut *store;
        let space = match store.threads.get_mut(thread) {
            Some(t) => t.space_or_new(ns),
            None => store
                .threads
                .entry(thread.into())
                .or_default()
                .space_or_new(ns),
        };
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
        merge_writes(thread, &mut space.entry_mut(checkpoint).writes, writes)?;
        if records.is_empty() {
            return Ok(());
        }
        let chain = store.decisions.entry(thread.into()).or_default();
        let last = chain.last().map(|e| (e.seq, e.hash.clone()));
        chain.extend(seal_all(last, &records));
        Ok(())
    }

    async fn decision_records(
        &self,
        query: &RecordQuery,
    ) -> Result<Vec<DecisionEntry>, CheckpointError> {
        let store = self.lock();
        let chains: Vec<&Vec<DecisionEntry>> = match &query.thread {
            Some(t) => store.decisions.get(t.as_str()).into_iter().collect(),
            None => store.decisions.values().collect(),
        };
        let mut out = Vec::new();
        for entry in chains.into_iter().flatten() {
            if let Some(who) = &query.reviewer {
                let record = entry
                    .record()
                    .map_err(CheckpointError::decoding("", "a decision record"))?;
                if record.reviewer_id() != Some(who.as_str()) {
                    continue;
                }
            }
            out.push(entry.clone());
            if query.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    async fn list(
        &self,
        thread: &str,
        ns: &str,
        filter: &ListFilter,
    ) -> Result<Vec<Checkpoint>, CheckpointError> {
        let store = self.lock();
        let Some(space) = store.threads.get(thread).and_then(|t| t.space(ns)) else {
            return Ok(Vec::new());
        };
        Ok(space
            .checkpoints()
            .rev()
            .filter(|c| filter.matches(c))
            .take(filter.limit.unwrap_or(usize::MAX))
            .map(|c| (**c).clone())
            .collect())
    }

    async fn delete_thread(&self, thread: &str) -> Result<(), CheckpointError> {
        let mut store = self.lock();
        store.threads.remove(thread);
        store.leases.remove(thread);
        Ok(())
    }

    async fn prune(&self, thread: &str, keep: Prune) -> Result<usize, CheckpointError> {
        let mut store = self.lock();
        let Some(space) = store.threads.get_mut(thread).and_then(|t| t.space_mut("")) else {
            return Ok(0);
        };
        let all: Vec<Checkpoint> = space.checkpoints().map(|c| (**c).clone()).collect();
        let kept = prune_keep_set(&all, space.head, keep);
        let needed = needed_blobs(all.iter().filter(|c| kept.contains(&c.id)), |ch, v| {
            space.blob(ch, v).map(|b| b.kind)
        });
        let before = all.len();
        space.entries.retain(|e| kept.contains(&e.id));
        space
            .blobs
            .retain(|b| needed.contains(&(b.channel.clone(), b.version)));
        Ok(before - space.checkpoints().count())
    }

    async fn acquire_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<String>, CheckpointError> {
        let mut store = self.lock();
        let now = Instant::now();
        match store.leases.get_mut(thread) {
            Some((current, expires)) if current != holder && *expires > now => {
                Ok(Some(current.clone()))
            }
            Some(lease) => {
                *lease = (holder.to_owned(), now + ttl);
                Ok(None)
            }
            None => {
                store
                    .leases
                    .insert(thread.into(), (holder.to_owned(), now + ttl));
                Ok(None)
            }
        }
    }

    async fn renew_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        let mut store = self.lock();
        match store.leases.get_mut(thread) {
            Some((current, expires)) if current == holder => {
                *expires = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, thread: &str, holder: &str) -> Result<(), CheckpointError> {
        let mut store = self.lock();
        // One lookup when the holder releases (the usual case); another holder's
        // lease is put back.
        if let Some((key, lease)) = store.leases.remove_entry(thread)
            && lease.0 != holder
        {
            store.leases.insert(key, lease);
        }
        Ok(())
    }

    async fn threads_with_pending_interrupts(
        &self,
        limit: usize,
    ) -> Result<Vec<PendingThread>, CheckpointError> {
        let store = self.lock();
        let mut out = Vec::new();
        for (thread, t) in &store.threads {
            let Some(space) = t.space("") else {
                continue;
            };
            let Some(head) = space.head else { continue };
            let writes = space.entry(head).map_or(&[][..], |e| &e.writes[..]);
            let pending = unanswered_interrupts(thread, &head, writes)?;
            if !pending.is_empty() {
                out.push(PendingThread {
                    thread: thread.to_string(),
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
