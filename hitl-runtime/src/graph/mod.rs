//! Building state graphs: nodes, edges, routes, and the structure the run loop reads.
//!
//! Compiling and running a graph is the `run` module's job (`StateGraph::compile`,
//! `StateGraph::add_subgraph` live there); this module does not depend on it.

mod command;
mod route;
mod topology;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;

pub use command::Command;
pub(crate) use command::Resume;
pub use route::{EdgeSource, EdgeTarget, EdgeTargets, Goto, NodeOutput, Route, SendTo};
pub(crate) use topology::{NodeSpec, Topology};

use crate::context::NodeContext;
use crate::error::{GraphError, NodeError};
pub use crate::ids::NodeHandle;
use crate::state::State;
use topology::{Conditional, Edges, Join, NodeFn, RouteFn, Target};

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
    id: u64,
    nodes: Vec<NodeSpec<S>>,
    start: Edges<S>,
    edges: Vec<Edges<S>>,
    joins: Vec<Join>,
    errors: Vec<GraphError>,
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
        F: Fn(Arc<S>, NodeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, NodeError>> + Send + 'static,
        O: Into<NodeOutput<S>>,
    {
        let run: NodeFn<S> = Arc::new(move |state, cx| {
            // `map`, not `async move { fut.await.map(..) }`: an async block holds the
            // future twice (as captured and as awaited), doubling every node's box.
            node(state, cx).map(|r| r.map(Into::into)).boxed()
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
        NodeHandle::new(self.id, self.nodes.len() - 1)
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
    /// `route` returns a node handle, [`END`], `Option<NodeHandle>` (`None` is `END`), a
    /// [`SendTo`] or `Vec<SendTo>` (fan-out), a [`Goto`], or a [`Route`]
    /// ([`Route::many`]: several places at once). The common router, "this node or
    /// `END`", is a closure returning `Option`:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use hitl_runtime::{StateGraph, START, END, State};
    /// # use serde::{Serialize, Deserialize};
    /// #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
    /// struct Draft {
    ///     words: u32,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut g = StateGraph::<Draft>::new();
    /// let write = g.add_node("write", |s: Arc<Draft>, _| async move {
    ///     Ok(DraftUpdate::default().words(s.words + 100))
    /// });
    /// g.add_edge(START, write);
    /// // Write again until the draft has 300 words, then end.
    /// g.add_conditional_edges(write, move |s: &Draft| {
    ///     if s.words < 300 { Some(write) } else { None }
    /// });
    /// let app = g.compile().build().unwrap();
    /// let out = app.invoke(Draft::default(), &Default::default()).await.unwrap();
    /// assert_eq!(out.values.words, 300);
    /// # }
    /// ```
    ///
    /// A router with one kind of answer returns it as is: `move |_: &Draft| review`,
    /// `|_: &Draft| END`, `move |s: &Draft| s.items.iter().map(|i| SendTo::new(work,
    /// i)).collect::<Vec<_>>()`.
    ///
    /// The targets are not declared, so any node counts as reachable from here when
    /// the graph is validated. Prefer [`add_conditional_edges_to`](Self::add_conditional_edges_to).
    pub fn add_conditional_edges<F, R>(&mut self, from: impl Into<EdgeSource<S>>, route: F)
    where
        F: Fn(&S) -> R + Send + Sync + 'static,
        R: Into<Route<S>>,
    {
        self.push_conditional(from.into(), None, route);
    }

    /// Like [`add_conditional_edges`](Self::add_conditional_edges), declaring every
    /// place `route` may go: an array of node handles, or a tuple that may mix them
    /// with [`END`] ([`EdgeTargets`]). A route anywhere else fails the run.
    ///
    /// ```
    /// # use hitl_runtime::{StateGraph, START, END, State};
    /// # use serde::{Serialize, Deserialize};
    /// # #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
    /// # struct Doc { approved: bool }
    /// let mut g = StateGraph::<Doc>::new();
    /// let review = g.add_node("review", |_, _| async { Ok(()) });
    /// let publish = g.add_node("publish", |_, _| async { Ok(()) });
    /// g.add_edge(START, review);
    /// g.add_conditional_edges_to(review, (publish, END), move |s: &Doc| {
    ///     s.approved.then_some(publish)
    /// });
    /// g.add_edge(publish, END);
    /// assert!(g.compile().build().is_ok());
    /// ```
    pub fn add_conditional_edges_to<F, R>(
        &mut self,
        from: impl Into<EdgeSource<S>>,
        targets: impl EdgeTargets<S>,
        route: F,
    ) where
        F: Fn(&S) -> R + Send + Sync + 'static,
        R: Into<Route<S>>,
    {
        let targets: Vec<Target> = targets
            .into_targets()
            .into_iter()
            .filter_map(|t| self.target(t))
            .collect();
        self.push_conditional(from.into(), Some(targets), route);
    }

    fn push_conditional<F, R>(
        &mut self,
        from: EdgeSource<S>,
        targets: Option<Vec<Target>>,
        route: F,
    ) where
        F: Fn(&S) -> R + Send + Sync + 'static,
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

    /// Validates the graph and freezes its structure.
    pub(crate) fn into_topology(self) -> Result<Topology<S>, GraphError> {
        self.validate()?;
        let by_name = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Ok(Topology {
            id: self.id,
            nodes: self.nodes,
            start: self.start,
            edges: self.edges,
            joins: self.joins,
            by_name,
        })
    }

    /// Checks the graph: an entry, no unreachable nodes, no dead ends.
    fn validate(&self) -> Result<(), GraphError> {
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
