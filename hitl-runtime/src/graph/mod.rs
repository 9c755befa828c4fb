//! Building state graphs: nodes, edges, routes, subgraphs, and compiling them.

mod compiled;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;

pub(crate) use compiled::GraphInner;
pub use compiled::{CompileBuilder, CompiledGraph, ResumeKind, ResumeValidator};

use crate::checkpoint::TaskSpec;
use crate::error::{GraphError, NodeError};
use crate::run::{Command, NodeContext};
use crate::state::State;

static NEXT_GRAPH_ID: AtomicU64 = AtomicU64::new(1);

/// The start of every run: `g.add_edge(START, first)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start;

/// The end of a run: `g.add_edge(last, END)`, or a route to `END`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End;

/// The start of every run.
pub const START: Start = Start;
/// The end of a run.
pub const END: End = End;

/// A node of a [`StateGraph`], returned by [`StateGraph::add_node`].
///
/// Edges take handles, not names, so an edge to a node that does not exist cannot be
/// written. A handle is only valid in the graph that created it.
pub struct NodeHandle<S> {
    graph: u64,
    index: u32,
    _state: PhantomData<fn() -> S>,
}

impl<S> NodeHandle<S> {
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }
}

impl<S> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for NodeHandle<S> {}
impl<S> PartialEq for NodeHandle<S> {
    fn eq(&self, other: &Self) -> bool {
        self.graph == other.graph && self.index == other.index
    }
}
impl<S> Eq for NodeHandle<S> {}
impl<S> fmt::Debug for NodeHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeHandle({})", self.index)
    }
}

/// A task that runs `node` with its own input, in the next superstep (map-reduce).
///
/// The node reads the input with [`NodeContext::input`]. Sends are never merged: five
/// sends to one node run it five times, concurrently.
pub struct Send<S> {
    pub(crate) node: NodeHandle<S>,
    pub(crate) input: Box<RawValue>,
}

impl<S> Send<S> {
    /// A send of `input` to `node`.
    ///
    /// # Panics
    /// If `input` cannot be serialized to JSON (a map with non-string keys, ...).
    pub fn new(node: NodeHandle<S>, input: &impl Serialize) -> Self {
        let input =
            serde_json::value::to_raw_value(input).expect("a Send input must serialize to JSON");
        Send { node, input }
    }
}

impl<S> Clone for Send<S> {
    fn clone(&self) -> Self {
        Send {
            node: self.node,
            input: self.input.clone(),
        }
    }
}

impl<S> fmt::Debug for Send<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Send")
            .field("node", &self.node)
            .field("input", &self.input.get())
            .finish()
    }
}

/// Where a run goes next: a node, a [`Send`], or [`END`].
pub enum Goto<S> {
    /// Run this node in the next superstep.
    Node(NodeHandle<S>),
    /// Run this node with its own input.
    Send(Send<S>),
    /// Nothing more from here.
    End,
}

impl<S> Clone for Goto<S> {
    fn clone(&self) -> Self {
        match self {
            Goto::Node(h) => Goto::Node(*h),
            Goto::Send(s) => Goto::Send(s.clone()),
            Goto::End => Goto::End,
        }
    }
}

impl<S> fmt::Debug for Goto<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goto::Node(h) => h.fmt(f),
            Goto::Send(s) => s.fmt(f),
            Goto::End => f.write_str("END"),
        }
    }
}

impl<S> From<NodeHandle<S>> for Goto<S> {
    fn from(h: NodeHandle<S>) -> Self {
        Goto::Node(h)
    }
}
impl<S> From<Send<S>> for Goto<S> {
    fn from(s: Send<S>) -> Self {
        Goto::Send(s)
    }
}
impl<S> From<End> for Goto<S> {
    fn from(_: End) -> Self {
        Goto::End
    }
}

/// What a conditional edge returns: zero or more places to go.
pub struct Route<S>(pub(crate) Vec<Goto<S>>);

impl<S> Route<S> {
    /// Go to one place.
    pub fn to(goto: impl Into<Goto<S>>) -> Self {
        Route(vec![goto.into()])
    }

    /// Go to several places at once (they run in the same superstep).
    pub fn many<I, G>(gotos: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: Into<Goto<S>>,
    {
        Route(gotos.into_iter().map(Into::into).collect())
    }

    /// End the run from here.
    pub fn end() -> Self {
        Route(vec![Goto::End])
    }
}

impl<S> fmt::Debug for Route<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl<S> From<NodeHandle<S>> for Route<S> {
    fn from(h: NodeHandle<S>) -> Self {
        Route::to(h)
    }
}
impl<S> From<End> for Route<S> {
    fn from(_: End) -> Self {
        Route::end()
    }
}
impl<S> From<Send<S>> for Route<S> {
    fn from(s: Send<S>) -> Self {
        Route::to(s)
    }
}
impl<S> From<Vec<Send<S>>> for Route<S> {
    fn from(sends: Vec<Send<S>>) -> Self {
        Route::many(sends)
    }
}
impl<S> From<Goto<S>> for Route<S> {
    fn from(g: Goto<S>) -> Self {
        Route(vec![g])
    }
}

/// What a node returns: an update, routes, or both.
///
/// Converts from `()` (nothing), the state's update type, a [`Command`], a [`Send`] or
/// a `Vec<Send>`.
pub struct NodeOutput<S: State> {
    pub(crate) update: Option<S::Update>,
    pub(crate) goto: Vec<Goto<S>>,
    pub(crate) resume_in_node: bool,
}

impl<S: State> NodeOutput<S> {
    /// An update.
    pub fn update(update: S::Update) -> Self {
        NodeOutput {
            update: Some(update),
            goto: Vec::new(),
            resume_in_node: false,
        }
    }

    /// Nothing.
    pub fn none() -> Self {
        NodeOutput {
            update: None,
            goto: Vec::new(),
            resume_in_node: false,
        }
    }
}

impl<S: State> fmt::Debug for NodeOutput<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeOutput")
            .field("update", &self.update)
            .field("goto", &self.goto)
            .finish()
    }
}

impl<S: State> From<()> for NodeOutput<S> {
    fn from(_: ()) -> Self {
        NodeOutput::none()
    }
}

impl<S: State> From<Command<S>> for NodeOutput<S> {
    fn from(c: Command<S>) -> Self {
        NodeOutput {
            update: c.update,
            goto: c.goto,
            resume_in_node: c.resume.is_some(),
        }
    }
}

impl<S: State> From<Send<S>> for NodeOutput<S> {
    fn from(s: Send<S>) -> Self {
        NodeOutput {
            update: None,
            goto: vec![Goto::Send(s)],
            resume_in_node: false,
        }
    }
}

impl<S: State> From<Vec<Send<S>>> for NodeOutput<S> {
    fn from(sends: Vec<Send<S>>) -> Self {
        NodeOutput {
            update: None,
            goto: sends.into_iter().map(Goto::Send).collect(),
            resume_in_node: false,
        }
    }
}

pub(crate) type NodeFuture<S> = BoxFuture<'static, Result<NodeOutput<S>, NodeError>>;
pub(crate) type NodeFn<S> =
    Arc<dyn Fn(Arc<S>, NodeContext) -> NodeFuture<S> + std::marker::Send + Sync>;
pub(crate) type RouteFn<S> = Arc<dyn Fn(&S) -> Route<S> + std::marker::Send + Sync>;

pub(crate) struct NodeSpec<S: State> {
    pub(crate) name: Arc<str>,
    pub(crate) run: NodeFn<S>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) goto_targets: Option<Vec<Target>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    Node(usize),
    End,
}

pub(crate) struct Conditional<S> {
    pub(crate) route: RouteFn<S>,
    pub(crate) targets: Option<Vec<Target>>,
}

pub(crate) struct Join {
    pub(crate) sources: Vec<usize>,
    pub(crate) target: usize,
}

/// Edges out of one place.
pub(crate) struct Edges<S> {
    pub(crate) fixed: Vec<Target>,
    pub(crate) conditional: Vec<Conditional<S>>,
}

impl<S> Default for Edges<S> {
    fn default() -> Self {
        Edges {
            fixed: Vec::new(),
            conditional: Vec::new(),
        }
    }
}

/// Where an edge starts: [`START`] or a node.
#[derive(Debug)]
pub enum EdgeSource<S> {
    /// The start of the run.
    Start,
    /// A node.
    Node(NodeHandle<S>),
}

impl<S> From<Start> for EdgeSource<S> {
    fn from(_: Start) -> Self {
        EdgeSource::Start
    }
}
impl<S> From<NodeHandle<S>> for EdgeSource<S> {
    fn from(h: NodeHandle<S>) -> Self {
        EdgeSource::Node(h)
    }
}

/// Where an edge ends: a node or [`END`].
#[derive(Debug)]
pub enum EdgeTarget<S> {
    /// A node.
    Node(NodeHandle<S>),
    /// The end of the run.
    End,
}

impl<S> From<End> for EdgeTarget<S> {
    fn from(_: End) -> Self {
        EdgeTarget::End
    }
}
impl<S> From<NodeHandle<S>> for EdgeTarget<S> {
    fn from(h: NodeHandle<S>) -> Self {
        EdgeTarget::Node(h)
    }
}

/// A graph under construction.
///
/// ```
/// # use hitl_runtime::{StateGraph, START, END, NodeContext, NodeError, State};
/// # use serde::{Serialize, Deserialize};
/// # use std::sync::Arc;
/// #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
/// struct Flow {
///     #[state(reducer = append)]
///     log: Vec<String>,
/// }
///
/// async fn hello(_: Arc<Flow>, _: NodeContext) -> Result<FlowUpdate, NodeError> {
///     Ok(FlowUpdate::default().log(vec!["hello".to_string()]))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut g = StateGraph::<Flow>::new();
/// let hi = g.add_node("hello", hello);
/// g.add_edge(START, hi);
/// g.add_edge(hi, END);
/// let app = g.compile().build().unwrap();
/// let out = app.invoke(Flow::default(), &Default::default()).await.unwrap();
/// assert_eq!(out.values.log, ["hello"]);
/// # }
/// ```
pub struct StateGraph<S: State> {
    pub(crate) id: u64,
    pub(crate) nodes: Vec<NodeSpec<S>>,
    pub(crate) start: Edges<S>,
    pub(crate) edges: Vec<Edges<S>>,
    pub(crate) joins: Vec<Join>,
    pub(crate) errors: Vec<GraphError>,
}

impl<S: State> fmt::Debug for StateGraph<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateGraph")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &*n.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<S: State> Default for StateGraph<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: State> StateGraph<S> {
    /// An empty graph.
    pub fn new() -> Self {
        StateGraph {
            id: NEXT_GRAPH_ID.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            start: Edges::default(),
            edges: Vec::new(),
            joins: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Adds a node: an `async fn(Arc<S>, NodeContext) -> Result<impl Into<NodeOutput<S>>,
    /// NodeError>`. Returns its handle.
    ///
    /// The node gets the state as of the start of the superstep; its update is applied
    /// through the reducers at the end of the superstep, with its siblings' updates, in
    /// a deterministic order.
    pub fn add_node<F, Fut, O>(&mut self, name: &str, node: F) -> NodeHandle<S>
    where
        F: Fn(Arc<S>, NodeContext) -> Fut + std::marker::Send + Sync + 'static,
        Fut: Future<Output = Result<O, NodeError>> + std::marker::Send + 'static,
        O: Into<NodeOutput<S>>,
    {
        let run: NodeFn<S> = Arc::new(move |state, cx| {
            let fut = node(state, cx);
            async move { fut.await.map(Into::into) }.boxed()
        });
        self.push_node(name, run)
    }

    pub(crate) fn push_node(&mut self, name: &str, run: NodeFn<S>) -> NodeHandle<S> {
        let valid = !name.is_empty()
            && !name.starts_with("__")
            && !name.contains(':')
            && !name.contains('|');
        if !valid {
            self.errors
                .push(GraphError::InvalidName { name: name.into() });
        } else if self.nodes.iter().any(|n| &*n.name == name) {
            self.errors
                .push(GraphError::DuplicateNode { name: name.into() });
        }
        self.nodes.push(NodeSpec {
            name: name.into(),
            run,
            timeout: None,
            goto_targets: None,
        });
        self.edges.push(Edges::default());
        NodeHandle {
            graph: self.id,
            index: (self.nodes.len() - 1) as u32,
            _state: PhantomData,
        }
    }

    /// Adds a compiled graph as a node. `input` builds the subgraph's initial state
    /// from the parent's; `output` turns its final state into the parent's update.
    ///
    /// The subgraph checkpoints under its own namespace (`"{name}:{task_id}"`). When it
    /// interrupts, the parent task is interrupted with the same interrupts; on resume
    /// the subgraph continues from its own checkpoint, so its finished nodes do not run
    /// again.
    pub fn add_subgraph<T, I, O>(
        &mut self,
        name: &str,
        subgraph: CompiledGraph<T>,
        input: I,
        output: O,
    ) -> NodeHandle<S>
    where
        T: State,
        I: Fn(&S) -> T + std::marker::Send + Sync + 'static,
        O: Fn(&T) -> S::Update + std::marker::Send + Sync + 'static,
    {
        let input = Arc::new(input);
        let output = Arc::new(output);
        let run: NodeFn<S> = Arc::new(move |state, cx| {
            let subgraph = subgraph.clone();
            let input = input.clone();
            let output = output.clone();
            async move {
                let initial = input(&state);
                drop(state);
                let values = crate::run::run_subgraph(&subgraph, initial, &cx).await?;
                Ok(NodeOutput::update(output(&values)))
            }
            .boxed()
        });
        self.push_node(name, run)
    }

    fn check(&mut self, h: NodeHandle<S>) -> Option<usize> {
        if h.graph != self.id || h.index() >= self.nodes.len() {
            self.errors.push(GraphError::ForeignNode {
                node: format!("#{}", h.index),
            });
            return None;
        }
        Some(h.index())
    }

    fn target(&mut self, t: EdgeTarget<S>) -> Option<Target> {
        match t {
            EdgeTarget::End => Some(Target::End),
            EdgeTarget::Node(h) => self.check(h).map(Target::Node),
        }
    }

    fn edges_from(&mut self, from: EdgeSource<S>) -> Option<&mut Edges<S>> {
        match from {
            EdgeSource::Start => Some(&mut self.start),
            EdgeSource::Node(h) => {
                let i = self.check(h)?;
                Some(&mut self.edges[i])
            }
        }
    }

    /// After `from` runs (or at the start, for [`START`]), run `to`.
    pub fn add_edge(&mut self, from: impl Into<EdgeSource<S>>, to: impl Into<EdgeTarget<S>>) {
        let Some(target) = self.target(to.into()) else {
            return;
        };
        if let Some(edges) = self.edges_from(from.into()) {
            edges.fixed.push(target);
        }
    }

    /// After `from` runs, call `route` on the updated state to decide where to go.
    ///
    /// The targets are not declared, so any node counts as reachable from here when
    /// the graph is validated. Prefer [`add_conditional_edges_to`](Self::add_conditional_edges_to).
    pub fn add_conditional_edges<F, R>(&mut self, from: impl Into<EdgeSource<S>>, route: F)
    where
        F: Fn(&S) -> R + std::marker::Send + Sync + 'static,
        R: Into<Route<S>>,
    {
        self.push_conditional(from.into(), None, route);
    }

    /// Like [`add_conditional_edges`](Self::add_conditional_edges), declaring every
    /// place `route` may go. A route anywhere else fails the run.
    pub fn add_conditional_edges_to<F, R, T>(
        &mut self,
        from: impl Into<EdgeSource<S>>,
        targets: impl IntoIterator<Item = T>,
        route: F,
    ) where
        F: Fn(&S) -> R + std::marker::Send + Sync + 'static,
        R: Into<Route<S>>,
        T: Into<EdgeTarget<S>>,
    {
        let targets: Vec<Target> = targets
            .into_iter()
            .filter_map(|t| self.target(t.into()))
            .collect();
        self.push_conditional(from.into(), Some(targets), route);
    }

    fn push_conditional<F, R>(
        &mut self,
        from: EdgeSource<S>,
        targets: Option<Vec<Target>>,
        route: F,
    ) where
        F: Fn(&S) -> R + std::marker::Send + Sync + 'static,
        R: Into<Route<S>>,
    {
        let route: RouteFn<S> = Arc::new(move |s| route(s).into());
        if let Some(edges) = self.edges_from(from) {
            edges.conditional.push(Conditional { route, targets });
        }
    }

    /// Runs `target` once every node in `sources` has run since `target` last ran
    /// (fan-in of branches that finish in different supersteps).
    pub fn add_join(
        &mut self,
        sources: impl IntoIterator<Item = NodeHandle<S>>,
        target: NodeHandle<S>,
    ) {
        let sources: Vec<usize> = sources.into_iter().filter_map(|h| self.check(h)).collect();
        if let Some(target) = self.check(target) {
            self.joins.push(Join { sources, target });
        }
    }

    /// Declares where `node` may go with `Command::goto` or `Send`s it returns.
    /// Routing anywhere else fails the task.
    pub fn add_goto_targets<T: Into<EdgeTarget<S>>>(
        &mut self,
        node: NodeHandle<S>,
        targets: impl IntoIterator<Item = T>,
    ) {
        let targets: Vec<Target> = targets
            .into_iter()
            .filter_map(|t| self.target(t.into()))
            .collect();
        if let Some(i) = self.check(node) {
            self.nodes[i]
                .goto_targets
                .get_or_insert_with(Vec::new)
                .extend(targets);
        }
    }

    /// Fails `node`'s task with a timeout error if it runs longer than `timeout`.
    /// The error is stored like any other; `invoke(None)` runs the task again.
    pub fn set_timeout(&mut self, node: NodeHandle<S>, timeout: Duration) {
        if let Some(i) = self.check(node) {
            self.nodes[i].timeout = Some(timeout);
        }
    }

    /// The name of a node.
    pub fn name(&self, node: NodeHandle<S>) -> &str {
        &self.nodes[node.index()].name
    }

    /// Starts compiling: add a checkpointer and breakpoints, then `build()`.
    pub fn compile(self) -> CompileBuilder<S> {
        CompileBuilder::new(self)
    }

    /// Checks the graph: an entry, no unreachable nodes, no dead ends.
    pub(crate) fn validate(&self) -> Result<(), GraphError> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        if self.start.fixed.is_empty() && self.start.conditional.is_empty() {
            return Err(GraphError::NoEntry);
        }
        let n = self.nodes.len();
        let mut reachable = vec![false; n];
        let mut stack: Vec<usize> = Vec::new();
        let open_targets = |edges: &Edges<S>| edges.conditional.iter().any(|c| c.targets.is_none());
        let push_targets =
            |edges: &Edges<S>, extra: Option<&Vec<Target>>, stack: &mut Vec<usize>| {
                let declared = edges
                    .fixed
                    .iter()
                    .chain(
                        edges
                            .conditional
                            .iter()
                            .flat_map(|c| c.targets.iter().flatten()),
                    )
                    .chain(extra.into_iter().flatten());
                for t in declared {
                    if let Target::Node(i) = t {
                        stack.push(*i);
                    }
                }
            };
        let mut everything = open_targets(&self.start);
        push_targets(&self.start, None, &mut stack);
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut reachable[i], true) {
                continue;
            }
            everything |= open_targets(&self.edges[i]);
            push_targets(
                &self.edges[i],
                self.nodes[i].goto_targets.as_ref(),
                &mut stack,
            );
            for j in &self.joins {
                if j.sources.contains(&i) {
                    stack.push(j.target);
                }
            }
        }
        if !everything && let Some(i) = reachable.iter().position(|r| !r) {
            return Err(GraphError::Unreachable {
                node: self.nodes[i].name.to_string(),
            });
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let edges = &self.edges[i];
            let in_join = self.joins.iter().any(|j| j.sources.contains(&i));
            if edges.fixed.is_empty()
                && edges.conditional.is_empty()
                && node.goto_targets.is_none()
                && !in_join
            {
                return Err(GraphError::DeadEnd {
                    node: node.name.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Node names, for error messages.
pub(crate) fn known_names<S: State>(nodes: &[NodeSpec<S>]) -> String {
    nodes
        .iter()
        .map(|n| format!("`{}`", n.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves a list of gotos to task specs, checking that each is allowed.
pub(crate) fn resolve_gotos<S: State>(
    graph_id: u64,
    nodes: &[NodeSpec<S>],
    from: &str,
    allowed: Option<&[Target]>,
    gotos: Vec<Goto<S>>,
    out: &mut Vec<TaskSpec>,
) -> Result<(), crate::error::RunError> {
    for g in gotos {
        let (handle, input) = match g {
            Goto::End => {
                if let Some(allowed) = allowed
                    && !allowed.contains(&Target::End)
                {
                    return Err(crate::error::RunError::InvalidRoute {
                        from: from.into(),
                        to: "END".into(),
                        why: "which it did not declare; add END to its declared targets",
                    });
                }
                continue;
            }
            Goto::Node(h) => (h, None),
            Goto::Send(s) => (s.node, Some(s.input)),
        };
        if handle.graph != graph_id || handle.index() >= nodes.len() {
            return Err(crate::error::RunError::InvalidRoute {
                from: from.into(),
                to: format!("#{}", handle.index),
                why: "a node of another graph",
            });
        }
        if let Some(allowed) = allowed
            && !allowed.contains(&Target::Node(handle.index()))
        {
            return Err(crate::error::RunError::InvalidRoute {
                from: from.into(),
                to: nodes[handle.index()].name.to_string(),
                why: "which it did not declare; list it in `add_conditional_edges_to` or `add_goto_targets`",
            });
        }
        out.push(TaskSpec {
            node: nodes[handle.index()].name.clone(),
            input,
        });
    }
    Ok(())
}

/// Names used by nodes, as a set.
pub(crate) fn name_index<S: State>(nodes: &[NodeSpec<S>]) -> HashMap<Arc<str>, usize> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect()
}
