//! Per-run settings.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::ids::{CheckpointId, NodeHandle};

/// Which thread a run is on, and per-run settings.
///
/// ```
/// # use hitl_runtime::RunConfig;
/// let cfg = RunConfig::thread("conversation-1").recursion_limit(50);
/// ```
#[derive(Clone, Default)]
pub struct RunConfig {
    pub(crate) thread_id: Option<Arc<str>>,
    pub(crate) checkpoint_id: Option<CheckpointId>,
    pub(crate) recursion_limit: Option<usize>,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) interrupt_before: Option<Vec<NodeKey>>,
    pub(crate) interrupt_after: Option<Vec<NodeKey>>,
    pub(crate) cancel: Option<CancellationToken>,
    pub(crate) context: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunConfig")
            .field("thread_id", &self.thread_id)
            .field("checkpoint_id", &self.checkpoint_id)
            .field("recursion_limit", &self.recursion_limit)
            .field("metadata", &self.metadata)
            .field("interrupt_before", &self.interrupt_before)
            .field("interrupt_after", &self.interrupt_after)
            .finish_non_exhaustive()
    }
}

impl RunConfig {
    /// A run on a thread.
    pub fn thread(id: impl Into<String>) -> Self {
        RunConfig {
            thread_id: Some(Arc::from(id.into())),
            ..Default::default()
        }
    }

    /// The thread id.
    pub fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    /// The checkpoint this config points at, if any.
    pub fn checkpoint_id(&self) -> Option<CheckpointId> {
        self.checkpoint_id
    }

    /// Points at a checkpoint: `get_state` reads it, and `invoke(None, ..)` from an
    /// older checkpoint forks the thread there (time travel).
    ///
    /// The fork copies the older checkpoint as the thread's new head and runs from it;
    /// the old branch stays in the history. Answers given after that checkpoint are
    /// not reused, so interrupts fire again.
    ///
    /// ```
    /// # use hitl_runtime::{StateGraph, START, END, State, InMemorySaver, RunConfig};
    /// # use serde::{Serialize, Deserialize};
    /// # #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
    /// # struct Flow { #[state(reducer = append)] log: Vec<String> }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hitl_runtime::checkpoint::CheckpointSource;
    ///
    /// let mut g = StateGraph::<Flow>::new();
    /// let a = g.add_node("a", |_, _| async { Ok(FlowUpdate::default().log(vec!["a".into()])) });
    /// let b = g.add_node("b", |_, _| async { Ok(FlowUpdate::default().log(vec!["b".into()])) });
    /// g.add_edge(START, a);
    /// g.add_edge(a, b);
    /// g.add_edge(b, END);
    /// let app = g.compile().checkpointer(InMemorySaver::new()).build()?;
    /// let cfg = RunConfig::thread("travel");
    /// app.invoke(Flow::default(), &cfg).await?;
    ///
    /// // Back to the checkpoint before `b` ran, and run `b` again from there.
    /// let history = app.get_state_history(&cfg).await?;
    /// let before_b = history.iter().find(|s| s.next == ["b"]).unwrap().checkpoint_id;
    /// let out = app.invoke(None, &cfg.clone().at_checkpoint(before_b)).await?;
    /// assert_eq!(out.values.log, ["a", "b"]);
    ///
    /// // The fork is in the history, after the first branch.
    /// let history = app.get_state_history(&cfg).await?;
    /// assert_eq!(history.len(), 5);
    /// assert_eq!(history[1].source, CheckpointSource::Fork);
    /// assert_eq!(history[1].parent_checkpoint_id, Some(before_b));
    /// # Ok(()) }
    /// ```
    pub fn at_checkpoint(mut self, id: CheckpointId) -> Self {
        self.checkpoint_id = Some(id);
        self
    }

    /// At most this many supersteps per run (default: the graph's, 25 unless set).
    pub fn recursion_limit(mut self, limit: usize) -> Self {
        self.recursion_limit = Some(limit);
        self
    }

    /// The metadata added to every checkpoint this run writes.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Adds a metadata entry to every checkpoint this run writes.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Pauses before these nodes in this run (replaces the graph's setting). Takes
    /// node handles, like [`crate::CompileBuilder::interrupt_before`]; get one by name
    /// with [`crate::CompiledGraph::node`]. A handle of another graph fails the run
    /// with [`crate::GraphError::ForeignNode`].
    pub fn interrupt_before<S>(mut self, nodes: impl IntoIterator<Item = NodeHandle<S>>) -> Self {
        self.interrupt_before = Some(nodes.into_iter().map(NodeKey::of).collect());
        self
    }

    /// Pauses after these nodes in this run (replaces the graph's setting); see
    /// [`interrupt_before`](Self::interrupt_before).
    pub fn interrupt_after<S>(mut self, nodes: impl IntoIterator<Item = NodeHandle<S>>) -> Self {
        self.interrupt_after = Some(nodes.into_iter().map(NodeKey::of).collect());
        self
    }

    /// Stops the run when `token` is cancelled: running tasks are dropped, finished ones
    /// keep their stored writes, and the run returns [`crate::RunError::Cancelled`].
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Data for nodes and tools of this run (a database pool, a user id, ...), read with
    /// [`crate::NodeContext::context`].
    pub fn context<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.context = Some(Arc::new(value));
        self
    }
}

/// A node handle without its state type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeKey {
    pub(crate) graph: u64,
    pub(crate) index: u32,
}

impl NodeKey {
    fn of<S>(handle: NodeHandle<S>) -> Self {
        NodeKey {
            graph: handle.graph,
            index: handle.index,
        }
    }

    /// The handle again, for a graph of state `S`.
    pub(crate) fn handle<S>(self) -> NodeHandle<S> {
        NodeHandle::new(self.graph, self.index as usize)
    }
}
