//! Chat messages, in LangChain's message dict format.
//!
//! A message serializes as the flat dict LangChain and LangGraph clients exchange:
//! `{"type": "human" | "ai" | "tool" | "system", "content": ..., "id": ...}`, with
//! `tool_calls` (and `invalid_tool_calls`) on assistant messages and `tool_call_id` /
//! `status` on tool messages. Empty optional fields are omitted; on input the other
//! LangChain keys (`additional_kwargs`, `response_metadata`, ...) are accepted and the
//! two metadata maps are kept. OpenAI-style role dicts (`{"role": "user", ...}`)
//! are accepted as input too.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::state::MessageLike;

/// Message content: text, or a list of content blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content blocks (`{"type": "text", "text": ...}`, images, ...).
    Blocks(Vec<Value>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl Content {
    /// The text of the content: the string, or the text blocks joined.
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| match b {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                        o.get("text").and_then(Value::as_str)
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }

    /// Whether there is no content at all.
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(s) => s.is_empty(),
            Content::Blocks(b) => b.is_empty(),
        }
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::Text(s)
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::Text(s.to_owned())
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// A call of a tool, proposed by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON object.
    #[serde(default = "empty_object")]
    pub args: Value,
    /// The call id, which the tool message answering it repeats.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default = "tool_call_type", skip_deserializing)]
    kind: &'static str,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn tool_call_type() -> &'static str {
    "tool_call"
}

impl ToolCall {
    /// A tool call.
    pub fn new(name: impl Into<String>, args: Value, id: impl Into<String>) -> Self {
        ToolCall {
            name: name.into(),
            args,
            id: Some(id.into()),
            kind: "tool_call",
        }
    }
}

/// A tool call the model made whose arguments are not valid JSON, as LangChain's
/// `InvalidToolCall`. An agent never runs it nor asks a reviewer about it: it answers
/// it with an error tool message, and the model gets another turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidToolCall {
    /// The tool's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The arguments as the model sent them.
    #[serde(default)]
    pub args: Option<String>,
    /// The call id.
    #[serde(default)]
    pub id: Option<String>,
    /// Why the arguments do not parse.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(
        rename = "type",
        default = "invalid_tool_call_type",
        skip_deserializing
    )]
    kind: &'static str,
}

fn invalid_tool_call_type() -> &'static str {
    "invalid_tool_call"
}

impl InvalidToolCall {
    /// A call named `name`, with id `id`, whose raw arguments `args` fail to parse
    /// with `error`.
    pub fn new(
        name: impl Into<String>,
        args: impl Into<String>,
        id: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        InvalidToolCall {
            name: Some(name.into()),
            args: Some(args.into()),
            id: Some(id.into()),
            error: Some(error.into()),
            kind: "invalid_tool_call",
        }
    }
}

/// Whether a tool ran successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolStatus {
    /// It did.
    #[default]
    Success,
    /// It failed, or a reviewer rejected the call.
    Error,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A system prompt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemMessage {
    /// The text.
    pub content: Content,
    /// The id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A message from the user.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserMessage {
    /// The text.
    pub content: Content,
    /// The id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An optional author name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A message from the model, possibly with tool calls.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// The text.
    pub content: Content,
    /// The id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tools the model wants to call, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Calls that cannot run because their arguments are not valid JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_tool_calls: Vec<InvalidToolCall>,
    /// Provider metadata (model name, finish reason, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub response_metadata: Map<String, Value>,
    /// Token counts, if the provider reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<Value>,
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolMessage {
    /// The result.
    pub content: Content,
    /// The id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The call this answers.
    pub tool_call_id: String,
    /// Success, or error (failed or rejected).
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: ToolStatus,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Message {
    /// `{"type": "system"}`
    #[serde(rename = "system")]
    System(SystemMessage),
    /// `{"type": "human"}`
    #[serde(rename = "human")]
    User(UserMessage),
    /// `{"type": "ai"}`
    #[serde(rename = "ai")]
    Assistant(AssistantMessage),
    /// `{"type": "tool"}`
    #[serde(rename = "tool")]
    Tool(ToolMessage),
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::<String, Value>::deserialize(deserializer)?;
        let kind = match (map.remove("type"), map.remove("role")) {
            (Some(Value::String(t)), _) => t,
            (None, Some(Value::String(r))) => r,
            _ => {
                return Err(D::Error::custom(
                    "a message needs a `type` (human, ai, tool, system) or a `role` (user, assistant, tool, system)",
                ));
            }
        };
        let value = Value::Object(map);
        let r = match kind.as_str() {
            "system" | "developer" => serde_json::from_value(value).map(Message::System),
            "human" | "user" => serde_json::from_value(value).map(Message::User),
            "ai" | "assistant" => serde_json::from_value(value).map(Message::Assistant),
            "tool" => serde_json::from_value(value).map(Message::Tool),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown message type `{other}`: expected human, ai, tool or system"
                )));
            }
        };
        r.map_err(D::Error::custom)
    }
}

impl Message {
    /// A system prompt.
    pub fn system(content: impl Into<Content>) -> Self {
        Message::System(SystemMessage {
            content: content.into(),
            id: None,
        })
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Message::User(UserMessage {
            content: content.into(),
            ..Default::default()
        })
    }

    /// An assistant message without tool calls.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Message::Assistant(AssistantMessage {
            content: content.into(),
            ..Default::default()
        })
    }

    /// An assistant message with tool calls.
    pub fn assistant_with_tools(content: impl Into<Content>, tool_calls: Vec<ToolCall>) -> Self {
        Message::Assistant(AssistantMessage {
            content: content.into(),
            tool_calls,
            ..Default::default()
        })
    }

    /// A successful tool result.
    pub fn tool(
        tool_call_id: impl Into<String>,
        name: impl Into<String>,
        content: impl Into<Content>,
    ) -> Self {
        Message::Tool(ToolMessage {
            content: content.into(),
            id: None,
            name: Some(name.into()),
            tool_call_id: tool_call_id.into(),
            status: ToolStatus::Success,
        })
    }

    /// A failed (or rejected) tool result.
    pub fn tool_error(
        tool_call_id: impl Into<String>,
        name: impl Into<String>,
        content: impl Into<Content>,
    ) -> Self {
        Message::Tool(ToolMessage {
            content: content.into(),
            id: None,
            name: Some(name.into()),
            tool_call_id: tool_call_id.into(),
            status: ToolStatus::Error,
        })
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.set_message_id(id.into());
        self
    }

    /// The content.
    pub fn content(&self) -> &Content {
        match self {
            Message::System(m) => &m.content,
            Message::User(m) => &m.content,
            Message::Assistant(m) => &m.content,
            Message::Tool(m) => &m.content,
        }
    }

    /// The text of the content.
    pub fn text(&self) -> String {
        self.content().text()
    }

    /// The id.
    pub fn id(&self) -> Option<&str> {
        self.message_id()
    }

    /// The tool calls of an assistant message (empty otherwise).
    pub fn tool_calls(&self) -> &[ToolCall] {
        match self {
            Message::Assistant(m) => &m.tool_calls,
            _ => &[],
        }
    }

    /// The assistant message, if this is one.
    pub fn as_assistant(&self) -> Option<&AssistantMessage> {
        match self {
            Message::Assistant(m) => Some(m),
            _ => None,
        }
    }

    /// The tool message, if this is one.
    pub fn as_tool(&self) -> Option<&ToolMessage> {
        match self {
            Message::Tool(m) => Some(m),
            _ => None,
        }
    }

    /// The LangChain type name: `system`, `human`, `ai` or `tool`.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::System(_) => "system",
            Message::User(_) => "human",
            Message::Assistant(_) => "ai",
            Message::Tool(_) => "tool",
        }
    }
}

impl MessageLike for Message {
    fn message_id(&self) -> Option<&str> {
        match self {
            Message::System(m) => m.id.as_deref(),
            Message::User(m) => m.id.as_deref(),
            Message::Assistant(m) => m.id.as_deref(),
            Message::Tool(m) => m.id.as_deref(),
        }
    }

    fn set_message_id(&mut self, id: String) {
        let slot = match self {
            Message::System(m) => &mut m.id,
            Message::User(m) => &mut m.id,
            Message::Assistant(m) => &mut m.id,
            Message::Tool(m) => &mut m.id,
        };
        *slot = Some(id);
    }
}

/// A piece of a streamed assistant message (messages stream mode).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageChunk {
    /// The id of the message being streamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// New text.
    #[serde(default)]
    pub content: String,
    /// Pieces of tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_call_chunks: Vec<ToolCallChunk>,
}

/// A piece of a streamed tool call. Pieces with the same `index` belong together;
/// `args` pieces concatenate to the JSON arguments.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolCallChunk {
    /// Which call of the message this piece belongs to.
    pub index: usize,
    /// The call id, on the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool name, on the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the JSON arguments.
    #[serde(default)]
    pub args: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_langchain_dicts() {
        let ai = Message::assistant_with_tools(
            "",
            vec![ToolCall::new(
                "send_email",
                json!({"to": "a@b.c"}),
                "call_1",
            )],
        )
        .with_id("m1");
        assert_eq!(
            serde_json::to_value(&ai).unwrap(),
            json!({"type": "ai", "content": "", "id": "m1",
                   "tool_calls": [{"name": "send_email", "args": {"to": "a@b.c"}, "id": "call_1", "type": "tool_call"}]})
        );
        let tool = Message::tool_error("call_1", "send_email", "no");
        assert_eq!(
            serde_json::to_value(&tool).unwrap(),
            json!({"type": "tool", "content": "no", "name": "send_email", "tool_call_id": "call_1", "status": "error"})
        );
    }

    #[test]
    fn reads_full_langchain_dumps_and_role_dicts() {
        let dumped = json!({"content": "hi", "additional_kwargs": {}, "response_metadata": {},
            "type": "ai", "name": null, "id": "run-1", "example": false,
            "tool_calls": [{"name": "t", "args": {"x": 1}, "id": "c1", "type": "tool_call"}],
            "invalid_tool_calls": [], "usage_metadata": null});
        let m: Message = serde_json::from_value(dumped).unwrap();
        assert_eq!(m.tool_calls()[0].args, json!({"x": 1}));
        assert_eq!(m.id(), Some("run-1"));
        let user: Message =
            serde_json::from_value(json!({"role": "user", "content": "yo"})).unwrap();
        assert_eq!(user, Message::user("yo"));
        let err = serde_json::from_value::<Message>(json!({"type": "robot"})).unwrap_err();
        assert!(err.to_string().contains("unknown message type `robot`"));
    }

    #[test]
    fn text_of_blocks_joins_text_parts() {
        let c = Content::Blocks(vec![
            json!({"type": "text", "text": "a"}),
            json!({"type": "image_url", "image_url": "x"}),
            json!("b"),
        ]);
        assert_eq!(c.text(), "ab");
    }
}
