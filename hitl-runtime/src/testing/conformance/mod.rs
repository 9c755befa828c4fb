//! The checkpointer conformance suite: every backend runs these checks.
//!
//! Implement [`Harness`] for your backend and expand
//! [`checkpointer_conformance!`](crate::checkpointer_conformance) in a test module: it generates one
//! `#[tokio::test]` per check.
//!
//! ```ignore
//! struct Memory;
//! #[async_trait::async_trait]
//! impl Harness for Memory { /* fresh, reopen, corrupt_blob */ }
//! hitl_runtime::checkpointer_conformance!(Memory);
//! ```

use std::sync::Arc;

use serde_json::json;
use serde_json::value::RawValue;

use crate::InMemorySaver;
use crate::checkpoint::{
    Blob, BlobKind, ChannelVersion, Checkpoint, CheckpointSource, CheckpointWrite, Checkpointer,
    PendingWrite, TaskSpec, WriteKind,
};
use crate::ids::{CheckpointId, TaskId};

mod governance;
mod records;
mod threads;

pub use governance::{
    decision_records_are_chained_and_kept, expired_interrupts_time_out_once,
    quorum_counts_distinct_reviewers,
};
pub use records::{
    compare_and_set_on_the_head, head_writes_go_with_the_checkpoint, history_order_and_filters,
    pending_writes_idempotency, round_trip,
};
pub use threads::{
    damage_to_stored_rows_is_detected, decode_failure_is_an_error, delete_thread,
    delta_channels_across_snapshots, migrations_are_idempotent, pending_interrupt_inbox,
    prune_keeps_what_the_head_needs, run_leases,
};

/// How the suite drives one backend.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// The saver type.
    type Saver: Checkpointer + Clone;

    /// A saver on empty storage (migrations applied).
    async fn fresh(&self) -> Self::Saver;

    /// A new handle on the same storage (as after a restart): migrations run again
    /// and must be a no-op.
    async fn reopen(&self, saver: &Self::Saver) -> Self::Saver;

    /// Overwrites the stored data of every blob of `channel` in `thread` (root
    /// namespace) with something that does not decode as that channel's value.
    async fn corrupt_blob(&self, saver: &Self::Saver, thread: &str, channel: &str);

    /// Changes stored bytes of `thread` behind the saver's back, as a disk fault or a
    /// hand edit would, keeping them decodable where it can; returns how many rows it
    /// changed. A backend that stores no bytes (the in-memory saver keeps values)
    /// returns `None`, and the damage checks do not apply to it.
    async fn damage(&self, saver: &Self::Saver, thread: &str, damage: Damage) -> Option<u64> {
        let _ = (saver, thread, damage);
        None
    }
}

/// A kind of damage to stored rows, for [`Harness::damage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// A checkpoint record's `next` tasks removed (still valid JSON).
    RecordNextRemoved,
    /// A checkpoint record's channel renamed (still valid JSON).
    RecordChannelRenamed,
    /// A checkpoint record's step changed (still valid JSON).
    RecordStepChanged,
    /// A blob's data replaced by `[]` (still valid JSON).
    BlobEmptied,
    /// A blob's data replaced by another valid value.
    BlobChanged,
    /// A pending write's value replaced by another valid value.
    WriteChanged,
    /// A pending write's kind changed.
    WriteKindChanged,
    /// The thread's head replaced by something that is not a checkpoint id.
    HeadGarbled,
}

impl Damage {
    /// Every kind.
    pub const ALL: [Damage; 8] = [
        Damage::RecordNextRemoved,
        Damage::RecordChannelRenamed,
        Damage::RecordStepChanged,
        Damage::BlobEmptied,
        Damage::BlobChanged,
        Damage::WriteChanged,
        Damage::WriteKindChanged,
        Damage::HeadGarbled,
    ];

    /// The SQL (`{s}.` before table names is the schema's prefix; `{t}` the thread)
    /// both SQL savers' harnesses run for it.
    pub fn sql(self) -> &'static str {
        match self {
            Damage::RecordNextRemoved => {
                "UPDATE {s}hitl_checkpoints SET record = replace(record, '\"next\":', '\"nxt\":') WHERE thread = '{t}'"
            }
            Damage::RecordChannelRenamed => {
                "UPDATE {s}hitl_checkpoints SET record = replace(record, '\"c\":\"lines\"', '\"c\":\"lynes\"') WHERE thread = '{t}'"
            }
            Damage::RecordStepChanged => {
                "UPDATE {s}hitl_checkpoints SET record = replace(record, '\"step\":', '\"step\":1') WHERE thread = '{t}'"
            }
            Damage::BlobEmptied => "UPDATE {s}hitl_blobs SET data = '[]' WHERE thread = '{t}'",
            Damage::BlobChanged => {
                "UPDATE {s}hitl_blobs SET data = replace(data, 'line', 'LINE') WHERE thread = '{t}'"
            }
            Damage::WriteChanged => {
                "UPDATE {s}hitl_writes SET value = replace(value, 'question', 'QUESTION') WHERE thread = '{t}'"
            }
            Damage::WriteKindChanged => {
                "UPDATE {s}hitl_writes SET kind = 'error' WHERE thread = '{t}' AND kind = 'interrupt'"
            }
            Damage::HeadGarbled => {
                "UPDATE {s}hitl_heads SET head = 'not-a-checkpoint' WHERE thread = '{t}'"
            }
        }
    }
}

/// The in-memory saver's harness.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryHarness;

#[async_trait::async_trait]
impl Harness for MemoryHarness {
    type Saver = InMemorySaver;

    async fn fresh(&self) -> InMemorySaver {
        InMemorySaver::new()
    }

    async fn reopen(&self, saver: &InMemorySaver) -> InMemorySaver {
        saver.clone()
    }

    async fn corrupt_blob(&self, saver: &InMemorySaver, thread: &str, channel: &str) {
        assert!(
            saver.corrupt_blob(thread, "", channel, r#"{"corrupt": true}"#),
            "no blob of channel `{channel}` in thread `{thread}`"
        );
    }
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).expect("valid JSON")
}

fn checkpoint(id: CheckpointId, parent: Option<CheckpointId>, step: i64) -> Checkpoint {
    let mut metadata = serde_json::Map::new();
    metadata.insert("step_tag".into(), json!(step));
    Checkpoint {
        id,
        parent_id: parent,
        step,
        source: if parent.is_some() {
            CheckpointSource::Loop
        } else {
            CheckpointSource::Input
        },
        created_at_ms: 1_700_000_000_000 + step.max(0) as u64,
        channels: vec![ChannelVersion {
            channel: "value".into(),
            version: id,
            delta: None,
        }],
        versions_seen: [("node".to_string(), id)].into_iter().collect(),
        next: vec![
            TaskSpec::node("node"),
            TaskSpec {
                node: "send".into(),
                input: Some(raw(r#"{"item":1}"#)),
            },
        ],
        metadata,
    }
}

fn full_blob(channel: &str, version: CheckpointId, json: &str) -> Blob {
    Blob {
        channel: channel.into(),
        version,
        kind: BlobKind::Full,
        data: raw(json),
    }
}

fn write(task: u128, idx: i32, kind: WriteKind, json: &str) -> PendingWrite {
    PendingWrite {
        task_id: TaskId::from_u128(task),
        idx,
        kind,
        value: raw(json),
    }
}

async fn put_chain<C: Checkpointer>(
    saver: &C,
    thread: &str,
    ns: &str,
    n: usize,
) -> Vec<CheckpointId> {
    let mut ids = Vec::new();
    let mut parent = None;
    for step in 0..n {
        let id = CheckpointId::new_after(parent);
        saver
            .put(CheckpointWrite {
                thread: thread.into(),
                ns: ns.into(),
                checkpoint: Arc::new(checkpoint(id, parent, step as i64 - 1)),
                blobs: vec![full_blob("value", id, &format!("{{\"n\":{step}}}"))],
                head_writes: Vec::new(),
                expected_head: parent,
            })
            .await
            .expect("put");
        ids.push(id);
        parent = Some(id);
    }
    ids
}

/// Generates one `#[tokio::test]` per conformance check for a [`Harness`].
///
/// Attributes after a `;` go on every generated test, e.g.
/// `checkpointer_conformance!(MyHarness::new(); #[ignore = "needs a database"])`.
#[macro_export]
macro_rules! checkpointer_conformance {
    ($harness:expr $(; $(#[$attr:meta])*)?) => {
        $crate::checkpointer_conformance!(@tests [$($(#[$attr])*)?] $harness;
            round_trip,
            history_order_and_filters,
            compare_and_set_on_the_head,
            head_writes_go_with_the_checkpoint,
            pending_writes_idempotency,
            delta_channels_across_snapshots,
            delete_thread,
            migrations_are_idempotent,
            decode_failure_is_an_error,
            prune_keeps_what_the_head_needs,
            pending_interrupt_inbox,
            run_leases,
            damage_to_stored_rows_is_detected,
            decision_records_are_chained_and_kept,
            expired_interrupts_time_out_once,
            quorum_counts_distinct_reviewers,
        );
    };
    (@tests $attrs:tt $harness:expr; $($name:ident),* $(,)?) => {
        $( $crate::checkpointer_conformance!(@one $attrs $harness; $name); )*
    };
    (@one [$($attr:tt)*] $harness:expr; $name:ident) => {
        #[::tokio::test]
        $($attr)*
        async fn $name() {
            $crate::testing::conformance::$name(&$harness).await;
        }
    };
}
