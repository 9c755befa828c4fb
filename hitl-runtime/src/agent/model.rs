//! Chat models: messages and tool specs in, an assistant message out.

use std::borrow::Cow;
use std::time::Duration;

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

/// What a model is asked: the conversation and the tools it may call.
///
/// Borrowed from the agent's state; middleware that changes it (a system prompt,
/// trimmed history) makes its own copy.
#[derive(Debug, Clone)]
pub struct ModelRequest<'a> {
    /// The system prompt, sent first.
    pub system_prompt: Option<Cow<'a, str>>,
    /// The conversation.
    pub messages: Cow<'a, [Message]>,
    /// The tools.
    pub tools: Cow<'a, [ToolSpec]>,
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
