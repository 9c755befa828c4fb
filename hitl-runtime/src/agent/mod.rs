//! Agents: a chat model calling tools in a loop, as a state graph.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::policy::Action;

/// The state of an agent: the conversation, and what middleware keeps between steps.
#[derive(hitl_macros::State, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The conversation. Appended; a message with the id of an existing one replaces
    /// it.
    #[state(reducer = messages)]
    pub messages: Vec<Message>,
    /// Reviewer edits of the last model turn's tool calls, by call id (written by
    /// the human-in-the-loop middleware, read when the tools run).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub edited_tool_calls: BTreeMap<String, Action>,
}
