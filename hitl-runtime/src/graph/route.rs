//! Where a run goes: routes, gotos, `SendTo` tasks, edge ends, and what nodes return.

use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

use super::{Command, End, NodeHandle, Start};
#[cfg(doc)]
use crate::context::NodeContext;
use crate::state::State;

/// A task that runs `node` with its own input, in the next superstep (map-reduce):
/// LangGraph's `Send`.
///
/// It is named `SendTo` so that a glob import of this crate does not shadow
/// [`std::marker::Send`]. The node reads the input with [`NodeContext::input`]. Sends
/// are never merged: five sends to one node run it five times, concurrently.
pub struct SendTo<S> {
    pub(crate) node: NodeHandle<S>,
    pub(crate) input: Box<RawValue>,
}

impl<S> SendTo<S> {
    /// A send of `input` to `node`.
    ///
    /// # Panics
    /// If `input` cannot be serialized to JSON (a map with non-string keys, ...).
    pub fn new(node: NodeHandle<S>, input: &impl Serialize) -> Self {
        let input =
            serde_json::value::to_raw_value(input).expect("a Send input must serialize to JSON");
        SendTo { node, input }
    }
}

impl<S> Clone for SendTo<S> {
    fn clone(&self) -> Self {
        SendTo {
            node: self.node,
            input: self.input.clone(),
        }
    }
}

impl<S> fmt::Debug for SendTo<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendTo")
            .field("node", &self.node)
            .field("input", &self.input.get())
            .finish()
    }
}

/// Where a run goes next: a node, a [`SendTo`], or [`END`](crate::END).
pub enum Goto<S> {
    /// Run this node in the next superstep.
    Node(NodeHandle<S>),
    /// Run this node with its own input.
    Send(SendTo<S>),
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
impl<S> From<SendTo<S>> for Goto<S> {
    fn from(s: SendTo<S>) -> Self {
        Goto::Send(s)
    }
}
impl<S> From<End> for Goto<S> {
    fn from(_: End) -> Self {
        Goto::End
    }
}

/// What a conditional edge returns: zero or more places to go.
///
/// A router rarely names this type: it returns a [`NodeHandle`], [`END`](crate::END), an
/// `Option<NodeHandle>` (`None` is `END`), a [`SendTo`], a `Vec<SendTo>` or a [`Goto`],
/// and [`StateGraph::add_conditional_edges`](crate::StateGraph::add_conditional_edges)
/// converts it. Build one for several places at once ([`Route::many`]).
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
/// `Some(node)` goes to `node`; `None` ends the run from here, like [`END`](crate::END):
/// `move |s: &Flow| (!s.done).then_some(next)`.
impl<S> From<Option<NodeHandle<S>>> for Route<S> {
    fn from(node: Option<NodeHandle<S>>) -> Self {
        node.map_or_else(Route::end, Route::to)
    }
}
impl<S> From<SendTo<S>> for Route<S> {
    fn from(s: SendTo<S>) -> Self {
        Route::to(s)
    }
}
impl<S> From<Vec<SendTo<S>>> for Route<S> {
    fn from(sends: Vec<SendTo<S>>) -> Self {
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
/// Converts from `()` (nothing), the state's update type, a [`Command`], a [`SendTo`] or
/// a `Vec<SendTo>`.
pub struct NodeOutput<S: State> {
    update: Option<S::Update>,
    goto: Vec<Goto<S>>,
    resume_in_node: bool,
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

    /// The update, the gotos, and whether the node tried to resume (which it may not).
    pub(crate) fn into_parts(self) -> (Option<S::Update>, Vec<Goto<S>>, bool) {
        (self.update, self.goto, self.resume_in_node)
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
        let (update, goto, resume) = c.into_parts();
        NodeOutput {
            update,
            goto,
            resume_in_node: resume.is_some(),
        }
    }
}

impl<S: State> From<SendTo<S>> for NodeOutput<S> {
    fn from(s: SendTo<S>) -> Self {
        NodeOutput {
            update: None,
            goto: vec![Goto::Send(s)],
            resume_in_node: false,
        }
    }
}

impl<S: State> From<Vec<SendTo<S>>> for NodeOutput<S> {
    fn from(sends: Vec<SendTo<S>>) -> Self {
        NodeOutput {
            update: None,
            goto: sends.into_iter().map(Goto::Send).collect(),
            resume_in_node: false,
        }
    }
}

/// Where an edge starts: [`START`](crate::START) or a node.
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

/// Where an edge ends: a node or [`END`](crate::END).
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

/// The places a conditional edge declares it may go
/// ([`StateGraph::add_conditional_edges_to`](crate::StateGraph::add_conditional_edges_to)):
/// an array or `Vec` of node handles (or of [`EdgeTarget`]s), or a tuple mixing node
/// handles and [`END`](crate::END): `(publish, END)`.
pub trait EdgeTargets<S> {
    /// The targets, in order.
    fn into_targets(self) -> Vec<EdgeTarget<S>>;
}

impl<S, T: Into<EdgeTarget<S>>, const N: usize> EdgeTargets<S> for [T; N] {
    fn into_targets(self) -> Vec<EdgeTarget<S>> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<S, T: Into<EdgeTarget<S>>> EdgeTargets<S> for Vec<T> {
    fn into_targets(self) -> Vec<EdgeTarget<S>> {
        self.into_iter().map(Into::into).collect()
    }
}

macro_rules! tuple_targets {
    ($($t:ident),+) => {
        impl<S, $($t: Into<EdgeTarget<S>>),+> EdgeTargets<S> for ($($t,)+) {
            #[allow(non_snake_case)]
            fn into_targets(self) -> Vec<EdgeTarget<S>> {
                let ($($t,)+) = self;
                vec![$($t.into()),+]
            }
        }
    };
}
tuple_targets!(A);
tuple_targets!(A, B);
tuple_targets!(A, B, C);
tuple_targets!(A, B, C, D);
tuple_targets!(A, B, C, D, E);
tuple_targets!(A, B, C, D, E, F);
