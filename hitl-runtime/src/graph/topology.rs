//! A built graph's structure: its nodes, edges and joins, and the routing rules the
//! executor asks it for. Fields stay private to `graph`; the run loop uses the methods.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Goto, NodeHandle, NodeOutput, Route};
use crate::checkpoint::{TaskSpec, VersionsSeen};
use crate::context::NodeContext;
use crate::error::{GraphError, NodeError, RunError};
use crate::ids::CheckpointId;
use crate::state::State;

pub(crate) type NodeFuture<S> = BoxFuture<'static, Result<NodeOutput<S>, NodeError>>;
pub(crate) type NodeFn<S> = Arc<dyn Fn(Arc<S>, NodeContext) -> NodeFuture<S> + Send + Sync>;
pub(crate) type RouteFn<S> = Arc<dyn Fn(&S) -> Route<S> + Send + Sync>;

pub(crate) struct NodeSpec<S: State> {
    pub(super) name: Arc<str>,
    pub(super) run: NodeFn<S>,
    pub(super) timeout: Option<Duration>,
    pub(super) goto_targets: Option<Vec<Target>>,
}

impl<S: State> NodeSpec<S> {
    /// The node's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Starts the node on `state`.
    pub(crate) fn start(&self, state: Arc<S>, cx: NodeContext) -> NodeFuture<S> {
        (self.run)(state, cx)
    }

    /// Its timeout, if it has one.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    Node(usize),
    End,
}

pub(crate) struct Conditional<S> {
    pub(super) route: RouteFn<S>,
    pub(super) targets: Option<Vec<Target>>,
}

pub(crate) struct Join {
    pub(super) sources: Vec<usize>,
    pub(super) target: usize,
}

/// Edges out of one place.
pub(crate) struct Edges<S> {
    pub(super) fixed: Vec<Target>,
    pub(super) conditional: Vec<Conditional<S>>,
}

impl<S> Default for Edges<S> {
    fn default() -> Self {
        Edges {
            fixed: Vec::new(),
            conditional: Vec::new(),
        }
    }
}

/// The structure of a validated graph.
pub(crate) struct Topology<S: State> {
    pub(super) id: u64,
    pub(super) nodes: Vec<NodeSpec<S>>,
    pub(super) start: Edges<S>,
    pub(super) edges: Vec<Edges<S>>,
    pub(super) joins: Vec<Join>,
    pub(super) by_name: HashMap<Arc<str>, usize>,
}

/// The tasks of the next superstep as they are collected: node triggers are merged,
/// `SendTo` tasks never are.
struct NextTasks {
    tasks: Vec<TaskSpec>,
    triggered: HashSet<usize>,
}

impl NextTasks {
    fn new() -> Self {
        NextTasks {
            tasks: Vec::new(),
            triggered: HashSet::new(),
        }
    }

    fn push<S: State>(&mut self, topology: &Topology<S>, spec: TaskSpec) {
        if spec.input.is_none() {
            let Some(i) = topology.index_of(&spec.node) else {
                return;
            };
            if !self.triggered.insert(i) {
                return;
            }
        }
        self.tasks.push(spec);
    }

    fn finish(mut self) -> Vec<TaskSpec> {
        // Checkpoints are kept (in memory, in history): no spare capacity.
        self.tasks.shrink_to_fit();
        self.tasks
    }
}

impl<S: State> Topology<S> {
    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The node at `index`.
    pub(crate) fn node(&self, index: usize) -> &NodeSpec<S> {
        &self.nodes[index]
    }

    /// The name of the node at `index`.
    pub(crate) fn name(&self, index: usize) -> &Arc<str> {
        &self.nodes[index].name
    }

    /// The nodes, in the order they were added.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| &*n.name)
    }

    /// The index of a node, by name.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The index of a handle, if it belongs to this graph.
    pub(crate) fn handle_index(&self, handle: NodeHandle<S>) -> Result<usize, GraphError> {
        if handle.graph != self.id || handle.index() >= self.nodes.len() {
            return Err(GraphError::ForeignNode {
                node: format!("#{}", handle.index),
            });
        }
        Ok(handle.index())
    }

    /// The handle of the node at `index`.
    pub(crate) fn handle(&self, index: usize) -> NodeHandle<S> {
        NodeHandle::new(self.id, index)
    }

    /// The tasks `START` leads to.
    pub(crate) fn entry(&self, state: &S) -> Result<Vec<TaskSpec>, RunError> {
        let mut next = NextTasks::new();
        self.route_from("START", &self.start, state, &mut next)?;
        Ok(next.finish())
    }

    /// The tasks a node's fixed and conditional edges lead to (`update_state` as that
    /// node).
    pub(crate) fn routes_after(&self, node: usize, state: &S) -> Result<Vec<TaskSpec>, RunError> {
        let mut next = NextTasks::new();
        self.route_from(&self.nodes[node].name, &self.edges[node], state, &mut next)?;
        Ok(next.finish())
    }

    /// The tasks of the superstep after one in which `ran` ran (node, and the tasks
    /// its output sent), on the state after the barrier: edges, gotos, then joins whose
    /// sources have all run since their target. Records in `seen` that each node that
    /// ran saw checkpoint `id`.
    pub(crate) fn next_tasks(
        &self,
        ran: &[(usize, Vec<TaskSpec>)],
        state: &S,
        seen: &mut VersionsSeen,
        id: CheckpointId,
    ) -> Result<Vec<TaskSpec>, RunError> {
        let mut next = NextTasks::new();
        for (node, goto) in ran {
            self.route_from(
                &self.nodes[*node].name,
                &self.edges[*node],
                state,
                &mut next,
            )?;
            for spec in goto {
                next.push(self, spec.clone());
            }
        }
        let ran: HashSet<usize> = ran.iter().map(|(n, _)| *n).collect();
        for n in &ran {
            seen.insert(self.nodes[*n].name.clone(), id);
        }
        for join in &self.joins {
            let target_seen = seen.get(&self.nodes[join.target].name);
            let ready = join.sources.iter().any(|s| ran.contains(s))
                && join.sources.iter().all(|s| {
                    let source_seen = seen.get(&self.nodes[*s].name);
                    source_seen.is_some() && source_seen > target_seen
                });
            if ready {
                next.push(self, TaskSpec::node(self.nodes[join.target].name.clone()));
            }
        }
        Ok(next.finish())
    }

    /// The tasks a `Command`'s gotos lead to (any node may be named).
    pub(crate) fn command_gotos(&self, gotos: Vec<Goto<S>>) -> Result<Vec<TaskSpec>, RunError> {
        let mut out = Vec::new();
        self.resolve_gotos("Command", None, gotos, &mut out)?;
        Ok(out)
    }

    /// The tasks a node's own gotos lead to, which must be among its declared targets.
    pub(crate) fn node_gotos(
        &self,
        node: usize,
        gotos: Vec<Goto<S>>,
    ) -> Result<Vec<TaskSpec>, RunError> {
        let spec = &self.nodes[node];
        let allowed = spec.goto_targets.as_deref().unwrap_or(&[]);
        let mut out = Vec::new();
        self.resolve_gotos(&spec.name, Some(allowed), gotos, &mut out)?;
        Ok(out)
    }

    /// Adds the routes of `edges` (fixed and conditional, evaluated on `state`).
    fn route_from(
        &self,
        from: &str,
        edges: &Edges<S>,
        state: &S,
        next: &mut NextTasks,
    ) -> Result<(), RunError> {
        for target in &edges.fixed {
            if let Target::Node(i) = target {
                next.push(self, TaskSpec::node(self.nodes[*i].name.clone()));
            }
        }
        for conditional in &edges.conditional {
            let route = crate::error::catching(
                || format!("the conditional edge after `{from}`"),
                || (conditional.route)(state),
            )?;
            let mut specs = Vec::new();
            self.resolve_gotos(from, conditional.targets.as_deref(), route.0, &mut specs)?;
            for spec in specs {
                next.push(self, spec);
            }
        }
        Ok(())
    }

    /// Resolves gotos to task specs, checking that each is allowed.
    fn resolve_gotos(
        &self,
        from: &str,
        allowed: Option<&[Target]>,
        gotos: Vec<Goto<S>>,
        out: &mut Vec<TaskSpec>,
    ) -> Result<(), RunError> {
        for g in gotos {
            let (handle, input) = match g {
                Goto::End => {
                    if let Some(allowed) = allowed
                        && !allowed.contains(&Target::End)
                    {
                        return Err(RunError::InvalidRoute {
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
            if handle.graph != self.id || handle.index() >= self.nodes.len() {
                return Err(RunError::InvalidRoute {
                    from: from.into(),
                    to: format!("#{}", handle.index),
                    why: "a node of another graph",
                });
            }
            if let Some(allowed) = allowed
                && !allowed.contains(&Target::Node(handle.index()))
            {
                return Err(RunError::InvalidRoute {
                    from: from.into(),
                    to: self.nodes[handle.index()].name.to_string(),
                    why: "which it did not declare; list it in `add_conditional_edges_to` or `add_goto_targets`",
                });
            }
            out.push(TaskSpec {
                node: self.nodes[handle.index()].name.clone(),
                input,
            });
        }
        Ok(())
    }
}
