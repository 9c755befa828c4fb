//! Agent middleware: node hooks around the loop and onion hooks around each call.
//!
//! Node hooks (`before_agent`, `before_model`, `after_model`, `after_agent`) each
//! become a node of the agent's graph, named `"{middleware name}.{hook}"`, so they are
//! checkpointed, can interrupt, and show in streams. `before_*` hooks run in the order
//! the middleware was added, `after_*` hooks in reverse order. A hook may jump
//! elsewhere ([`JumpTo`]).
//!
//! Onion hooks (`wrap_model_call`, `wrap_tool_call`) wrap the call itself: the first
//! middleware added is the outermost; `next` may be called several times (retries).

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::AgentState;
use super::AgentStateUpdate;
use super::model::{ChatModel, ModelError, ModelRequest};
use crate::context::NodeContext;
use crate::error::NodeError;
use crate::interrupt::ResumeValidator;
use crate::message::{AssistantMessage, ToolCall};
use crate::tool::{DynTool, ToolContext, ToolError, ToolSet};

/// Which node hooks a middleware has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Runs once per invocation, before everything.
    pub before_agent: bool,
    /// Runs before every model call.
    pub before_model: bool,
    /// Runs after every model call.
    pub after_model: bool,
    /// Runs once per invocation, at the end.
    pub after_agent: bool,
}

/// Where a node hook may send the run instead of the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpTo {
    /// Back to the start of the loop (the first `before_model` hook, or the model).
    Model,
    /// To the tool calls of the last model turn that have no result yet.
    Tools,
    /// To the end (the `after_agent` hooks, then `END`).
    End,
}

/// What a node hook returns: an update, a jump, both or neither.
#[derive(Debug, Clone, Default)]
pub struct HookOutput {
    /// Applied to the agent's state.
    pub update: Option<AgentStateUpdate>,
    /// Where to go instead of the next step.
    pub jump_to: Option<JumpTo>,
}

impl HookOutput {
    /// Nothing.
    pub fn none() -> Self {
        HookOutput::default()
    }

    /// An update.
    pub fn update(update: AgentStateUpdate) -> Self {
        HookOutput {
            update: Some(update),
            jump_to: None,
        }
    }

    /// Also jump.
    pub fn jump_to(mut self, to: JumpTo) -> Self {
        self.jump_to = Some(to);
        self
    }
}

impl From<AgentStateUpdate> for HookOutput {
    fn from(update: AgentStateUpdate) -> Self {
        HookOutput::update(update)
    }
}

/// The rest of the model-call chain, for [`Middleware::wrap_model_call`].
#[derive(Clone, Copy)]
pub struct ModelNext<'a> {
    pub(crate) chain: &'a [Arc<dyn Middleware>],
    pub(crate) model: &'a dyn ChatModel,
    pub(crate) cx: &'a NodeContext,
}

impl fmt::Debug for ModelNext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelNext")
            .field("remaining", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl<'a> ModelNext<'a> {
    /// Runs the rest of the chain, then the model.
    pub fn run<'b>(
        self,
        request: ModelRequest<'b>,
    ) -> BoxFuture<'b, Result<AssistantMessage, ModelError>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            match self.chain.split_first() {
                Some((first, rest)) => {
                    first
                        .wrap_model_call(
                            request,
                            ModelNext {
                                chain: rest,
                                ..self
                            },
                        )
                        .await
                }
                None => {
                    if self.cx.streams_messages() {
                        let cx = self.cx.clone();
                        self.model
                            .stream(&request, &move |chunk| cx.emit_message(chunk))
                            .await
                    } else {
                        self.model.invoke(&request).await
                    }
                }
            }
        })
    }

    /// The node context of the model task.
    pub fn context(&self) -> &NodeContext {
        self.cx
    }
}

/// One tool call about to run, for [`Middleware::wrap_tool_call`].
#[derive(Clone)]
pub struct ToolCallRequest<'a> {
    /// The call (with a reviewer's edit applied, in batched review mode).
    pub call: ToolCall,
    /// The id of the assistant message that made the call.
    pub message_id: Option<&'a str>,
    /// The agent's state when the tools step started.
    pub state: &'a Arc<AgentState>,
    /// The tools of the agent.
    pub tools: &'a ToolSet,
    /// The node context of the tool task (interrupts, stream writer).
    pub cx: &'a NodeContext,
}

impl fmt::Debug for ToolCallRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolCallRequest")
            .field("call", &self.call)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

impl ToolCallRequest<'_> {
    /// The tool called, if the agent has it.
    pub fn tool(&self) -> Option<&Arc<dyn DynTool>> {
        self.tools.get(&self.call.name)
    }
}

/// The rest of the tool-call chain, for [`Middleware::wrap_tool_call`].
#[derive(Clone, Copy)]
pub struct ToolNext<'a> {
    pub(crate) chain: &'a [Arc<dyn Middleware>],
}

impl fmt::Debug for ToolNext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolNext")
            .field("remaining", &self.chain.len())
            .finish()
    }
}

impl<'a> ToolNext<'a> {
    /// Runs the rest of the chain, then the tool.
    pub fn run<'b>(self, request: ToolCallRequest<'b>) -> BoxFuture<'b, Result<Value, ToolError>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            match self.chain.split_first() {
                Some((first, rest)) => {
                    first
                        .wrap_tool_call(request, ToolNext { chain: rest })
                        .await
                }
                None => {
                    let Some(tool) = request.tool().cloned() else {
                        return Err(ToolError::UnknownTool {
                            name: request.call.name.clone(),
                            available: request.tools.names().collect::<Vec<_>>().join(", "),
                        });
                    };
                    let id = request.call.id.as_deref().unwrap_or("");
                    let cx = ToolContext::new(
                        request.cx.clone(),
                        &request.call.name,
                        id,
                        request.message_id,
                        request.state.clone(),
                    );
                    tool.call(request.call.args.clone(), cx).await
                }
            }
        })
    }
}

/// Agent middleware. Override the hooks you need and declare the node hooks in
/// [`hooks`](Self::hooks).
#[async_trait::async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// The name; node hooks are named `"{name}.{hook}"`. Must be unique in an agent.
    fn name(&self) -> &str;

    /// The node hooks this middleware has.
    fn hooks(&self) -> Hooks {
        Hooks::default()
    }

    /// Validators for the interrupts this middleware raises, by kind.
    fn resume_validators(&self) -> Vec<(String, ResumeValidator)> {
        Vec::new()
    }

    /// Called by the agent builder with the agent's tools.
    fn bind_tools(&mut self, tools: &ToolSet) -> Result<(), String> {
        let _ = tools;
        Ok(())
    }

    /// Whether this middleware enforces the tools' review policies. An agent whose
    /// tools declare a policy (`#[tool(interrupt(..))]`) and that has no such
    /// middleware does not build: those tools would run unreviewed.
    fn enforces_review_policies(&self) -> bool {
        false
    }

    /// Once per invocation, before everything.
    async fn before_agent(
        &self,
        state: &AgentState,
        cx: &NodeContext,
    ) -> Result<HookOutput, NodeError> {
        let _ = (state, cx);
        Ok(HookOutput::none())
    }

    /// Before every model call.
    async fn before_model(
        &self,
        state: &AgentState,
        cx: &NodeContext,
    ) -> Result<HookOutput, NodeError> {
        let _ = (state, cx);
        Ok(HookOutput::none())
    }

    /// After every model call.
    async fn after_model(
        &self,
        state: &AgentState,
        cx: &NodeContext,
    ) -> Result<HookOutput, NodeError> {
        let _ = (state, cx);
        Ok(HookOutput::none())
    }

    /// Once per invocation, at the end.
    async fn after_agent(
        &self,
        state: &AgentState,
        cx: &NodeContext,
    ) -> Result<HookOutput, NodeError> {
        let _ = (state, cx);
        Ok(HookOutput::none())
    }

    /// Around each model call.
    async fn wrap_model_call(
        &self,
        request: ModelRequest<'_>,
        next: ModelNext<'_>,
    ) -> Result<AssistantMessage, ModelError> {
        next.run(request).await
    }

    /// Around each tool call.
    async fn wrap_tool_call(
        &self,
        request: ToolCallRequest<'_>,
        next: ToolNext<'_>,
    ) -> Result<Value, ToolError> {
        next.run(request).await
    }
}
