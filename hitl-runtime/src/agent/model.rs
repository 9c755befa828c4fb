//! Chat models: messages and tool specs in, an assistant message out.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::BoxError;
use crate::message::{AssistantMessage, Message, MessageChunk, ToolCallChunk};
use crate::tool::ToolSpec;

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The provider answered with an error status.
    #[error("the model provider answered {status}: {body}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The response body (truncated).
        body: String,
    },
    /// No answer in time.
    #[error("the model did not answer within {0:?}; raise the timeout or retry (`ModelRetry`)")]
    Timeout(Duration),
    /// The provider could not be reached.
    #[error("cannot reach the model provider: {0}")]
    Connection(String),
    /// The provider answered something this client cannot read.
    #[error("unexpected response from the model provider: {0}")]
    InvalidResponse(String),
    /// The client is not configured correctly.
    #[error("model client misconfigured: {0}")]
    Config(String),
    /// The answer stopped at the token limit in the middle of a tool call's arguments.
    #[error(
        "the model's output was cut at the token limit (finish_reason `length`) in the middle of the arguments of its call to `{tool}`; raise `max_tokens` (`ModelSettings::max_tokens`) or shorten the conversation"
    )]
    Truncated {
        /// The tool whose call was cut off.
        tool: String,
    },
    /// A scripted model has no answer for this conversation.
    #[error("scripted model: {0}")]
    Script(String),
    /// Anything else.
    #[error(transparent)]
    Other(BoxError),
}

impl ModelError {
    /// Whether retrying may help: timeouts, connection failures, 408, 409, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            ModelError::Http { status, .. } => {
                matches!(status, 408 | 409 | 429) || (500..600).contains(status)
            }
            ModelError::Timeout(_) | ModelError::Connection(_) => true,
            _ => false,
        }
    }
}

/// Whether and which tool the model must call (OpenAI's `tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides (`"auto"`).
    Auto,
    /// The model answers in text and calls no tool (`"none"`).
    None,
    /// The model calls at least one tool (`"required"`).
    Required,
    /// The model calls this tool
    /// (`{"type": "function", "function": {"name": ...}}`).
    Function(String),
}

impl ToolChoice {
    /// A named tool: `ToolChoice::function("read_file")`.
    pub fn function(name: impl Into<String>) -> Self {
        ToolChoice::Function(name.into())
    }
}

/// Generation settings of a model call. Unset fields are not sent, so the server's
/// defaults apply.
///
/// A model has its own (e.g. [`OpenAiModel::max_tokens`](super::OpenAiModel)); the
/// settings of a [`ModelRequest`] override them field by field, so a middleware can
/// change one call.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ModelSettings {
    /// The most tokens the answer may have (`max_tokens`).
    pub max_tokens: Option<u32>,
    /// The sampling temperature (`temperature`).
    pub temperature: Option<f32>,
    /// Whether the model may call several tools in one turn (`parallel_tool_calls`).
    pub parallel_tool_calls: Option<bool>,
    /// Other fields of the request body, set last (so they replace a field of the same
    /// name): `top_p`, `seed`, a server's own options, ...
    pub extra: Map<String, Value>,
}

impl ModelSettings {
    /// No settings: the server's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets `temperature`.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets `parallel_tool_calls`.
    pub fn parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.parallel_tool_calls = Some(parallel);
        self
    }

    /// Adds a field to the request body: `.extra("top_p", json!(0.9))`.
    pub fn extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// These settings with the fields set in `overrides` replaced (extra fields are
    /// merged by key).
    pub fn overridden_by(&self, overrides: &ModelSettings) -> ModelSettings {
        let mut extra = self.extra.clone();
        extra.extend(overrides.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        ModelSettings {
            max_tokens: overrides.max_tokens.or(self.max_tokens),
            temperature: overrides.temperature.or(self.temperature),
            parallel_tool_calls: overrides.parallel_tool_calls.or(self.parallel_tool_calls),
            extra,
        }
    }
}

/// What a model is asked: the conversation and the tools it may call.
///
/// Borrowed from the agent's state; middleware that changes it (a system prompt,
/// trimmed history) makes its own copy. A middleware's
/// [`wrap_model_call`](super::Middleware::wrap_model_call) can also force a tool or
/// change the settings of one call:
///
/// ```
/// # use hitl_runtime::agent::{ModelRequest, ToolChoice};
/// # fn f(mut request: ModelRequest<'_>) -> ModelRequest<'_> {
/// request.tool_choice = Some(ToolChoice::function("read_file"));
/// request.settings.max_tokens = Some(512);
/// # request }
/// ```
#[derive(Debug, Clone)]
pub struct ModelRequest<'a> {
    /// The system prompt, sent first.
    pub system_prompt: Option<Cow<'a, str>>,
    /// The conversation.
    pub messages: Cow<'a, [Message]>,
    /// The tools.
    pub tools: Cow<'a, [ToolSpec]>,
    /// Whether and which tool the model must call; `None` uses the model's own setting
    /// (and sends nothing if it has none).
    pub tool_choice: Option<ToolChoice>,
    /// Settings for this call, overriding the model's own field by field.
    pub settings: ModelSettings,
}

impl<'a> ModelRequest<'a> {
    /// A request with no system prompt, no tool choice and no settings.
    pub fn new(
        messages: impl Into<Cow<'a, [Message]>>,
        tools: impl Into<Cow<'a, [ToolSpec]>>,
    ) -> Self {
        ModelRequest {
            system_prompt: None,
            messages: messages.into(),
            tools: tools.into(),
            tool_choice: None,
            settings: ModelSettings::default(),
        }
    }

    /// Sets the system prompt.
    pub fn system_prompt(mut self, prompt: impl Into<Cow<'a, str>>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    /// Sets the tool choice.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets the settings.
    pub fn settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }
}

/// A chat model.
///
/// Implementations: `ScriptedModel` (feature `test-util`) and `OpenAiModel` (feature
/// `openai`: OpenAI and compatible servers).
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync + 'static {
    /// One answer.
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError>;

    /// One answer, calling `on_chunk` with pieces as they arrive (for the messages
    /// stream mode). The default calls [`invoke`](Self::invoke) and sends the whole
    /// answer as one piece.
    async fn stream(
        &self,
        request: &ModelRequest<'_>,
        on_chunk: &(dyn Fn(MessageChunk) + Send + Sync),
    ) -> Result<AssistantMessage, ModelError> {
        let message = self.invoke(request).await?;
        on_chunk(whole_chunk(&message));
        Ok(message)
    }

    /// A name for logs and transcripts.
    fn name(&self) -> &str {
        "model"
    }
}

/// A message as one stream chunk.
pub(crate) fn whole_chunk(message: &AssistantMessage) -> MessageChunk {
    MessageChunk {
        id: message.id.clone(),
        content: message.content.text(),
        tool_call_chunks: message
            .tool_calls
            .iter()
            .enumerate()
            .map(|(index, c)| ToolCallChunk {
                index,
                id: c.id.clone(),
                name: Some(c.name.clone()),
                args: c.args.to_string(),
            })
            .collect(),
    }
}

#[async_trait::async_trait]
impl<M: ChatModel + ?Sized> ChatModel for std::sync::Arc<M> {
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        (**self).invoke(request).await
    }

    async fn stream(
        &self,
        request: &ModelRequest<'_>,
        on_chunk: &(dyn Fn(MessageChunk) + Send + Sync),
    ) -> Result<AssistantMessage, ModelError> {
        (**self).stream(request, on_chunk).await
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}
