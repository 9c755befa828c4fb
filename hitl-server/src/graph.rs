//! Graphs of any state type behind one object-safe trait: JSON in, JSON out.
//!
//! [`JsonGraph`] is what the server runs. It is implemented for every
//! [`CompiledGraph<S>`](hitl_runtime::CompiledGraph), so `Server::builder().graph("agent",
//! agent)` takes agents and graphs of any state. Inputs and updates are deserialized
//! into the graph's update type (`S::Update`); states are serialized with `S`'s own
//! `Serialize`.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures_core::Stream;
use futures_util::StreamExt;
use hitl_runtime::checkpoint::{CheckpointSource, ListFilter};
use hitl_runtime::message::MessageChunk;
use hitl_runtime::{
    CheckpointId, Checkpointer, Command, CompiledGraph, Input, InterruptId, NodeHandle,
    PendingInterrupt, Reviewer, RunConfig, RunError, State, StateSnapshot, StreamEvent,
    StreamModes, TaskId, TaskInfo, TaskOutcome,
};
use serde_json::{Map, Value};

/// A problem with what a client asked a graph to do, found before anything ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The input or update does not fit the graph's state.
    #[error(
        "{what} does not fit the state of this graph: {message}; send an object whose keys are state fields"
    )]
    InvalidUpdate {
        /// `input`, `command.update` or `values`.
        what: &'static str,
        /// Why, with the path of the offending field.
        message: String,
    },
    /// A node name the graph does not have.
    #[error("{what} names node `{name}`, which this graph does not have; its nodes are: {}", known.join(", "))]
    UnknownNode {
        /// Where the name was given (`command.goto`, `as_node`, `interrupt_before`, ...).
        what: &'static str,
        /// The name.
        name: String,
        /// The graph's nodes.
        known: Vec<String>,
    },
    /// The graph's state does not serialize to JSON.
    #[error("the graph's state does not serialize to JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The runtime refused or failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What a run starts with, as JSON.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JsonInput {
    /// New input: an update of the state (an object of state fields).
    Update(Value),
    /// A resume, an update or a goto.
    Command(JsonCommand),
    /// Continue the thread where it is (or fork it from the config's checkpoint).
    Continue,
}

/// A command as JSON: `{"resume": .., "update": .., "goto": ..}`.
#[derive(Debug, Clone, Default)]
pub struct JsonCommand {
    /// The answer(s) to pending interrupts.
    pub resume: Option<JsonResume>,
    /// An update of the state, applied before the pending tasks run again.
    pub update: Option<Value>,
    /// Nodes to run next.
    pub goto: Vec<String>,
    /// Who answers (checked against governed reviews, written in decision records).
    pub reviewer: Option<Reviewer>,
    /// Set: `resume` holds the declared timeout answers of reviews expired at this
    /// time (ms since the epoch), applied by the system ([`Command::timeout`]).
    pub timeout_at: Option<u64>,
}

/// A resume value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JsonResume {
    /// One answer, for the only pending interrupt.
    Single(Value),
    /// Answers by interrupt id.
    ById(Vec<(InterruptId, Value)>),
}

/// Which nodes a breakpoint setting names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeSelection {
    /// Every node (`"*"`).
    All,
    /// These nodes.
    Named(Vec<String>),
}

/// Per-run settings, by name.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct JsonRunOptions {
    /// The stream modes to produce.
    pub modes: StreamModes,
    /// Pause before these nodes (replaces the graph's setting).
    pub interrupt_before: Option<NodeSelection>,
    /// Pause after these nodes (replaces the graph's setting).
    pub interrupt_after: Option<NodeSelection>,
}

impl JsonRunOptions {
    /// Options streaming `modes`.
    pub fn new(modes: StreamModes) -> Self {
        JsonRunOptions {
            modes,
            ..Default::default()
        }
    }

    /// Sets the breakpoints.
    pub fn breakpoints(
        mut self,
        before: Option<NodeSelection>,
        after: Option<NodeSelection>,
    ) -> Self {
        self.interrupt_before = before;
        self.interrupt_after = after;
        self
    }
}

/// One event of a run, with the state as JSON. Mirrors [`StreamEvent`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JsonEvent {
    /// The whole state.
    Values(Value),
    /// A task's update.
    Update {
        /// The node.
        node: String,
        /// The task.
        task_id: TaskId,
        /// What it wrote, if anything.
        update: Option<Value>,
    },
    /// A piece of a model's message.
    Message {
        /// The namespace of the node.
        ns: String,
        /// The node.
        node: String,
        /// The piece.
        chunk: MessageChunk,
    },
    /// A value a node wrote to the custom stream.
    Custom {
        /// The namespace of the node.
        ns: String,
        /// The node.
        node: String,
        /// The value.
        value: Value,
    },
    /// A task started.
    TaskStart {
        /// The task.
        task_id: TaskId,
        /// Its node.
        node: String,
        /// Its superstep.
        step: i64,
    },
    /// A task ended.
    TaskEnd {
        /// The task.
        task_id: TaskId,
        /// Its node.
        node: String,
        /// Its superstep.
        step: i64,
        /// How.
        outcome: TaskOutcome,
    },
    /// A checkpoint was written.
    Checkpoint(Box<JsonSnapshot>),
    /// The run paused: every pending interrupt (empty at a static breakpoint).
    Interrupt(Vec<PendingInterrupt>),
}

/// A thread at one checkpoint, with the state as JSON. Mirrors [`StateSnapshot`].
#[derive(Debug, Clone)]
pub struct JsonSnapshot {
    /// The state.
    pub values: Value,
    /// The nodes that run next.
    pub next: Vec<String>,
    /// The tasks of the next superstep.
    pub tasks: Vec<TaskInfo>,
    /// Pending interrupts (at the head) or the interrupts raised (in history).
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
}

impl JsonSnapshot {
    fn of<S: State>(s: StateSnapshot<S>) -> Result<Self, CallError> {
        Ok(JsonSnapshot {
            values: encode(&*s.values)?,
            next: s.next,
            tasks: s.tasks,
            interrupts: s.interrupts,
            checkpoint_id: s.checkpoint_id,
            parent_checkpoint_id: s.parent_checkpoint_id,
            step: s.step,
            source: s.source,
            created_at: s.created_at,
            metadata: s.metadata,
        })
    }
}

/// The events of a running graph. Dropping it cancels the run (finished tasks keep
/// their writes).
pub struct JsonRunStream {
    inner: Pin<Box<dyn Stream<Item = Result<JsonEvent, CallError>> + Send>>,
}

impl JsonRunStream {
    /// Wraps a stream of events.
    pub fn new(stream: impl Stream<Item = Result<JsonEvent, CallError>> + Send + 'static) -> Self {
        JsonRunStream {
            inner: Box::pin(stream),
        }
    }
}

impl fmt::Debug for JsonRunStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRunStream").finish_non_exhaustive()
    }
}

impl Stream for JsonRunStream {
    type Item = Result<JsonEvent, CallError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A graph the server can run, with JSON in and out. Object safe: the server keeps
/// `Arc<dyn JsonGraph>`s of different state types side by side.
///
/// Implemented for every [`CompiledGraph<S>`]; implement it yourself only to put
/// something else behind the API.
#[async_trait::async_trait]
pub trait JsonGraph: Send + Sync + fmt::Debug + 'static {
    /// The node names.
    fn node_names(&self) -> Vec<String>;

    /// The checkpointer holding the graph's threads. The server requires one.
    fn checkpointer(&self) -> Option<Arc<dyn Checkpointer>>;

    /// Checks an input without running anything: updates must fit the state, node
    /// names must exist.
    fn check(&self, input: &JsonInput, options: &JsonRunOptions) -> Result<(), CallError>;

    /// Starts a run on `cfg`'s thread. Must be called within a tokio runtime.
    fn stream(
        &self,
        input: JsonInput,
        cfg: &RunConfig,
        options: &JsonRunOptions,
    ) -> Result<JsonRunStream, CallError>;

    /// The thread at its head (or at `cfg`'s checkpoint); `None` for a thread without
    /// checkpoints.
    async fn state(&self, cfg: &RunConfig) -> Result<Option<JsonSnapshot>, CallError>;

    /// Checkpoints of the thread, newest first.
    async fn history(
        &self,
        cfg: &RunConfig,
        filter: &ListFilter,
    ) -> Result<Vec<JsonSnapshot>, CallError>;

    /// Writes a checkpoint with `values` applied as if `as_node` had returned them.
    /// Returns the new checkpoint.
    async fn update_state(
        &self,
        cfg: &RunConfig,
        values: Value,
        as_node: Option<&str>,
    ) -> Result<CheckpointId, CallError>;

    /// The threads with reviews expired at `now` and the timeout answers they
    /// declare ([`CompiledGraph::due_timeouts`]); the server's expiry task answers them.
    async fn due_timeouts(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(String, Vec<(InterruptId, Value)>)>, CallError> {
        let _ = now;
        Ok(Vec::new())
    }

    /// The JSON schema of the state, if known.
    fn state_schema(&self) -> Option<Value> {
        None
    }

    /// The JSON schema of the input, if known.
    fn input_schema(&self) -> Option<Value> {
        None
    }
}

fn decode_update<S: State>(what: &'static str, value: Value) -> Result<S::Update, CallError> {
    if value.is_null() {
        return Ok(S::Update::default());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        CallError::InvalidUpdate {
            what,
            message: if path == "." {
                inner.to_string()
            } else {
                format!("at `{path}`: {inner}")
            },
        }
    })
}

/// The name clients give the end of a graph.
const END_NODE: &str = "__end__";

fn node_of<S: State>(
    graph: &CompiledGraph<S>,
    what: &'static str,
    name: &str,
) -> Result<NodeHandle<S>, CallError> {
    graph.node(name).ok_or_else(|| CallError::UnknownNode {
        what,
        name: name.to_owned(),
        known: graph.node_names().map(str::to_owned).collect(),
    })
}

fn selection<S: State>(
    graph: &CompiledGraph<S>,
    what: &'static str,
    sel: &NodeSelection,
) -> Result<Vec<NodeHandle<S>>, CallError> {
    match sel {
        NodeSelection::All => Ok(graph
            .node_names()
            .filter_map(|n| graph.node(n))
            .collect::<Vec<_>>()),
        NodeSelection::Named(names) => names.iter().map(|n| node_of(graph, what, n)).collect(),
    }
}

fn typed_input<S: State>(
    graph: &CompiledGraph<S>,
    input: JsonInput,
) -> Result<Input<S>, CallError> {
    Ok(match input {
        JsonInput::Update(v) => Input::Update(decode_update::<S>("input", v)?),
        JsonInput::Continue => Input::Continue,
        // As on the reference server, a goto to `__end__` is accepted and does nothing
        // (Agent Chat UI's "Mark as Resolved" sends it): a command of nothing else
        // continues the thread, which pauses at its pending interrupts again.
        JsonInput::Command(c)
            if c.resume.is_none() && c.update.is_none() && c.goto.iter().all(|g| g == END_NODE) =>
        {
            Input::Continue
        }
        JsonInput::Command(c) => {
            let mut cmd = match (c.resume, c.timeout_at) {
                (Some(JsonResume::ById(list)), Some(at)) => Command::timeout(list, at),
                (Some(JsonResume::Single(v)), _) => Command::resume(v),
                (Some(JsonResume::ById(list)), None) => Command::resume_by_id(list),
                (None, _) => Command::new(),
            };
            if let Some(u) = c.update {
                cmd = cmd.with_update(decode_update::<S>("command.update", u)?);
            }
            if let (Some(reviewer), None) = (c.reviewer, c.timeout_at) {
                cmd = cmd.by(reviewer);
            }
            for name in c.goto.iter().filter(|g| *g != END_NODE) {
                cmd = cmd.goto(node_of(graph, "command.goto", name)?);
            }
            Input::Command(cmd)
        }
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Value, CallError> {
    serde_json::to_value(value).map_err(CallError::Encode)
}

/// The JSON form of an event; `None` for a kind of event this server does not know.
fn event_of<S: State>(e: StreamEvent<S>) -> Result<Option<JsonEvent>, CallError> {
    Ok(Some(match e {
        StreamEvent::Values { values } => JsonEvent::Values(encode(&*values)?),
        StreamEvent::Update {
            node,
            task_id,
            update,
        } => JsonEvent::Update {
            node,
            task_id,
            update: update.as_ref().map(encode).transpose()?,
        },
        StreamEvent::Message { ns, node, chunk } => JsonEvent::Message { ns, node, chunk },
        StreamEvent::Custom { ns, node, value } => JsonEvent::Custom { ns, node, value },
        StreamEvent::TaskStart {
            task_id,
            node,
            step,
        } => JsonEvent::TaskStart {
            task_id,
            node,
            step,
        },
        StreamEvent::TaskEnd {
            task_id,
            node,
            step,
            outcome,
        } => JsonEvent::TaskEnd {
            task_id,
            node,
            step,
            outcome,
        },
        StreamEvent::Checkpoint(s) => JsonEvent::Checkpoint(Box::new(JsonSnapshot::of(*s)?)),
        StreamEvent::Interrupt { interrupts } => JsonEvent::Interrupt(interrupts),
        _ => return Ok(None),
    }))
}

fn configured<S: State>(
    graph: &CompiledGraph<S>,
    cfg: &RunConfig,
    options: &JsonRunOptions,
) -> Result<RunConfig, CallError> {
    let mut cfg = cfg.clone();
    if let Some(sel) = &options.interrupt_before {
        cfg = cfg.interrupt_before(selection(graph, "interrupt_before", sel)?);
    }
    if let Some(sel) = &options.interrupt_after {
        cfg = cfg.interrupt_after(selection(graph, "interrupt_after", sel)?);
    }
    Ok(cfg)
}

#[async_trait::async_trait]
impl<S: State> JsonGraph for CompiledGraph<S> {
    fn node_names(&self) -> Vec<String> {
        CompiledGraph::node_names(self).map(str::to_owned).collect()
    }

    async fn due_timeouts(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(String, Vec<(InterruptId, Value)>)>, CallError> {
        let mut out = Vec::new();
        for due in CompiledGraph::due_timeouts(self, now).await? {
            match due {
                Ok(due) => out.push(due),
                Err((thread, e)) => {
                    tracing::error!(thread = %thread, error = %e, "could not read a thread for expiry");
                }
            }
        }
        Ok(out)
    }

    fn checkpointer(&self) -> Option<Arc<dyn Checkpointer>> {
        CompiledGraph::checkpointer(self).cloned()
    }

    fn check(&self, input: &JsonInput, options: &JsonRunOptions) -> Result<(), CallError> {
        typed_input(self, input.clone())?;
        configured(self, &RunConfig::default(), options)?;
        Ok(())
    }

    fn stream(
        &self,
        input: JsonInput,
        cfg: &RunConfig,
        options: &JsonRunOptions,
    ) -> Result<JsonRunStream, CallError> {
        let input = typed_input(self, input)?;
        let cfg = configured(self, cfg, options)?;
        let events = CompiledGraph::stream(self, input, &cfg, options.modes);
        Ok(JsonRunStream::new(events.filter_map(|item| {
            futures_util::future::ready(match item {
                Ok(e) => event_of(e).transpose(),
                Err(e) => Some(Err(CallError::Run(e))),
            })
        })))
    }

    async fn state(&self, cfg: &RunConfig) -> Result<Option<JsonSnapshot>, CallError> {
        match self.get_state(cfg).await {
            Ok(s) => Ok(Some(JsonSnapshot::of(s)?)),
            Err(RunError::UnknownThread { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn history(
        &self,
        cfg: &RunConfig,
        filter: &ListFilter,
    ) -> Result<Vec<JsonSnapshot>, CallError> {
        self.get_state_history_filtered(cfg, filter)
            .await?
            .into_iter()
            .map(JsonSnapshot::of)
            .collect()
    }

    async fn update_state(
        &self,
        cfg: &RunConfig,
        values: Value,
        as_node: Option<&str>,
    ) -> Result<CheckpointId, CallError> {
        let update = decode_update::<S>("values", values)?;
        // `as_node: "__end__"` ends the thread (Agent Inbox's "Ignore").
        let at = if as_node == Some(END_NODE) {
            CompiledGraph::update_state_as_end(self, cfg, update).await?
        } else {
            let node = as_node.map(|n| node_of(self, "as_node", n)).transpose()?;
            CompiledGraph::update_state(self, cfg, update, node).await?
        };
        at.checkpoint_id().ok_or_else(|| {
            CallError::Run(RunError::UnknownThread {
                thread: cfg.thread_id().unwrap_or_default().to_owned(),
            })
        })
    }
}
