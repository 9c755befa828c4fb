//! Compiled graphs: running them and reading their state.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use super::{Edges, Join, NodeHandle, NodeSpec, StateGraph, known_names, name_index};
use crate::checkpoint::{Checkpointer, ListFilter};
use crate::error::{GraphError, RunError};
use crate::ids::CheckpointId;
use crate::run::{
    Input, RunConfig, RunOutput, RunStream, Sink, StateSnapshot, StreamModes, execute,
};
use crate::state::State;

/// How the answers to one kind of interrupt ([`crate::InterruptRequest::kind`]) are
/// checked, registered with [`CompileBuilder::resume_validator`].
///
/// A closure `Fn(&Value, &Value) -> Result<(), Vec<String>>` is a `ResumeKind` that
/// only checks.
pub trait ResumeKind: Send + Sync + 'static {
    /// Checks an answer, given the interrupt's payload
    /// ([`crate::PendingInterrupt::value`]); returns the problems, one per line. Runs
    /// before the answer is stored.
    fn check(&self, payload: &Value, answer: &Value) -> Result<(), Vec<String>>;

    /// The JSON schema of the answers, if this kind derives it from the payload. An
    /// interrupt whose schema is derived is stored without it (the schema is derived
    /// again when the interrupt is read), and its answers are checked by
    /// [`check`](Self::check) alone, which must then reject whatever the schema
    /// rejects.
    fn schema(&self, payload: &Value) -> Option<Arc<Value>> {
        let _ = payload;
        None
    }
}

impl<F> ResumeKind for F
where
    F: Fn(&Value, &Value) -> Result<(), Vec<String>> + Send + Sync + 'static,
{
    fn check(&self, payload: &Value, answer: &Value) -> Result<(), Vec<String>> {
        self(payload, answer)
    }
}

/// A shared [`ResumeKind`].
pub type ResumeValidator = Arc<dyn ResumeKind>;

/// Recently used states by (thread, namespace), valid for one checkpoint id.
/// Checkpoints never change, so a state cached for a checkpoint id is that
/// checkpoint's state in every process.
pub(crate) struct StateCache<S> {
    capacity: usize,
    entries: Mutex<CacheMap<S>>,
}

/// (thread, namespace) -> (checkpoint, its state).
type CacheMap<S> = HashMap<(Arc<str>, Arc<str>), (CheckpointId, Arc<S>)>;

impl<S> StateCache<S> {
    fn new(capacity: usize) -> Self {
        StateCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheMap<S>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn peek(&self, thread: &Arc<str>, ns: &Arc<str>) -> Option<CheckpointId> {
        if self.capacity == 0 {
            return None;
        }
        self.lock()
            .get(&(thread.clone(), ns.clone()))
            .map(|(id, _)| *id)
    }

    /// Takes the state out (so the run owns it and can mutate it without a copy).
    pub(crate) fn take(
        &self,
        thread: &Arc<str>,
        ns: &Arc<str>,
        id: CheckpointId,
    ) -> Option<Arc<S>> {
        let mut entries = self.lock();
        let key = (thread.clone(), ns.clone());
        match entries.get(&key) {
            Some((cached, _)) if *cached == id => entries.remove(&key).map(|(_, s)| s),
            _ => None,
        }
    }

    pub(crate) fn put(&self, thread: &Arc<str>, ns: &Arc<str>, id: CheckpointId, state: Arc<S>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            // Cheap eviction: drop an arbitrary half.
            let drop_keys: Vec<_> = entries
                .keys()
                .take(self.capacity / 2 + 1)
                .cloned()
                .collect();
            for k in drop_keys {
                entries.remove(&k);
            }
        }
        entries.insert((thread.clone(), ns.clone()), (id, state));
    }
}

pub(crate) struct GraphInner<S: State> {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) nodes: Vec<NodeSpec<S>>,
    pub(crate) start: Edges<S>,
    pub(crate) edges: Vec<Edges<S>>,
    pub(crate) joins: Vec<Join>,
    pub(crate) by_name: HashMap<Arc<str>, usize>,
    pub(crate) checkpointer: Option<Arc<dyn Checkpointer>>,
    pub(crate) interrupt_before: Vec<bool>,
    pub(crate) interrupt_after: Vec<bool>,
    pub(crate) recursion_limit: usize,
    pub(crate) validators: HashMap<String, ResumeValidator>,
    pub(crate) cache: StateCache<S>,
}

impl<S: State> GraphInner<S> {
    pub(crate) fn node_index(&self, name: &str) -> Result<usize, GraphError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| GraphError::UnknownNode {
                name: name.into(),
                known: known_names(&self.nodes),
            })
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

    /// How many thread states to keep in memory between runs (default 1024; 0 turns
    /// the cache off). A cached state is reused only for the exact checkpoint it was
    /// computed for, so it is never stale.
    pub fn state_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Validates the graph and compiles it.
    pub fn build(self) -> Result<CompiledGraph<S>, GraphError> {
        self.graph.validate()?;
        let g = self.graph;
        let flags = |handles: &[NodeHandle<S>]| -> Result<Vec<bool>, GraphError> {
            let mut v = vec![false; g.nodes.len()];
            for h in handles {
                if h.graph != g.id || h.index() >= g.nodes.len() {
                    return Err(GraphError::ForeignNode {
                        node: format!("#{}", h.index),
                    });
                }
                v[h.index()] = true;
            }
            Ok(v)
        };
        let interrupt_before = flags(&self.interrupt_before)?;
        let interrupt_after = flags(&self.interrupt_after)?;
        let by_name = name_index(&g.nodes);
        Ok(CompiledGraph {
            inner: Arc::new(GraphInner {
                id: g.id,
                name: self.name,
                nodes: g.nodes,
                start: g.start,
                edges: g.edges,
                joins: g.joins,
                by_name,
                checkpointer: self.checkpointer,
                interrupt_before,
                interrupt_after,
                recursion_limit: self.recursion_limit,
                validators: self.validators,
                cache: StateCache::new(self.cache_capacity),
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
            .field(
                "nodes",
                &self
                    .inner
                    .nodes
                    .iter()
                    .map(|n| &*n.name)
                    .collect::<Vec<_>>(),
            )
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
        self.inner.nodes.iter().map(|n| &*n.name)
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

    fn saver(&self, operation: &'static str) -> Result<&Arc<dyn Checkpointer>, RunError> {
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
        crate::run::snapshot_from_stored(&self.inner, thread, stored, is_head)
    }

    /// Every checkpoint of the thread, newest first, across all branches.
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
            let Some(stored) = saver.get(thread, "", Some(c.id), None).await? else {
                continue;
            };
            let is_head = head == Some(c.id);
            out.push(crate::run::snapshot_from_stored(
                &self.inner,
                thread,
                stored,
                is_head,
            )?);
        }
        Ok(out)
    }

    /// Writes a new checkpoint with `update` applied, as if `as_node` had returned it:
    /// the next tasks are that node's routes. Without `as_node`, the scheduled tasks
    /// stay as they were (pending ones run again, with new interrupt ids). Returns a
    /// config pointing at the new checkpoint.
    pub async fn update_state(
        &self,
        cfg: &RunConfig,
        update: S::Update,
        as_node: Option<NodeHandle<S>>,
    ) -> Result<RunConfig, RunError> {
        let as_node = match as_node {
            Some(h) if h.graph != self.inner.id || h.index() >= self.inner.nodes.len() => {
                return Err(GraphError::ForeignNode {
                    node: format!("#{}", h.index),
                }
                .into());
            }
            Some(h) => Some(h.index()),
            None => None,
        };
        crate::run::update_state(&self.inner, cfg, update, as_node).await
    }

    /// The handle of a node, by name.
    pub fn node(&self, name: &str) -> Option<NodeHandle<S>> {
        self.inner.by_name.get(name).map(|&i| NodeHandle {
            graph: self.inner.id,
            index: i as u32,
            _state: std::marker::PhantomData,
        })
    }
}
