//! Testing agents: a scripted model, a scripted reviewer, and readable transcripts
//! for snapshot tests.
//!
//! ```
//! # #[cfg(feature = "test-util")] {
//! use hitl_runtime::agent::{create_agent, HumanInTheLoop};
//! use hitl_runtime::testing::{ScriptedModel, ScriptedReviewer, run_with_reviewer};
//! use hitl_runtime::{tool, tools, InMemorySaver, Message, RunConfig, ToolCall, ToolError};
//! use serde_json::json;
//!
//! /// Delete a file.
//! #[tool(interrupt(allowed = [approve, reject]))]
//! async fn delete_file(path: String) -> Result<String, ToolError> { Ok(format!("deleted {path}")) }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let model = ScriptedModel::turns([
//!     Message::assistant_with_tools("", vec![ToolCall::new("delete_file", json!({"path": "a.txt"}), "c1")]),
//!     Message::assistant("Deleted."),
//! ]);
//! let agent = create_agent(model)
//!     .tools(tools![delete_file])
//!     .middleware(HumanInTheLoop::from_tools())
//!     .checkpointer(InMemorySaver::new())
//!     .build()
//!     .unwrap();
//! let reviewer = ScriptedReviewer::new().approve::<delete_file>();
//! let transcript = run_with_reviewer(&agent, "clean up", &RunConfig::thread("t"), &reviewer).await.unwrap();
//! assert!(transcript.to_string().contains("tool delete_file: deleted a.txt"));
//! # });
//! # }
//! ```

pub mod conformance;
mod record;
mod reviewer;
mod transcript;

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::agent::{ChatModel, ModelError, ModelRequest};
use crate::message::{AssistantMessage, Message, MessageChunk, ToolCallChunk};

pub use record::{Fixture, FixtureError, RecordedAnswer, Recorder, RecordingModel};
pub use reviewer::ScriptedReviewer;
pub use transcript::{FlowError, Transcript, run_with_reviewer};

type ScriptFn = Arc<dyn Fn(&[Message]) -> Result<AssistantMessage, ModelError> + Send + Sync>;

/// A chat model that answers from a script: the i-th answer for the i-th model turn,
/// or a function of the conversation. Its answers depend only on the conversation, so
/// a re-run after a resume or a restart gets the same answer.
#[derive(Clone)]
pub struct ScriptedModel {
    script: ScriptFn,
    seen: Arc<Mutex<Vec<Vec<Message>>>>,
}

impl fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedModel").finish_non_exhaustive()
    }
}

impl ScriptedModel {
    /// Answers the n-th model turn (n = assistant messages so far) with `turns[n]`.
    ///
    /// # Panics
    /// If an answer is not an assistant message.
    pub fn turns(turns: impl IntoIterator<Item = Message>) -> Self {
        let turns: Vec<AssistantMessage> = turns
            .into_iter()
            .map(|m| match m {
                Message::Assistant(a) => a,
                other => panic!(
                    "a scripted answer must be an assistant message, got a `{}` message",
                    other.kind()
                ),
            })
            .collect();
        Self::from_fn(move |messages| {
            let turn = messages
                .iter()
                .filter(|m| m.as_assistant().is_some())
                .count();
            turns.get(turn).cloned().ok_or_else(|| {
                ModelError::Script(format!(
                    "no answer for model turn {turn}: the script has {} answers",
                    turns.len()
                ))
            })
        })
    }

    /// Answers with `f(conversation)`.
    pub fn from_fn(
        f: impl Fn(&[Message]) -> Result<AssistantMessage, ModelError> + Send + Sync + 'static,
    ) -> Self {
        ScriptedModel {
            script: Arc::new(f),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The conversations the model was called with, in order.
    pub fn requests(&self) -> Vec<Vec<Message>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl ChatModel for ScriptedModel {
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request.messages.to_vec());
        (self.script)(&request.messages)
    }

    /// Streams the text word by word and each tool call's arguments in two pieces.
    async fn stream(
        &self,
        request: &ModelRequest<'_>,
        on_chunk: &(dyn Fn(MessageChunk) + Send + Sync),
    ) -> Result<AssistantMessage, ModelError> {
        let message = self.invoke(request).await?;
        let text = message.content.text();
        for word in text.split_inclusive(' ') {
            on_chunk(MessageChunk {
                id: message.id.clone(),
                content: word.to_owned(),
                tool_call_chunks: Vec::new(),
            });
        }
        for (index, call) in message.tool_calls.iter().enumerate() {
            let args = call.args.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for (k, piece) in [a, b].into_iter().enumerate() {
                on_chunk(MessageChunk {
                    id: message.id.clone(),
                    content: String::new(),
                    tool_call_chunks: vec![ToolCallChunk {
                        index,
                        id: (k == 0).then(|| call.id.clone()).flatten(),
                        name: (k == 0).then(|| call.name.clone()),
                        args: piece.to_owned(),
                    }],
                });
            }
        }
        Ok(message)
    }

    fn name(&self) -> &str {
        "scripted"
    }
}
