//! Streaming a run as typed events.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::output::StateSnapshot;
use crate::context::{StreamMode, StreamModes};
use crate::error::RunError;
use crate::ids::TaskId;
use crate::interrupt::PendingInterrupt;
use crate::message::MessageChunk;
use crate::state::State;

/// How a task ended, in the tasks stream mode.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// It finished; its update as JSON, if it wrote one.
    Finished(Option<Value>),
    /// It failed.
    Failed(String),
    /// It paused at these interrupts.
    Interrupted(Vec<PendingInterrupt>),
}

/// One event of a streamed run.
///
/// An interrupt is always one [`StreamEvent::Interrupt`] carrying the whole pending set,
/// whatever the modes.
#[non_exhaustive]
pub enum StreamEvent<S: State> {
    /// The state (values mode).
    Values {
        /// The state.
        values: Arc<S>,
    },
    /// A task's update (updates mode).
    Update {
        /// The node.
        node: String,
        /// The task.
        task_id: TaskId,
        /// What it wrote, if anything.
        update: Option<S::Update>,
    },
    /// A piece of a model's message (messages mode).
    Message {
        /// The namespace of the node.
        ns: String,
        /// The node running the model.
        node: String,
        /// The piece.
        chunk: MessageChunk,
    },
    /// A value a node wrote (custom mode).
    Custom {
        /// The namespace of the node.
        ns: String,
        /// The node.
        node: String,
        /// The value.
        value: Value,
    },
    /// A task started (tasks mode).
    TaskStart {
        /// The task.
        task_id: TaskId,
        /// Its node.
        node: String,
        /// Its superstep.
        step: i64,
    },
    /// A task ended (tasks mode).
    TaskEnd {
        /// The task.
        task_id: TaskId,
        /// Its node.
        node: String,
        /// Its superstep.
        step: i64,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// A checkpoint was written (checkpoints mode).
    Checkpoint(Box<StateSnapshot<S>>),
    /// The run paused: every pending interrupt.
    Interrupt {
        /// The pending interrupts.
        interrupts: Vec<PendingInterrupt>,
    },
}

impl<S: State> fmt::Debug for StreamEvent<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamEvent::Values { values } => {
                f.debug_struct("Values").field("values", values).finish()
            }
            StreamEvent::Update { node, update, .. } => f
                .debug_struct("Update")
                .field("node", node)
                .field("update", update)
                .finish(),
            StreamEvent::Message { node, chunk, .. } => f
                .debug_struct("Message")
                .field("node", node)
                .field("chunk", chunk)
                .finish(),
            StreamEvent::Custom { node, value, .. } => f
                .debug_struct("Custom")
                .field("node", node)
                .field("value", value)
                .finish(),
            StreamEvent::TaskStart { node, step, .. } => f
                .debug_struct("TaskStart")
                .field("node", node)
                .field("step", step)
                .finish(),
            StreamEvent::TaskEnd { node, outcome, .. } => f
                .debug_struct("TaskEnd")
                .field("node", node)
                .field("outcome", outcome)
                .finish(),
            StreamEvent::Checkpoint(s) => f
                .debug_struct("Checkpoint")
                .field("step", &s.step)
                .field("next", &s.next)
                .finish(),
            StreamEvent::Interrupt { interrupts } => f
                .debug_struct("Interrupt")
                .field("interrupts", interrupts)
                .finish(),
        }
    }
}

pub(crate) type EventTx<S> = mpsc::UnboundedSender<Result<StreamEvent<S>, RunError>>;

/// Where a streamed run sends its events.
pub(crate) struct Sink<S: State> {
    pub(crate) tx: EventTx<S>,
    pub(crate) modes: StreamModes,
}

impl<S: State> Clone for Sink<S> {
    fn clone(&self) -> Self {
        Sink {
            tx: self.tx.clone(),
            modes: self.modes,
        }
    }
}

impl<S: State> Sink<S> {
    pub(crate) fn wants(&self, mode: StreamMode) -> bool {
        self.modes.contains(mode)
    }

    pub(crate) fn send(&self, event: StreamEvent<S>) {
        // The receiver may be gone (stream dropped); the run is being cancelled then.
        let _ = self.tx.send(Ok(event));
    }
}

/// The stream returned by `stream()`: events as the run produces them, then the run's
/// error if it failed. Dropping it cancels the run (finished tasks keep their writes).
pub struct RunStream<S: State> {
    pub(crate) rx: mpsc::UnboundedReceiver<Result<StreamEvent<S>, RunError>>,
    pub(crate) handle: JoinHandle<()>,
}

impl<S: State> fmt::Debug for RunStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunStream").finish_non_exhaustive()
    }
}

impl<S: State> Stream for RunStream<S> {
    type Item = Result<StreamEvent<S>, RunError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<S: State> Drop for RunStream<S> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
