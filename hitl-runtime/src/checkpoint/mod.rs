//! Checkpoints: what a thread looks like after each superstep, and where it is stored.
//!
//! # Storage model
//!
//! Every backend stores the same four things:
//!
//! - **checkpoints**: one record per superstep ([`Checkpoint`]): ids, parent, step,
//!   source, the version of every channel, the tasks scheduled next, metadata;
//! - **blobs**: channel values, keyed by (thread, namespace, channel, version) and
//!   written only when the channel changes. Append and message channels are stored as
//!   **deltas** (what one step wrote) chained to a periodic full snapshot, so stored
//!   bytes per step stay flat as a thread grows;
//! - **pending writes**: per (checkpoint, task, index), stored as each task finishes
//!   (results, errors, interrupts, resume answers), so a finished task never re-runs;
//! - **the head** of each (thread, namespace), moved only by compare-and-set: a write
//!   whose expected head is not the current one fails with
//!   [`CheckpointError::Conflict`], so two workers never fork a thread silently.
//!
//! All values are JSON. Anything that fails to decode is an error, never a default.

mod codec;
mod decisions;
mod memory;
pub(crate) mod pending;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::CheckpointError;
use crate::ids::{CheckpointId, InterruptId, TaskId};

pub(crate) use codec::{StepBlobs, materialize};
pub use decisions::{
    ChainError, ChainReport, DecisionEntry, DecisionRecord, Outcome, RecordQuery, sha256_hex,
    verify_chain,
};
pub use memory::{InMemorySaver, StoredBytes};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PgDurability, PostgresSaver, PostgresSaverBuilder};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteDurability, SqliteSaver};

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointSource {
    /// New input started a run.
    Input,
    /// A superstep finished.
    Loop,
    /// `update_state` wrote it.
    Update,
    /// Time travel: a copy of an older checkpoint that became the head.
    Fork,
}

/// The stored version of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelVersion {
    /// The channel's name.
    #[serde(rename = "c")]
    pub channel: Arc<str>,
    /// The version: the id of the checkpoint whose step last wrote the channel.
    #[serde(rename = "v")]
    pub version: CheckpointId,
    /// For delta channels: the chain back to the last full snapshot.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaChain>,
}

/// Where a delta channel's value starts and how much has been appended since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaChain {
    /// The version holding the last full snapshot.
    #[serde(rename = "s")]
    pub snapshot: CheckpointId,
    /// Bytes of that snapshot.
    #[serde(rename = "sb")]
    pub snapshot_bytes: u64,
    /// Bytes of the deltas written since it.
    #[serde(rename = "db")]
    pub delta_bytes: u64,
}

/// A task scheduled to run in the next superstep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The node to run.
    pub node: Arc<str>,
    /// The input of a `Send` task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Box<RawValue>>,
}

impl PartialEq for TaskSpec {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
            && self.input.as_ref().map(|r| r.get()) == other.input.as_ref().map(|r| r.get())
    }
}

impl TaskSpec {
    /// A task triggered by an edge.
    pub fn node(node: impl Into<Arc<str>>) -> Self {
        TaskSpec {
            node: node.into(),
            input: None,
        }
    }
}

/// One checkpoint record, without its channel values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Its id (time-ordered).
    pub id: CheckpointId,
    /// The checkpoint it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<CheckpointId>,
    /// The superstep: -1 for input, then 0, 1, ...
    pub step: i64,
    /// Why it was written.
    pub source: CheckpointSource,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The version of every channel.
    pub channels: Vec<ChannelVersion>,
    /// For each node, the checkpoint after the last step it ran in.
    #[serde(default, skip_serializing_if = "VersionsSeen::is_empty")]
    pub versions_seen: VersionsSeen,
    /// The tasks of the next superstep; empty when the run is done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<TaskSpec>,
    /// Metadata: run config metadata plus anything the runtime adds.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// For each node, the checkpoint after the last step it ran in: a small map kept as a
/// sorted list (a graph has few nodes, and a thread keeps one per checkpoint). Stored
/// as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionsSeen(Vec<(Arc<str>, CheckpointId)>);

impl VersionsSeen {
    /// The version a node saw last.
    pub fn get(&self, node: &str) -> Option<CheckpointId> {
        self.0
            .binary_search_by(|(n, _)| (**n).cmp(node))
            .ok()
            .map(|i| self.0[i].1)
    }

    /// Records the version a node saw.
    pub fn insert(&mut self, node: Arc<str>, version: CheckpointId) {
        match self.0.binary_search_by(|(n, _)| (**n).cmp(&*node)) {
            Ok(i) => self.0[i].1 = version,
            Err(i) => self.0.insert(i, (node, version)),
        }
    }

    /// The entries, by node name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, CheckpointId)> {
        self.0.iter().map(|(n, v)| (&**n, *v))
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no node has run.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: Into<Arc<str>>> FromIterator<(N, CheckpointId)> for VersionsSeen {
    fn from_iter<I: IntoIterator<Item = (N, CheckpointId)>>(iter: I) -> Self {
        let mut seen = VersionsSeen::default();
        for (node, version) in iter {
            seen.insert(node.into(), version);
        }
        seen
    }
}

impl Serialize for VersionsSeen {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.collect_map(self.0.iter().map(|(n, v)| (&**n, v)))
    }
}

impl<'de> Deserialize<'de> for VersionsSeen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, CheckpointId>::deserialize(deserializer)?;
        Ok(VersionsSeen(
            map.into_iter().map(|(n, v)| (Arc::from(n), v)).collect(),
        ))
    }
}

impl Checkpoint {
    /// The creation time.
    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_at_ms)
    }

    /// The version record of a channel.
    pub fn channel(&self, name: &str) -> Option<&ChannelVersion> {
        self.channels.iter().find(|c| &*c.channel == name)
    }
}

/// How a blob's data relates to the channel value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BlobKind {
    /// The whole value.
    Full,
    /// What one step wrote, folded through the reducer on top of the `base` version.
    Delta {
        /// The version this delta applies to.
        base: CheckpointId,
    },
}

/// One stored channel value (or delta).
#[derive(Debug, Clone)]
pub struct Blob {
    /// The channel.
    pub channel: Arc<str>,
    /// The version.
    pub version: CheckpointId,
    /// Whole value or delta.
    pub kind: BlobKind,
    /// The JSON.
    pub data: Box<RawValue>,
}

/// What a pending write records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WriteKind {
    /// A finished task's output (its update and routes). Insert-if-absent.
    Result,
    /// A failed task's error. Upserted.
    Error,
    /// The interrupts a task raised. Upserted.
    Interrupt,
    /// A resume answer. Insert-or-conflict: a second answer is an error.
    Resume,
    /// Input-level writes of a `Command` (update, goto), on [`TaskId::NULL`].
    Command,
    /// One reviewer's approval of an interrupt that needs several; its slot is derived
    /// from the interrupt and the reviewer. Insert-if-absent.
    Approval,
}

impl WriteKind {
    /// The fixed index of single-slot kinds; `Result`, `Resume` and `Command` use
    /// their own index sequences.
    pub const ERROR_IDX: i32 = -1;
    /// Index of the interrupt slot.
    pub const INTERRUPT_IDX: i32 = -3;
    /// Index of the first resume answer; the n-th answer of a task goes to `-4 - n`.
    pub const RESUME_BASE_IDX: i32 = -4;

    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Result => "result",
            WriteKind::Error => "error",
            WriteKind::Interrupt => "interrupt",
            WriteKind::Resume => "resume",
            WriteKind::Command => "command",
            WriteKind::Approval => "approval",
        }
    }

    /// Parses the `kind` column.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "result" => WriteKind::Result,
            "error" => WriteKind::Error,
            "interrupt" => WriteKind::Interrupt,
            "resume" => WriteKind::Resume,
            "command" => WriteKind::Command,
            "approval" => WriteKind::Approval,
            _ => return None,
        })
    }

    /// How a backend stores a write of this kind when one exists at its key.
    pub fn mode(self) -> WriteMode {
        match self {
            WriteKind::Result | WriteKind::Command | WriteKind::Approval => {
                WriteMode::InsertIfAbsent
            }
            WriteKind::Error | WriteKind::Interrupt => WriteMode::Upsert,
            WriteKind::Resume => WriteMode::InsertOrConflict,
        }
    }
}

/// What to do when a write's key is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Keep the existing write (retries are idempotent).
    InsertIfAbsent,
    /// Replace it.
    Upsert,
    /// Fail the whole batch with [`CheckpointError::WriteConflict`].
    InsertOrConflict,
}

/// A write attached to a checkpoint before the next one exists.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    /// The task.
    pub task_id: TaskId,
    /// Its index within the task (negative for special slots).
    pub idx: i32,
    /// What it is.
    pub kind: WriteKind,
    /// The JSON.
    pub value: Box<RawValue>,
}

/// A checkpoint with the blobs and writes needed to rebuild its state.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    /// The record.
    pub checkpoint: Arc<Checkpoint>,
    /// Blobs of its channel versions. For delta channels, every blob of the channel
    /// with a version between the snapshot and the current version (blobs of other
    /// branches in that range are allowed; they are skipped when rebuilding).
    pub blobs: Vec<Blob>,
    /// Its pending writes.
    pub writes: Vec<PendingWrite>,
}

/// A new checkpoint, its new blobs, and the head it expects to replace.
#[derive(Debug, Clone)]
pub struct CheckpointWrite {
    /// The thread.
    pub thread: String,
    /// The namespace ("" at the root).
    pub ns: String,
    /// The record.
    pub checkpoint: Arc<Checkpoint>,
    /// Blobs of the channels this step changed.
    pub blobs: Vec<Blob>,
    /// The head this write replaces; the write fails with
    /// [`CheckpointError::Conflict`] if the head is something else. For a normal step
    /// it is the parent; for a fork, the head seen when the fork began.
    pub expected_head: Option<CheckpointId>,
    /// Pending writes to store on `expected_head` in the same transaction: the results
    /// of the step's last tasks, which then cost no round trip of their own. Stored
    /// only if the compare-and-set succeeds, each by its [`WriteKind::mode`]; never a
    /// [`WriteKind::Resume`] write (those go through
    /// [`put_writes`](Checkpointer::put_writes)). Empty when `expected_head` is `None`.
    pub head_writes: Vec<PendingWrite>,
}

/// Which checkpoints [`Checkpointer::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only checkpoints older than this one.
    pub before: Option<CheckpointId>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Only checkpoints whose metadata has all these entries.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ListFilter {
    /// Whether a checkpoint passes the filter (ignoring `limit`).
    pub fn matches(&self, checkpoint: &Checkpoint) -> bool {
        if let Some(before) = self.before
            && checkpoint.id >= before
        {
            return false;
        }
        self.metadata
            .iter()
            .all(|(k, v)| checkpoint.metadata.get(k) == Some(v))
    }
}

/// How much history [`Checkpointer::prune`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prune {
    /// The head and its ancestors: drops abandoned branches (time-travel forks' old
    /// sides).
    KeepHeadLineage,
    /// The newest `n` checkpoints of the head's lineage (at least the head).
    KeepLast(usize),
}

/// A thread whose head has interrupts waiting for an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingThread {
    /// The thread.
    pub thread: String,
    /// Its head.
    pub checkpoint: CheckpointId,
    /// The unanswered interrupts.
    pub interrupts: Vec<InterruptId>,
}

/// Where threads are stored. Implemented by [`InMemorySaver`], `SqliteSaver` and
/// `PostgresSaver`; every implementation passes the same conformance suite
/// (`hitl_runtime::testing::conformance`, feature `test-util`).
#[async_trait::async_trait]
pub trait Checkpointer: Send + Sync + std::fmt::Debug + 'static {
    /// A checkpoint (the head if `id` is `None`) with its blobs and pending writes.
    ///
    /// If the checkpoint found is `have`, the caller already has its values and the
    /// blobs may be left out.
    async fn get(
        &self,
        thread: &str,
        ns: &str,
        id: Option<CheckpointId>,
        have: Option<CheckpointId>,
    ) -> Result<Option<StoredCheckpoint>, CheckpointError>;

    /// The head of a thread's namespace.
    async fn head(&self, thread: &str, ns: &str) -> Result<Option<CheckpointId>, CheckpointError>;

    /// Stores a checkpoint, its blobs and the [`head_writes`](CheckpointWrite::head_writes)
    /// on the old head, and moves the head to it, if the head is still
    /// `expected_head`; otherwise fails with [`CheckpointError::Conflict`] and stores
    /// nothing.
    async fn put(&self, write: CheckpointWrite) -> Result<(), CheckpointError>;

    /// Stores pending writes on a checkpoint, each according to its
    /// [`WriteKind::mode`]. All or nothing. A batch with a [`WriteKind::Resume`] write
    /// also requires `checkpoint` to be the head, else it fails with
    /// [`CheckpointError::Conflict`]: an answer never lands on a checkpoint another
    /// worker has already moved past.
    async fn put_writes(
        &self,
        thread: &str,
        ns: &str,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<(), CheckpointError> {
        self.put_decisions(thread, ns, checkpoint, writes, Vec::new())
            .await
    }

    /// [`put_writes`](Self::put_writes), appending `records` to the thread's decision
    /// records in the same transaction: numbered after the thread's last record and
    /// sealed with its hash ([`DecisionEntry::seal`]). All or nothing. A resume stores
    /// its answers with this.
    async fn put_decisions(
        &self,
        thread: &str,
        ns: &str,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
        records: Vec<DecisionRecord>,
    ) -> Result<(), CheckpointError>;

    /// Decision records, in chain order per thread (oldest first). Records are never
    /// changed or deleted, not even with their thread.
    async fn decision_records(
        &self,
        query: &RecordQuery,
    ) -> Result<Vec<DecisionEntry>, CheckpointError>;

    /// Checks a thread's decision records ([`verify_chain`]): an error names the first
    /// record that was changed, removed or reordered.
    async fn verify_decisions(&self, thread: &str) -> Result<ChainReport, CheckpointError> {
        let entries = self.decision_records(&RecordQuery::thread(thread)).await?;
        verify_chain(thread, &entries).map_err(CheckpointError::Tampered)
    }

    /// Checkpoints of one namespace of a thread, newest first, across all branches.
    async fn list(
        &self,
        thread: &str,
        ns: &str,
        filter: &ListFilter,
    ) -> Result<Vec<Checkpoint>, CheckpointError>;

    /// Deletes a thread: all namespaces, checkpoints, blobs and writes.
    async fn delete_thread(&self, thread: &str) -> Result<(), CheckpointError>;

    /// Deletes old checkpoints of a thread's root namespace (and the blobs and
    /// writes only they used). Returns how many checkpoints were deleted.
    async fn prune(&self, thread: &str, keep: Prune) -> Result<usize, CheckpointError>;

    /// Threads whose root head has unanswered interrupts, for reviewer inboxes.
    async fn threads_with_pending_interrupts(
        &self,
        limit: usize,
    ) -> Result<Vec<PendingThread>, CheckpointError>;

    /// Takes the run lease of `thread` for `holder` for `ttl`: granted when nobody
    /// holds it, when its holder's lease expired (a crashed process), or when
    /// `holder` already holds it (then it is renewed). Returns `Ok(None)` when granted,
    /// else `Ok(Some(current holder))`. One runner per thread: a run takes the lease
    /// before it reads the thread, renews it while it runs, and releases it at the end.
    async fn acquire_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<String>, CheckpointError>;

    /// Extends `holder`'s lease of `thread` to `ttl` from now. Returns `false` when
    /// `holder` no longer holds it (it expired and another runner took it).
    async fn renew_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, CheckpointError>;

    /// Gives up `holder`'s lease of `thread` (a no-op if it does not hold it).
    async fn release_lease(&self, thread: &str, holder: &str) -> Result<(), CheckpointError>;

    /// Makes everything written so far durable. A run calls it before it returns; a
    /// saver that commits lazily (`PgDurability::RunEnd`, `SqliteDurability::RunEnd`) waits
    /// for the disk here. The default does nothing.
    async fn flush(&self) -> Result<(), CheckpointError> {
        Ok(())
    }

    /// Ends a run (or an `update_state`) of `thread`: makes everything written so far
    /// durable, as [`flush`](Self::flush) does, and gives up `holder`'s lease. The
    /// lease is given up even when making the writes durable fails. The default calls
    /// the two; a saver that can do both in one commit overrides it.
    async fn end_run(&self, thread: &str, holder: &str) -> Result<(), CheckpointError> {
        let flushed = self.flush().await;
        let released = self.release_lease(thread, holder).await;
        flushed.and(released)
    }
}

/// The checkpoints a prune keeps: the head lineage, possibly truncated.
pub(crate) fn prune_keep_set(
    all: &[Checkpoint],
    head: Option<CheckpointId>,
    keep: Prune,
) -> std::collections::HashSet<CheckpointId> {
    let by_id: std::collections::HashMap<CheckpointId, &Checkpoint> =
        all.iter().map(|c| (c.id, c)).collect();
    let mut lineage = Vec::new();
    let mut cursor = head;
    while let Some(id) = cursor {
        let Some(c) = by_id.get(&id) else { break };
        lineage.push(id);
        cursor = c.parent_id;
    }
    if let Prune::KeepLast(n) = keep {
        lineage.truncate(n.max(1));
    }
    lineage.into_iter().collect()
}

/// The blobs needed to rebuild the given checkpoints: (channel, version) pairs,
/// following delta chains back to their snapshots through the `base` links.
pub(crate) fn needed_blobs<'a>(
    kept: impl IntoIterator<Item = &'a Checkpoint>,
    blob_base: impl Fn(&str, CheckpointId) -> Option<BlobKind>,
) -> std::collections::HashSet<(Arc<str>, CheckpointId)> {
    let mut needed = std::collections::HashSet::new();
    for c in kept {
        for ch in &c.channels {
            let mut version = ch.version;
            loop {
                if !needed.insert((ch.channel.clone(), version)) {
                    break;
                }
                match blob_base(&ch.channel, version) {
                    Some(BlobKind::Delta { base }) => version = base,
                    _ => break,
                }
            }
        }
    }
    needed
}

/// The unanswered interrupts among the writes of a thread's head checkpoint; writes
/// that do not decode are a [`CheckpointError::Decode`].
pub(crate) fn unanswered_interrupts(
    thread: &str,
    head: &dyn std::fmt::Display,
    writes: &[PendingWrite],
) -> Result<Vec<InterruptId>, CheckpointError> {
    let records = pending::collect(writes)
        .map_err(CheckpointError::decoding_with(thread, || {
            format!("pending writes of checkpoint {head}")
        }))?;
    Ok(records.pending.iter().map(|(_, id)| *id).collect())
}
