//! What generated code refers to. Not public API: no semver guarantees.

pub use schemars;
pub use serde;
pub use serde_json;
pub use serde_json::value::RawValue;
pub use std::boxed::Box;
pub use std::sync::Arc;

pub use crate::error::ReducerError;
pub use crate::graph::NodeOutput;
pub use crate::run::Input;
pub use crate::schema::schema_of;
pub use crate::state::{
    ChannelMask, ChannelSpec, ReducerKind, State, StateUpdate, StepWrites, reducers,
};

/// The error for a channel index a state does not have (a runtime bug if it happens).
pub fn unknown_channel<T>(channel: usize) -> Result<T, serde_json::Error> {
    use serde::de::Error;
    Err(serde_json::Error::custom(format!(
        "no channel with index {channel}"
    )))
}
