//! Agents: a chat model calling tools in a loop, as a state graph.
//!
//! ```
//! # use hitl_runtime::{tool, tools, InMemorySaver, Message, ToolError};
//! # use hitl_runtime::agent::{create_agent, HumanInTheLoop};
//! # use hitl_runtime::testing::ScriptedModel;
//! /// Delete a file.
//! #[tool(interrupt(allowed = [approve, reject]))]
//! async fn delete_file(path: String) -> Result<String, ToolError> { Ok(format!("deleted {path}")) }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let agent = create_agent(ScriptedModel::turns([Message::assistant("Nothing to do.")]))
//!     .tools(tools![delete_file])
//!     .middleware(HumanInTheLoop::from_tools())
//!     .checkpointer(InMemorySaver::new())
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! An agent **is** a [`CompiledGraph`] over [`AgentState`], so everything graphs do
//! (checkpoints, interrupts, history, time travel, streaming) applies. Its nodes:
//! `model`, `tools` (one task per tool call, so a finished call never runs again), and
//! one node per middleware node hook. A model turn without tool calls ends the run.
//!
//! Reviews speak LangChain's wire format, with a few additions (an `args_schema` per
//! reviewed tool, description templates, a resume schema): see [`wire_format`].

mod hitl;
mod middleware;
#[doc = include_str!("../docs/wire_format.md")]
pub mod wire_format {}
mod model;
mod nodes;
#[cfg(feature = "openai")]
mod openai;
mod retry;
mod texts;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hitl::{
    ActionRequest, AuthorizeRequest, DEFAULT_EDIT_NOTICE, HitlRequest, HumanInTheLoop,
    HumanInTheLoopMiddleware, ReviewConfig, ReviewMode, ReviewRules, ReviewedCall,
    ToolApprovalRequest,
};
pub use middleware::{HookOutput, Hooks, JumpTo, Middleware, ModelNext, ToolCallRequest, ToolNext};
pub use model::{ChatModel, ModelError, ModelRequest, ModelSettings, ToolChoice};
#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub use openai::OpenAiModel;
#[cfg(feature = "openai")]
pub(crate) mod openai_parsers {
    pub use super::openai::{fold_sse, read_completion};
}
pub use retry::{Backoff, InvalidBackoff, ModelRetry, ToolRetry};

use crate::checkpoint::Checkpointer;
use crate::context::NodeContext;
use crate::error::{GraphError, NodeError};
use crate::graph::Command;
use crate::graph::{END, Goto, NodeHandle, NodeOutput, START, SendTo, StateGraph};
use crate::message::{
    AssistantMessage, Content, InvalidToolCall, Message, ToolCall, ToolMessage, ToolStatus,
};
use crate::run::CompiledGraph;
use crate::run::Input;
use crate::tool::{ToolError, ToolSet, ToolSpec};
pub(crate) use nodes::{output_text, unanswered_calls};
use nodes::{run_hook, run_model, run_tools};

/// The state of an agent: the conversation, and what middleware keeps between steps.
#[derive(hitl_macros::State, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The conversation. Appended; a message with the id of an existing one replaces
    /// it.
    #[state(reducer = messages)]
    pub messages: Vec<Message>,
    /// The reviewed tool calls of the last model turn that may run, by call id: what a
    /// reviewer approved or edited (written by the human-in-the-loop middleware, read
    /// when the tools run). A reviewed call runs only as recorded here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reviewed_tool_calls: BTreeMap<String, ReviewedCall>,
}

/// A compiled agent.
pub type Agent = CompiledGraph<AgentState>;

impl From<Message> for Input<AgentState> {
    fn from(message: Message) -> Self {
        Input::Update(AgentStateUpdate::default().messages(vec![message]))
    }
}

impl From<Vec<Message>> for Input<AgentState> {
    fn from(messages: Vec<Message>) -> Self {
        Input::Update(AgentStateUpdate::default().messages(messages))
    }
}

impl From<&str> for Input<AgentState> {
    fn from(text: &str) -> Self {
        Message::user(text).into()
    }
}

/// The input of one tool task: the call, and the assistant message that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ToolTask {
    pub(crate) call: ToolCall,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message_id: Option<String>,
}

/// Builds an agent around a chat model.
pub fn create_agent(model: impl ChatModel) -> AgentBuilder {
    AgentBuilder {
        model: Arc::new(model),
        tools: ToolSet::new(),
        middleware: Vec::new(),
        checkpointer: None,
        system_prompt: None,
        interrupt_before: Vec::new(),
        interrupt_after: Vec::new(),
        name: "agent".into(),
        recursion_limit: 10_000,
        state_cache: 1024,
        tool_timeout: None,
        tool_timeouts: HashMap::new(),
        run_lease: None,
    }
}

/// Settings of an agent; finish with [`build`](Self::build).
pub struct AgentBuilder {
    model: Arc<dyn ChatModel>,
    tools: ToolSet,
    middleware: Vec<Box<dyn Middleware>>,
    checkpointer: Option<Arc<dyn Checkpointer>>,
    system_prompt: Option<String>,
    interrupt_before: Vec<String>,
    interrupt_after: Vec<String>,
    name: String,
    recursion_limit: usize,
    state_cache: usize,
    tool_timeout: Option<Duration>,
    tool_timeouts: HashMap<String, Duration>,
    run_lease: Option<Duration>,
}

impl fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("model", &self.model.name())
            .field("tools", &self.tools)
            .field(
                "middleware",
                &self.middleware.iter().map(|m| m.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl AgentBuilder {
    /// The tools the model may call: `tools![a, b]`.
    pub fn tools(mut self, tools: ToolSet) -> Self {
        self.tools = tools;
        self
    }

    /// Adds a middleware. Order matters: `before_*` hooks and the outermost onion
    /// layer come first.
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Box::new(middleware));
        self
    }

    /// Stores threads in `saver` (required to pause and resume).
    pub fn checkpointer(self, saver: impl Checkpointer) -> Self {
        self.checkpointer_arc(Arc::new(saver))
    }

    /// Like [`checkpointer`](Self::checkpointer), with a shared saver.
    pub fn checkpointer_arc(mut self, saver: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(saver);
        self
    }

    /// Stops every tool call that runs longer than `timeout` (none by default): the
    /// call is answered with an error the model reads ([`ToolError::Timeout`]). An
    /// async tool is dropped at its next `.await`; a sync tool's thread cannot be
    /// stopped and finishes in the background, its result discarded. A stopped call
    /// may have had effects: use [`ToolContext::idempotency_key`](crate::ToolContext::idempotency_key).
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = Some(timeout);
        self
    }

    /// Like [`tool_timeout`](Self::tool_timeout), for tool `T` alone (overrides the
    /// default): `.tool_timeout_for::<send_email>(Duration::from_secs(10))`.
    pub fn tool_timeout_for<T: crate::Tool>(mut self, timeout: Duration) -> Self {
        self.tool_timeouts.insert(T::NAME.to_owned(), timeout);
        self
    }

    /// How long a run's lease on its thread lasts without renewal (default 30 s; see
    /// [`CompileBuilder::run_lease`](crate::CompileBuilder::run_lease)).
    pub fn run_lease(mut self, ttl: Duration) -> Self {
        self.run_lease = Some(ttl);
        self
    }

    /// A system prompt sent before the conversation at every model call.
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    /// Pauses before these nodes (`"model"`, `"tools"`, or a hook's node name).
    pub fn interrupt_before<I: IntoIterator<Item = T>, T: Into<String>>(
        mut self,
        nodes: I,
    ) -> Self {
        self.interrupt_before
            .extend(nodes.into_iter().map(Into::into));
        self
    }

    /// Pauses after these nodes.
    pub fn interrupt_after<I: IntoIterator<Item = T>, T: Into<String>>(mut self, nodes: I) -> Self {
        self.interrupt_after
            .extend(nodes.into_iter().map(Into::into));
        self
    }

    /// The agent's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The maximum supersteps per run (default 10 000).
    pub fn recursion_limit(mut self, limit: usize) -> Self {
        self.recursion_limit = limit;
        self
    }

    /// How many thread states to keep in memory between runs (see
    /// [`crate::CompileBuilder::state_cache`]).
    pub fn state_cache(mut self, capacity: usize) -> Self {
        self.state_cache = capacity;
        self
    }

    /// Builds the agent's graph.
    pub fn build(self) -> Result<Agent, GraphError> {
        let mut names = HashSet::new();
        for t in self.tools.names() {
            if !names.insert(t.to_owned()) {
                return Err(GraphError::DuplicateTool { name: t.into() });
            }
        }
        let mut seen = HashSet::new();
        let mut middleware: Vec<Arc<dyn Middleware>> = Vec::new();
        for mut m in self.middleware {
            if !seen.insert(m.name().to_owned()) {
                return Err(GraphError::DuplicateMiddleware {
                    name: m.name().into(),
                });
            }
            m.bind_tools(&self.tools)
                .map_err(|message| GraphError::Middleware {
                    name: m.name().into(),
                    message,
                })?;
            middleware.push(Arc::from(m));
        }
        // Fail closed: a tool that declares a review policy never runs unreviewed.
        if !middleware.iter().any(|m| m.enforces_review_policies()) {
            let gated: Vec<String> = self
                .tools
                .iter()
                .filter(|t| t.policy().is_some())
                .map(|t| t.name().to_owned())
                .collect();
            if !gated.is_empty() {
                return Err(GraphError::UnreviewedTools { tools: gated });
            }
        }
        let specs: Arc<[ToolSpec]> = self.tools.specs().into();
        let shared = Arc::new(Shared {
            model: self.model,
            tools: self.tools,
            tool_timeout: self.tool_timeout,
            tool_timeouts: self.tool_timeouts,
            specs,
            middleware: middleware.clone(),
            system_prompt: self.system_prompt,
            wiring: OnceLock::new(),
        });

        let mut g = StateGraph::<AgentState>::new();
        let hook_nodes = |g: &mut StateGraph<AgentState>,
                          hook: Hook,
                          order: &[Arc<dyn Middleware>]| {
            order
                .iter()
                .filter(|m| hook.enabled(m.hooks()))
                .map(|m| {
                    let (shared, m2) = (shared.clone(), m.clone());
                    let position = middleware
                        .iter()
                        .position(|x| Arc::ptr_eq(x, m))
                        .unwrap_or(0);
                    let handle = g.add_node(
                        &format!("{}.{}", m.name(), hook.name()),
                        move |state, cx| {
                            let (shared, m) = (shared.clone(), m2.clone());
                            async move { run_hook(&shared, &*m, hook, position, state, cx).await }
                        },
                    );
                    (position, handle)
                })
                .collect::<Vec<_>>()
        };
        let reversed: Vec<Arc<dyn Middleware>> = middleware.iter().rev().cloned().collect();
        let before_agent = hook_nodes(&mut g, Hook::BeforeAgent, &middleware);
        let before_model = hook_nodes(&mut g, Hook::BeforeModel, &middleware);
        let s = shared.clone();
        let model = g.add_node("model", move |state, cx| {
            let s = s.clone();
            async move { run_model(&s, state, cx).await }
        });
        let after_model = hook_nodes(&mut g, Hook::AfterModel, &reversed);
        let s = shared.clone();
        let tools = g.add_node("tools", move |state, cx| {
            let s = s.clone();
            async move { run_tools(&s, state, cx).await }
        });
        let after_agent = hook_nodes(&mut g, Hook::AfterAgent, &reversed);

        let handles =
            |v: &[(usize, NodeHandle<AgentState>)]| v.iter().map(|(_, h)| *h).collect::<Vec<_>>();
        let wiring = Wiring {
            before_agent: handles(&before_agent),
            before_model: handles(&before_model),
            model,
            after_model: handles(&after_model),
            tools,
            after_agent: handles(&after_agent),
        };
        let every: Vec<NodeHandle<AgentState>> = wiring.all().collect();
        g.add_edge(START, wiring.entry());
        for node in &every {
            g.add_goto_targets(*node, every.iter().copied());
            g.add_goto_targets(*node, [END]);
        }
        let _ = shared.wiring.set(wiring);

        let mut compile = g
            .compile()
            .name(self.name)
            .recursion_limit(self.recursion_limit)
            .state_cache(self.state_cache);
        if let Some(ttl) = self.run_lease {
            compile = compile.run_lease(ttl);
        }
        for m in &middleware {
            for (kind, validator) in m.resume_validators() {
                compile = compile.resume_validator_arc(kind, validator);
            }
        }
        if let Some(saver) = self.checkpointer {
            compile = compile.checkpointer_arc(saver);
        }
        let lookup = |names: &[String]| -> Result<Vec<NodeHandle<AgentState>>, GraphError> {
            names
                .iter()
                .map(|n| node_by_name(&every, &shared, n))
                .collect()
        };
        compile = compile
            .interrupt_before(lookup(&self.interrupt_before)?)
            .interrupt_after(lookup(&self.interrupt_after)?);
        compile.build()
    }
}

fn node_by_name(
    every: &[NodeHandle<AgentState>],
    shared: &Shared,
    name: &str,
) -> Result<NodeHandle<AgentState>, GraphError> {
    let wiring = shared.wiring.get().expect("wired before lookup");
    let names = wiring.names(shared);
    names
        .iter()
        .position(|n| n == name)
        .map(|i| every[i])
        .ok_or_else(|| GraphError::UnknownNode {
            name: name.into(),
            known: names.iter().map(ToString::to_string).collect(),
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    BeforeAgent,
    BeforeModel,
    AfterModel,
    AfterAgent,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::BeforeAgent => "before_agent",
            Hook::BeforeModel => "before_model",
            Hook::AfterModel => "after_model",
            Hook::AfterAgent => "after_agent",
        }
    }

    fn enabled(self, hooks: Hooks) -> bool {
        match self {
            Hook::BeforeAgent => hooks.before_agent,
            Hook::BeforeModel => hooks.before_model,
            Hook::AfterModel => hooks.after_model,
            Hook::AfterAgent => hooks.after_agent,
        }
    }
}

/// The agent's nodes, in execution order.
struct Wiring {
    before_agent: Vec<NodeHandle<AgentState>>,
    before_model: Vec<NodeHandle<AgentState>>,
    model: NodeHandle<AgentState>,
    after_model: Vec<NodeHandle<AgentState>>,
    tools: NodeHandle<AgentState>,
    after_agent: Vec<NodeHandle<AgentState>>,
}

impl Wiring {
    fn all(&self) -> impl Iterator<Item = NodeHandle<AgentState>> + '_ {
        self.before_agent
            .iter()
            .chain(&self.before_model)
            .copied()
            .chain([self.model])
            .chain(self.after_model.iter().copied())
            .chain([self.tools])
            .chain(self.after_agent.iter().copied())
    }

    fn names(&self, shared: &Shared) -> Vec<String> {
        let hook_names = |hook: Hook, order: &mut dyn Iterator<Item = &Arc<dyn Middleware>>| {
            order
                .filter(|m| hook.enabled(m.hooks()))
                .map(|m| format!("{}.{}", m.name(), hook.name()))
                .collect::<Vec<_>>()
        };
        let mws = &shared.middleware;
        let mut names = hook_names(Hook::BeforeAgent, &mut mws.iter());
        names.extend(hook_names(Hook::BeforeModel, &mut mws.iter()));
        names.push("model".into());
        names.extend(hook_names(Hook::AfterModel, &mut mws.iter().rev()));
        names.push("tools".into());
        names.extend(hook_names(Hook::AfterAgent, &mut mws.iter().rev()));
        names
    }

    fn entry(&self) -> NodeHandle<AgentState> {
        self.before_agent
            .first()
            .copied()
            .unwrap_or_else(|| self.loop_entry())
    }

    fn loop_entry(&self) -> NodeHandle<AgentState> {
        self.before_model.first().copied().unwrap_or(self.model)
    }

    fn exit(&self) -> Goto<AgentState> {
        self.after_agent
            .first()
            .map_or(Goto::End, |h| Goto::Node(*h))
    }
}

struct Shared {
    model: Arc<dyn ChatModel>,
    tools: ToolSet,
    tool_timeout: Option<Duration>,
    tool_timeouts: HashMap<String, Duration>,
    specs: Arc<[ToolSpec]>,
    middleware: Vec<Arc<dyn Middleware>>,
    system_prompt: Option<String>,
    wiring: OnceLock<Wiring>,
}

impl Shared {
    fn wiring(&self) -> &Wiring {
        self.wiring
            .get()
            .expect("the agent graph is wired before it runs")
    }
}
