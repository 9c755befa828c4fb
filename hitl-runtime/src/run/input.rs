//! What a run is started with.

use std::convert::Infallible;
use std::fmt;

use crate::graph::Command;
use crate::state::State;

/// What `invoke` and `stream` take: new input (a state or an update), a [`Command`], or
/// `None` to continue a thread from its head (or fork it from an older checkpoint).
pub enum Input<S: State> {
    /// New input, applied through the reducers; the run starts from `START`.
    Update(S::Update),
    /// A resume, update or goto.
    Command(Command<S>),
    /// Continue where the thread is.
    Continue,
}

impl<S: State> fmt::Debug for Input<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Update(u) => f.debug_tuple("Update").field(u).finish(),
            Input::Command(c) => f.debug_tuple("Command").field(c).finish(),
            Input::Continue => f.write_str("Continue"),
        }
    }
}

impl<S: State> From<S> for Input<S> {
    fn from(state: S) -> Self {
        Input::Update(state.into_update())
    }
}

impl<S: State> From<Command<S>> for Input<S> {
    fn from(c: Command<S>) -> Self {
        Input::Command(c)
    }
}

/// `invoke(None, ..)`: continue the thread.
impl<S: State> From<Option<Infallible>> for Input<S> {
    fn from(_: Option<Infallible>) -> Self {
        Input::Continue
    }
}
