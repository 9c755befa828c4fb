//! What a run is given and what its tasks see: [`RunConfig`], [`NodeContext`], the
//! stream modes nodes write to.

mod config;
mod modes;

pub(crate) use config::NodeKey;
pub use config::RunConfig;
pub use modes::{StreamMode, StreamModes};

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::checkpoint::Checkpointer;
use crate::error::{Interrupted, NodeError};
use crate::ids::{CheckpointId, InterruptId, TaskId};
use crate::interrupt::{Interrupt, InterruptRequest, PendingInterrupt};
use crate::message::MessageChunk;

/// Events nodes emit while they run (custom and messages stream modes).
#[derive(Debug, Clone)]
pub(crate) enum ContextEvent {
    Custom {
        ns: Arc<str>,
        node: Arc<str>,
        value: Value,
    },
    Message {
        ns: Arc<str>,
        node: Arc<str>,
        chunk: MessageChunk,
    },
}

pub(crate) type ContextSink = Arc<dyn Fn(ContextEvent) + Send + Sync>;

/// What every task of one run (and of its subgraphs) shares.
pub(crate) struct RunShared {
    pub(crate) thread: Arc<str>,
    pub(crate) saver: Arc<dyn Checkpointer>,
    pub(crate) answers: Arc<HashMap<InterruptId, Value>>,
    /// The head's interrupts still waiting for an answer, as stored.
    pub(crate) waiting: HashMap<InterruptId, PendingInterrupt>,
    pub(crate) reviewer: Option<crate::governance::Reviewer>,
    pub(crate) events: Option<ContextSink>,
    pub(crate) modes: StreamModes,
    pub(crate) config: RunConfig,
}

#[derive(Default)]
pub(crate) struct InterruptState {
    next_ordinal: usize,
    raised: Vec<PendingInterrupt>,
    failure: Option<String>,
}

pub(crate) struct TaskShared {
    pub(crate) run: Arc<RunShared>,
    pub(crate) ns: Arc<str>,
    pub(crate) node: Arc<str>,
    pub(crate) task_id: TaskId,
    pub(crate) checkpoint_id: CheckpointId,
    pub(crate) step: i64,
    pub(crate) input: Option<Box<RawValue>>,
    pub(crate) interrupts: Mutex<InterruptState>,
}

/// The context of one task: who it is, its input, interrupts, and stream writers.
/// Cheap to clone.
#[derive(Clone)]
pub struct NodeContext {
    pub(crate) task: Arc<TaskShared>,
}

impl fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeContext")
            .field("thread", &self.task.run.thread)
            .field("ns", &self.task.ns)
            .field("node", &self.task.node)
            .field("task_id", &self.task.task_id)
            .field("step", &self.task.step)
            .finish_non_exhaustive()
    }
}

impl NodeContext {
    pub(crate) fn new(task: TaskShared) -> Self {
        NodeContext {
            task: Arc::new(task),
        }
    }

    fn lock(&self) -> MutexGuard<'_, InterruptState> {
        self.task
            .interrupts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.task.node
    }

    /// The task's id (stable across re-runs of this task).
    pub fn task_id(&self) -> TaskId {
        self.task.task_id
    }

    /// The thread's id ("" when the graph has no checkpointer).
    pub fn thread_id(&self) -> &str {
        &self.task.run.thread
    }

    /// The checkpoint the task runs on.
    pub fn checkpoint_id(&self) -> CheckpointId {
        self.task.checkpoint_id
    }

    /// The superstep the task runs in (its checkpoint's step + 1).
    pub fn step(&self) -> i64 {
        self.task.step
    }

    /// The checkpoint namespace ("" at the root).
    pub fn namespace(&self) -> &str {
        &self.task.ns
    }

    /// Who answered in the resume that started this run, if the caller said
    /// ([`crate::Command::by`]).
    pub fn decided_by(&self) -> Option<&crate::governance::Reviewer> {
        self.task.run.reviewer.as_ref()
    }

    /// The run's config.
    pub fn config(&self) -> &RunConfig {
        &self.task.run.config
    }

    /// The run's context data of type `T`, set with [`RunConfig::context`].
    pub fn context<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.task.run.config.context.as_deref()?.downcast_ref()
    }

    /// The input of a `Send` task, decoded.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, NodeError> {
        let raw = self.task.input.as_deref().ok_or_else(|| {
            NodeError::msg(format!(
                "node `{}` read a Send input, but this task was not started by a Send",
                self.task.node
            ))
        })?;
        serde_json::from_str(raw.get()).map_err(|e| {
            NodeError::msg(format!(
                "the Send input of `{}` does not decode: {e}",
                self.task.node
            ))
        })
    }

    /// The raw JSON input of a `Send` task.
    pub fn input_json(&self) -> Option<&RawValue> {
        self.task.input.as_deref()
    }

    /// Pauses the task until a human answers, and returns the answer.
    ///
    /// The first time, there is no answer: this returns `Err(Interrupted)`, which you
    /// propagate with `?`; the task stops, its other output is dropped, and the run
    /// returns the interrupt. When the thread is resumed with an answer, the task runs
    /// again **from its start**, and this call returns the answer. The i-th call in a
    /// task returns the i-th answer, so code before an interrupt runs again on every
    /// resume: keep it free of side effects, or make them idempotent.
    ///
    /// The answer was checked against `I::Resume`'s JSON schema before it was stored.
    pub async fn interrupt<I: Interrupt>(&self, value: I) -> Result<I::Resume, Interrupted> {
        // The payload is serialized only when there is no answer yet.
        let answer = self.interrupt_lazy(|| {
            Ok(InterruptRequest {
                value: serde_json::to_value(&value).map_err(|e| {
                    format!("the interrupt payload does not serialize to JSON: {e}")
                })?,
                resume_schema: I::resume_schema(),
                kind: None,
                payload_type: I::NAME.map(str::to_owned),
                governance: None,
            }
            .governed(value.governance()))
        })?;
        match serde_json::from_value(answer) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.fail(format!(
                    "the stored answer does not decode as `{}`: {e} (its JSON schema and its \
                     Deserialize impl disagree)",
                    std::any::type_name::<I::Resume>()
                ));
                Err(Interrupted)
            }
        }
    }

    /// [`interrupt`](Self::interrupt) with an explicit payload, schema and validator
    /// kind; returns the raw JSON answer.
    pub fn interrupt_with(&self, request: InterruptRequest) -> Result<Value, Interrupted> {
        self.interrupt_lazy(|| Ok(request))
    }

    /// [`interrupt_with`](Self::interrupt_with), building the request only when there
    /// is no answer yet (a resumed task gets its answer without building it again). A
    /// build error fails the task with that message.
    pub(crate) fn interrupt_lazy(
        &self,
        build: impl FnOnce() -> Result<InterruptRequest, String>,
    ) -> Result<Value, Interrupted> {
        let mut st = self.lock();
        let ordinal = st.next_ordinal;
        st.next_ordinal += 1;
        if !st.raised.is_empty() || st.failure.is_some() {
            // Already interrupted (the error was swallowed): stay interrupted.
            return Err(Interrupted);
        }
        let id = InterruptId::derive(&self.task.ns, self.task.task_id, ordinal);
        if let Some(answer) = self.task.run.answers.get(&id) {
            return Ok(answer.clone());
        }
        // A task raises one interrupt at a time: room for exactly one (a default
        // first push would make room for four, a large block for the allocator).
        st.raised.reserve_exact(1);
        // Raised before and still waiting (some approvals given, or other interrupts
        // answered): it stays what it was, deadline included.
        if let Some(stored) = self.task.run.waiting.get(&id) {
            st.raised.push(stored.clone());
            return Err(Interrupted);
        }
        let request = match build() {
            Ok(request) => request,
            Err(message) => {
                st.failure.get_or_insert(message);
                return Err(Interrupted);
            }
        };
        st.raised.push(PendingInterrupt {
            id,
            value: request.value,
            resume_schema: request.resume_schema,
            node: self.task.node.to_string(),
            ns: self.task.ns.to_string(),
            task_id: self.task.task_id,
            kind: request.kind,
            payload_type: request.payload_type,
            governance: request.governance.map(|g| g.stamp(crate::ids::now_ms())),
            approved_by: Vec::new(),
        });
        Err(Interrupted)
    }

    /// Whether this task has raised an interrupt (even if the error was swallowed).
    pub fn is_interrupted(&self) -> bool {
        !self.lock().raised.is_empty()
    }

    /// Marks the task interrupted by interrupts raised below it (a subgraph).
    pub(crate) fn propagate(&self, interrupts: Vec<PendingInterrupt>) {
        self.lock().raised.extend(interrupts);
    }

    fn fail(&self, message: String) {
        self.lock().failure.get_or_insert(message);
    }

    pub(crate) fn take_outcome(&self) -> (Vec<PendingInterrupt>, Option<String>) {
        let mut st = self.lock();
        (std::mem::take(&mut st.raised), st.failure.take())
    }

    /// A writer for the custom stream mode.
    pub fn writer(&self) -> StreamWriter {
        StreamWriter { cx: self.clone() }
    }

    /// Whether the run streams model tokens (messages mode).
    pub fn streams_messages(&self) -> bool {
        self.task.run.events.is_some() && self.task.run.modes.contains(StreamMode::Messages)
    }

    /// Emits a model token chunk to the messages stream mode.
    pub fn emit_message(&self, chunk: MessageChunk) {
        if self.streams_messages()
            && let Some(sink) = &self.task.run.events
        {
            sink(ContextEvent::Message {
                ns: self.task.ns.clone(),
                node: self.task.node.clone(),
                chunk,
            });
        }
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.task
            .run
            .config
            .cancel
            .as_ref()
            .is_some_and(tokio_util::sync::CancellationToken::is_cancelled)
    }
}

/// Writes values to the custom stream mode. Writes are dropped when the run is not
/// streaming that mode. On a re-run (after a resume) the task writes them again.
#[derive(Clone, Debug)]
pub struct StreamWriter {
    cx: NodeContext,
}

impl StreamWriter {
    /// Emits a value.
    pub fn write(&self, value: impl Serialize) {
        let run = &self.cx.task.run;
        if !run.modes.contains(StreamMode::Custom) {
            return;
        }
        if let (Some(sink), Ok(value)) = (&run.events, serde_json::to_value(value)) {
            sink(ContextEvent::Custom {
                ns: self.cx.task.ns.clone(),
                node: self.cx.task.node.clone(),
                value,
            });
        }
    }
}
