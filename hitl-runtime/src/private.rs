//! What generated code refers to. Not public API: no semver guarantees.

pub use schemars;
pub use serde;
pub use serde_json;
pub use serde_json::value::RawValue;
pub use std::boxed::Box;
pub use std::sync::Arc;

pub use futures_util::future::BoxFuture;
pub use serde_json::Value;

pub use crate::error::ReducerError;
pub use crate::governance::GovernanceSpec;
pub use crate::graph::NodeOutput;
pub use crate::interrupt::{InPlaceKind, Refusal};
pub use crate::policy::{
    AllowsApprove, AllowsEdit, AllowsReject, AllowsRespond, Decision, DecisionSet, DecisionType,
    InterruptPolicy, PolicyMap,
};
pub use crate::run::Input;
pub use crate::schema::schema_of;
pub use crate::state::plumbing::{ChannelMask, ChannelSpec, ReducerKind, StepWrites, reducers};
pub use crate::state::{State, StateUpdate};
pub use crate::tool::plumbing::{blocking, decode_args, tool_result, tool_value};
pub use crate::tool::{Tool, ToolArgs, ToolContext, ToolError, ToolParam, ToolSet};

/// The error for a channel index a state does not have (a runtime bug if it happens).
pub fn unknown_channel<T>(channel: usize) -> Result<T, serde_json::Error> {
    use serde::de::Error;
    Err(serde_json::Error::custom(format!(
        "no channel with index {channel}"
    )))
}

/// Boxes a tool's future.
pub fn boxed<F>(future: F) -> BoxFuture<'static, F::Output>
where
    F: Future + Send + 'static,
{
    Box::pin(future)
}

/// Fails to compile (on the parameter's type) unless `T` can be a tool parameter.
pub const fn assert_tool_param<T: ToolParam>() {}

/// Implemented for fields that can have `#[state(reducer = append)]`.
#[diagnostic::on_unimplemented(
    message = "`#[state(reducer = append)]` needs a `Vec<T>` field, not `{Self}`",
    label = "not a `Vec`",
    note = "`append` extends a list with the written items; for other types use the default (last value) or `reducer = your_function`"
)]
pub trait AppendChannel {}

impl<T> AppendChannel for Vec<T> {}

/// Fails to compile unless `T` can be an `append` channel.
pub const fn assert_append_channel<T: AppendChannel>() {}

/// Implemented for fields that can have `#[state(reducer = messages)]`.
#[diagnostic::on_unimplemented(
    message = "`#[state(reducer = messages)]` needs a `Vec<Message>` field, not `{Self}`",
    label = "not a list of messages",
    note = "`messages` appends messages and replaces the one with the same id; the items must implement `MessageLike`"
)]
pub trait MessagesChannel {}

impl<M: crate::state::MessageLike> MessagesChannel for Vec<M> {}

/// Fails to compile unless `T` can be a `messages` channel.
pub const fn assert_messages_channel<T: MessagesChannel>() {}

/// The OpenAI-compatible client's parsers, for fuzzing.
#[cfg(feature = "openai")]
pub use crate::agent::openai_parsers::{fold_sse, read_completion};
