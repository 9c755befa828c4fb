//! What runs and the state API return.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::checkpoint::CheckpointSource;
use crate::context::RunConfig;
use crate::ids::{CheckpointId, TaskId};
use crate::interrupt::PendingInterrupt;
use crate::state::State;

/// How a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStatus {
    /// Nothing left to run.
    Done,
    /// Paused at one or more interrupts: see [`RunOutput::interrupts`].
    Interrupted,
    /// Paused at a static breakpoint (`interrupt_before` / `interrupt_after`);
    /// `invoke(None, ..)` continues.
    Breakpoint,
}

/// The result of `invoke`.
#[derive(Debug, Clone)]
pub struct RunOutput<S: State> {
    /// The state. At an interrupt it includes the writes of tasks that finished in the
    /// paused superstep.
    pub values: Arc<S>,
    /// The pending interrupts, in task order; empty unless interrupted.
    pub interrupts: Vec<PendingInterrupt>,
    /// The nodes that will run next.
    pub next: Vec<String>,
    /// How the run stopped.
    pub status: RunStatus,
    /// The thread's head checkpoint (none without a checkpointer).
    pub checkpoint_id: Option<CheckpointId>,
}

impl<S: State> RunOutput<S> {
    /// Whether the run paused at interrupts.
    pub fn is_interrupted(&self) -> bool {
        self.status == RunStatus::Interrupted
    }

    /// Whether the run finished.
    pub fn is_done(&self) -> bool {
        self.status == RunStatus::Done
    }
}

/// A task of a checkpoint, as the state API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// Its id.
    pub id: TaskId,
    /// Its node.
    pub name: String,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// The interrupts it raised (at the head: the unanswered ones).
    pub interrupts: Vec<PendingInterrupt>,
    /// Its update as JSON, if it finished.
    pub result: Option<Value>,
}

/// A thread at one checkpoint.
#[derive(Debug, Clone)]
pub struct StateSnapshot<S: State> {
    /// The state (at the head, with the writes of tasks that finished in a paused
    /// superstep).
    pub values: Arc<S>,
    /// The nodes that run next: empty exactly when the thread is done. In a paused
    /// step, the tasks that have not finished.
    pub next: Vec<String>,
    /// The tasks of the next superstep.
    pub tasks: Vec<TaskInfo>,
    /// Pending interrupts (at the head), or the interrupts raised (in history).
    pub interrupts: Vec<PendingInterrupt>,
    /// The checkpoint.
    pub checkpoint_id: CheckpointId,
    /// Its parent.
    pub parent_checkpoint_id: Option<CheckpointId>,
    /// Its superstep.
    pub step: i64,
    /// Why it was written.
    pub source: CheckpointSource,
    /// When.
    pub created_at: SystemTime,
    /// Its metadata.
    pub metadata: Map<String, Value>,
    /// A config pointing at this checkpoint (for `get_state` or time travel).
    pub config: RunConfig,
    /// A config pointing at the parent.
    pub parent_config: Option<RunConfig>,
}
