//! Compiled graphs: compiling a [`StateGraph`], running it and reading its state.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::cache::StateCache;
use super::input::Input;
use super::output::{RunOutput, StateSnapshot};
use super::snapshot::snapshot_from_stored;
use super::step::execute;
use super::stream::{RunStream, Sink};
use super::update::Writer;
use crate::checkpoint::{Checkpointer, ListFilter};
use crate::context::{NodeKey, RunConfig, StreamModes};
use crate::error::{GraphError, RunError};
use crate::graph::{NodeHandle, StateGraph, Topology};
use crate::interrupt::{ResumeKind, ResumeValidator};
use crate::state::State;

/// A compiled graph: its structure and the settings it was compiled with.
pub(crate) struct GraphInner<S: State> {
    pub(super) topology: Topology<S>,
    pub(super) name: String,
    pub(super) checkpointer: Option<Arc<dyn Checkpointer>>,
    pub(super) interrupt_before: Vec<bool>,
    pub(super) interrupt_after: Vec<bool>,
    pub(super) recursion_limit: usize,
    pub(super) validators: HashMap<String, ResumeValidator>,
    pub(super) cache: StateCache<S>,
    /// The time to live of a run's lease on its thread.
    pub(super) run_lease: Duration,
}

impl<S: State> GraphInner<S> {
    /// Breakpoint flags per node: the run's setting if it has one, else the graph's.
    pub(super) fn breakpoints(
        &self,
        per_run: Option<&[NodeKey]>,
        compiled: &[bool],
    ) -> Result<Vec<bool>, GraphError> {
        let Some(keys) = per_run else {
            return Ok(compiled.to_vec());
        };
        let mut flags = vec![false; self.topology.len()];
        for key in keys {
            flags[self.topology.handle_index(key.handle())?] = true;
        }
        Ok(flags)
    }
}

impl<S: State> StateGraph<S> {
    /// Starts compiling: add a checkpointer and breakpoints, then `build()`.
    pub fn compile(self) -> CompileBuilder<S> {
        CompileBuilder::new(self)
    }
}

/// Settings for compiling a [`StateGraph`]; finish with [`build`](Self::build).
pub struct CompileBuilder<S: State> {
    graph: StateGraph<S>,
    name: String,
    checkpointer: Option<Arc<dyn Checkpointer>>,
    interrupt_before: Vec<NodeHandle<S>>,
    interrupt_after: Vec<NodeHandle<S>>,
    recursion_limit: usize,
    validators: HashMap<String, ResumeValidator>,
    cache_capacity: usize,
    run_lease: Duration,
}

impl<S: State> fmt::Debug for CompileBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompileBuilder")
            .field("graph", &self.graph)
            .field("checkpointer", &self.checkpointer)
            .field("recursion_limit", &self.recursion_limit)
            .finish_non_exhaustive()
    }
}

impl<S: State> CompileBuilder<S> {
    pub(crate) fn new(graph: StateGraph<S>) -> Self {
        CompileBuilder {
            graph,
            name: "graph".into(),
            checkpointer: None,
            interrupt_before: Vec::new(),
            interrupt_after: Vec::new(),
            recursion_limit: 25,
            validators: HashMap::new(),
            cache_capacity: 1024,
            run_lease: Duration::from_secs(30),
        }
    }

    /// Stores threads in `saver`. Without a checkpointer, interrupts still surface in
    /// the output, but threads cannot be resumed or inspected.
    pub fn checkpointer(self, saver: impl Checkpointer) -> Self {
        self.checkpointer_arc(Arc::new(saver))
    }

    /// Like [`checkpointer`](Self::checkpointer), with a shared saver.
    pub fn checkpointer_arc(mut self, saver: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(saver);
        self
    }

    /// Pauses every run before these nodes (static breakpoints).
    pub fn interrupt_before(mut self, nodes: impl IntoIterator<Item = NodeHandle<S>>) -> Self {
        self.interrupt_before.extend(nodes);
        self
    }

    /// Pauses every run after these nodes.
    pub fn interrupt_after(mut self, nodes: impl IntoIterator<Item = NodeHandle<S>>) -> Self {
        self.interrupt_after.extend(nodes);
        self
    }

    /// The default maximum of supersteps per run (25).
    pub fn recursion_limit(mut self, limit: usize) -> Self {
        self.recursion_limit = limit;
        self
    }

    /// The graph's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Registers how answers to interrupts raised with this `kind`
    /// ([`crate::InterruptRequest::kind`]) are checked: a [`ResumeKind`], or a closure
    /// called with the interrupt's payload and the answer. Answers are checked before
    /// they are stored; an interrupt whose kind is not registered cannot be resumed.
    pub fn resume_validator(mut self, kind: impl Into<String>, validator: impl ResumeKind) -> Self {
        self.validators.insert(kind.into(), Arc::new(validator));
        self
    }

    /// Like [`resume_validator`](Self::resume_validator), with a shared validator.
    pub fn resume_validator_arc(
        mut self,
        kind: impl Into<String>,
        validator: ResumeValidator,
    ) -> Self {
        self.validators.insert(kind.into(), validator);
        self
    }

    /// How long a run's lease on its thread lasts without renewal (default 30 s). A
    /// run renews it every third of that while it runs; a crashed runner's lease
    /// expires after it, and then another runner may continue the thread. A run that
    /// cannot renew it in time stops with [`RunError::LeaseLost`].
    pub fn run_lease(mut self, ttl: Duration) -> Self {
        self.run_lease = ttl.max(Duration::from_millis(30));
        self
    }

    /// How many thread states to keep in memory between runs (default 1024; 0 turns
    /// the cache off). A cached state is reused only for the exact checkpoint it was
    /// computed for, so it is never stale.
    pub fn state_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Validates the graph and compiles it.
    pub fn build(self) -> Result<CompiledGraph<S>, GraphError> {
        let topology = self.graph.into_topology()?;
        let flags = |handles: &[NodeHandle<S>]| -> Result<Vec<bool>, GraphError> {
            let mut v = vec![false; topology.len()];
            for h in handles {
                v[topology.handle_index(*h)?] = true;
            }
            Ok(v)
        };
        let interrupt_before = flags(&self.interrupt_before)?;
        let interrupt_after = flags(&self.interrupt_after)?;
        Ok(CompiledGraph {
            inner: Arc::new(GraphInner {
                topology,
                name: self.name,
                checkpointer: self.checkpointer,
                interrupt_before,
                interrupt_after,
                recursion_limit: self.recursion_limit,
                validators: self.validators,
                cache: StateCache::new(self.cache_capacity),
                run_lease: self.run_lease,
            }),
        })
    }
}

/// A graph ready to run. Cheap to clone; usable from many tasks at once.
pub struct CompiledGraph<S: State> {
    pub(crate) inner: Arc<GraphInner<S>>,
}

impl<S: State> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        CompiledGraph {
            inner: self.inner.clone(),
        }
    }
}

impl<S: State> fmt::Debug for CompiledGraph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledGraph")
            .field("name", &self.inner.name)
            .field("nodes", &self.inner.topology.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<S: State> CompiledGraph<S> {
    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node names, in the order they were added.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.inner.topology.names()
    }

    /// The checkpointer, if any.
    pub fn checkpointer(&self) -> Option<&Arc<dyn Checkpointer>> {
        self.inner.checkpointer.as_ref()
    }

    /// Runs until the graph finishes, pauses at an interrupt or breakpoint, or fails.
    ///
    /// `input` is new input (a state, or an update), a [`crate::Command`], or `None`
    /// to continue the thread (time-travel with `cfg.at_checkpoint(older)`).
    pub async fn invoke(
        &self,
        input: impl Into<Input<S>>,
        cfg: &RunConfig,
    ) -> Result<RunOutput<S>, RunError> {
        execute(&self.inner, input.into(), cfg, None).await
    }

    /// Runs like [`invoke`](Self::invoke), streaming events of the given modes.
    /// Interrupts are always streamed. Must be called within a tokio runtime.
    pub fn stream(
        &self,
        input: impl Into<Input<S>>,
        cfg: &RunConfig,
        modes: impl Into<StreamModes>,
    ) -> RunStream<S> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Sink {
            tx: tx.clone(),
            modes: modes.into(),
        };
        let graph = self.inner.clone();
        let cfg = cfg.clone();
        let input = input.into();
        let handle = tokio::spawn(async move {
            if let Err(e) = execute(&graph, input, &cfg, Some(sink)).await {
                let _ = tx.send(Err(e));
            }
        });
        RunStream { rx, handle }
    }

    pub(super) fn saver(
        &self,
        operation: &'static str,
    ) -> Result<&Arc<dyn Checkpointer>, RunError> {
        self.inner
            .checkpointer
            .as_ref()
            .ok_or(RunError::NoCheckpointer { operation })
    }

    /// The thread at its head (or at `cfg.at_checkpoint(id)`).
    pub async fn get_state(&self, cfg: &RunConfig) -> Result<StateSnapshot<S>, RunError> {
        let saver = self.saver("get_state")?;
        let thread = cfg.thread_id().ok_or(RunError::MissingThreadId)?;
        let head = saver.head(thread, "").await?;
        let Some(stored) = saver.get(thread, "", cfg.checkpoint_id, None).await? else {
            return Err(match cfg.checkpoint_id {
                Some(id) if head.is_some() => crate::error::CheckpointError::NotFound {
                    thread: thread.into(),
                    checkpoint: id,
                }
                .into(),
                _ => RunError::UnknownThread {
                    thread: thread.into(),
                },
            });
        };
        let is_head = head == Some(stored.checkpoint.id);
        snapshot_from_stored(&self.inner, thread, stored, is_head)
    }

    /// Every checkpoint of the thread, newest first, across all branches.
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
    /// let cfg = RunConfig::thread("history");
    /// app.invoke(Flow::default(), &cfg).await?;
    ///
    /// // The input, then one checkpoint per superstep; newest first.
    /// let history = app.get_state_history(&cfg).await?;
    /// let seen: Vec<_> = history.iter().map(|s| (s.source, s.values.log.len(), s.next.clone())).collect();
    /// assert_eq!(seen, [
    ///     (CheckpointSource::Loop, 2, vec![]),
    ///     (CheckpointSource::Loop, 1, vec!["b".to_string()]),
    ///     (CheckpointSource::Input, 0, vec!["a".to_string()]),
    /// ]);
    /// // Each snapshot's `config` points at it: pass it to `get_state`, or to
    /// // `invoke(None, ..)` to travel back (see `RunConfig::at_checkpoint`).
    /// assert_eq!(history[1].config.checkpoint_id(), Some(history[1].checkpoint_id));
    /// # Ok(()) }
    /// ```
    pub async fn get_state_history(
        &self,
        cfg: &RunConfig,
    ) -> Result<Vec<StateSnapshot<S>>, RunError> {
        self.get_state_history_filtered(cfg, &ListFilter::default())
            .await
    }

    /// Like [`get_state_history`](Self::get_state_history), filtered and limited.
    pub async fn get_state_history_filtered(
        &self,
        cfg: &RunConfig,
        filter: &ListFilter,
    ) -> Result<Vec<StateSnapshot<S>>, RunError> {
        let saver = self.saver("get_state_history")?;
        let thread = cfg.thread_id().ok_or(RunError::MissingThreadId)?;
        let head = saver.head(thread, "").await?;
        let mut out = Vec::new();
        for c in saver.list(thread, "", filter).await? {
            // A listed checkpoint that cannot be fetched is damage, never skipped.
            let stored = saver
                .get(thread, "", Some(c.id), None)
                .await?
                .ok_or_else(|| {
                    crate::error::CheckpointError::corrupt(
                        thread,
                        format!("checkpoint {} is listed but cannot be read", c.id),
                    )
                })?;
            let is_head = head == Some(c.id);
            out.push(snapshot_from_stored(&self.inner, thread, stored, is_head)?);
        }
        Ok(out)
    }

    /// Writes a new checkpoint with `update` applied, as if `as_node` had returned it:
    /// the next tasks are that node's routes. Without `as_node`, the scheduled tasks
    /// stay as they were (pending ones run again, with new interrupt ids). Returns a
    /// config pointing at the new checkpoint.
    ///
    /// Here a human writes the answer of a paused node in its place:
    ///
    /// ```
    /// # use hitl_runtime::{StateGraph, START, END, State, InMemorySaver, RunConfig};
    /// # use serde::{Serialize, Deserialize};
    /// # #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
    /// # struct Flow { #[state(reducer = append)] log: Vec<String> }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hitl_runtime::NodeContext;
    /// use serde_json::json;
    ///
    /// let mut g = StateGraph::<Flow>::new();
    /// let ask = g.add_node("ask", |_, cx: NodeContext| async move {
    ///     let name = cx.interrupt(json!("Whom should I greet?")).await?;
    ///     Ok(FlowUpdate::default().log(vec![format!("hello {name}")]))
    /// });
    /// let done = g.add_node("done", |_, _| async { Ok(FlowUpdate::default().log(vec!["done".into()])) });
    /// g.add_edge(START, ask);
    /// g.add_edge(ask, done);
    /// g.add_edge(done, END);
    /// let app = g.compile().checkpointer(InMemorySaver::new()).build()?;
    /// let cfg = RunConfig::thread("update");
    /// assert!(app.invoke(Flow::default(), &cfg).await?.is_interrupted());
    ///
    /// // As if `ask` had returned this: its interrupt is dropped, `done` is next.
    /// let update = FlowUpdate::default().log(vec!["written by hand".into()]);
    /// app.update_state(&cfg, update, Some(ask)).await?;
    /// let state = app.get_state(&cfg).await?;
    /// assert_eq!(state.next, ["done"]);
    /// assert!(state.interrupts.is_empty());
    ///
    /// let out = app.invoke(None, &cfg).await?;
    /// assert_eq!(out.values.log, ["written by hand", "done"]);
    /// # Ok(()) }
    /// ```
    pub async fn update_state(
        &self,
        cfg: &RunConfig,
        update: S::Update,
        as_node: Option<NodeHandle<S>>,
    ) -> Result<RunConfig, RunError> {
        let as_node = match as_node {
            Some(h) => Writer::Node(self.inner.topology.handle_index(h)?),
            None => Writer::Caller,
        };
        super::update::update_state(&self.inner, cfg, update, as_node).await
    }

    /// Writes `update` as the graph's end (LangGraph's `as_node=END`): the thread
    /// finishes where it is; nothing runs next and its pending interrupts are dropped,
    /// unanswered (no call they review runs). Agent Inbox's "Ignore" does this.
    pub async fn update_state_as_end(
        &self,
        cfg: &RunConfig,
        update: S::Update,
    ) -> Result<RunConfig, RunError> {
        super::update::update_state(&self.inner, cfg, update, Writer::End).await
    }

    /// The handle of a node, by name.
    pub fn node(&self, name: &str) -> Option<NodeHandle<S>> {
        self.inner
            .topology
            .index_of(name)
            .map(|i| self.inner.topology.handle(i))
    }
}
