//! Tools: functions the model can call, with a JSON schema and a review policy.
//!
//! Write them with `#[tool]` on an `async fn` (or `fn`); see [`macro@crate::tool`] for the
//! attribute. The generated type implements [`Tool`]; [`ToolSet`] (`tools![..]`)
//! collects tools for an agent.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::AgentState;
use crate::context::NodeContext;
use crate::error::Interrupted;
use crate::interrupt::Interrupt;
use crate::policy::InterruptPolicy;
use crate::schema::schema_of;

/// Why a tool call failed. The agent turns it into a tool message with status
/// `error`, so the model can read it and adjust.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The model's arguments do not decode as the tool's arguments.
    #[error("invalid arguments for `{tool}`: {message}")]
    InvalidArgs {
        /// The tool.
        tool: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// A reviewer rejected the call; the message is what the model is told.
    #[error("{0}")]
    Rejected(String),
    /// The call paused at an interrupt (propagate it with `?`).
    #[error("interrupted: waiting for a resume value")]
    Interrupted,
    /// The call ran longer than the agent's tool timeout and was stopped.
    #[error("`{tool}` did not finish within {after:?} and was stopped")]
    Timeout {
        /// The tool.
        tool: String,
        /// The timeout.
        after: std::time::Duration,
    },
    /// An answer given to a detached context ([`ToolContext::detached`]) does not
    /// decode as the interrupt's answer type. (In a run, answers are checked against
    /// their schema before they are stored.)
    #[error("the answer to `{tool}`'s interrupt does not decode as `{expected}`: {message}")]
    InvalidAnswer {
        /// The tool.
        tool: String,
        /// The answer type.
        expected: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The model called a tool the agent does not have.
    #[error("`{name}` is not a tool of this agent; available tools: {available}")]
    UnknownTool {
        /// The name called.
        name: String,
        /// The tools the agent has, comma separated.
        available: String,
    },
}

impl ToolError {
    /// A failure with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        ToolError::Failed(message.to_string())
    }
}

impl From<Interrupted> for ToolError {
    fn from(_: Interrupted) -> Self {
        ToolError::Interrupted
    }
}

/// What a model sees of a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON schema of its arguments.
    pub parameters: Value,
}

/// A tool the model can call. Implemented by `#[tool]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tool",
    note = "add `#[tool]` to the function `{Self}`, or implement `hitl_runtime::Tool` for it"
)]
pub trait Tool: Send + Sync + 'static {
    /// The name the model calls it by.
    const NAME: &'static str;
    /// Its arguments (unknown fields are rejected).
    type Args: DeserializeOwned + Serialize + JsonSchema + Send + 'static;

    /// What it does, for the model.
    fn description() -> &'static str;

    /// Its review policy, if its calls are reviewed.
    fn policy() -> Option<InterruptPolicy>;

    /// Runs it.
    fn call(args: Self::Args, cx: ToolContext) -> BoxFuture<'static, Result<Value, ToolError>>;

    /// The JSON schema of its arguments.
    fn args_schema() -> Arc<Value> {
        schema_of::<Self::Args>()
    }

    /// What the model sees of it.
    fn spec() -> ToolSpec {
        ToolSpec {
            name: Self::NAME.to_owned(),
            description: Self::description().to_owned(),
            parameters: (*Self::args_schema()).clone(),
        }
    }
}

/// Implemented for every type a `#[tool]` parameter may have:
/// `Deserialize + Serialize + JsonSchema + Debug + Clone + Send + 'static` (what the
/// generated arguments struct derives, and what the boxed call future needs).
/// `#[tool]` checks each parameter against it, so a bad parameter type is reported
/// first by one error naming every requirement.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a tool parameter",
    label = "a tool parameter must be `Deserialize + Serialize + JsonSchema + Debug + Clone + Send + 'static`",
    note = "the model's JSON is decoded into the parameter, its JSON schema is shown to the model, and the tool's arguments struct derives `Debug, Clone, Serialize, Deserialize, JsonSchema`",
    note = "add `#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]` to `{Self}` (schemars is re-exported as `hitl_runtime::schemars`)"
)]
pub trait ToolParam {}

#[diagnostic::do_not_recommend]
impl<T> ToolParam for T where
    T: DeserializeOwned + Serialize + JsonSchema + fmt::Debug + Clone + Send + 'static
{
}

/// The arguments struct of a tool, naming the tool: `#[tool]` implements it for the
/// arguments struct it generates (`SendEmailArgs` for `send_email`), so typed helpers
/// infer the tool from its arguments
/// ([`ScriptedReviewer::edit`](crate::testing::ScriptedReviewer::edit),
/// [`ToolCall::of`](crate::ToolCall::of)).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the arguments struct of a tool",
    note = "pass the arguments struct `#[tool]` generated for the tool, e.g. `SendEmailArgs {{ .. }}` for `fn send_email`"
)]
pub trait ToolArgs: Serialize + Sized {
    /// The tool these are the arguments of.
    type Tool: Tool<Args = Self>;
}

impl crate::message::ToolCall {
    /// A call of the tool whose arguments these are: the name comes from the type, so a
    /// misspelled tool or a wrong arguments type does not compile. For scripted model
    /// turns: `ToolCall::of(SendEmailArgs { to: "bob".into() }, "call-1")`.
    ///
    /// # Panics
    /// If the arguments do not serialize to JSON (a `#[tool]` arguments struct does).
    pub fn of<A: ToolArgs>(args: A, id: impl Into<String>) -> Self {
        let args = serde_json::to_value(args).expect("tool arguments serialize to JSON");
        crate::message::ToolCall::new(<A::Tool as Tool>::NAME, args, id)
    }
}

/// A tool known at run time: what agents hold.
pub trait DynTool: Send + Sync + 'static {
    /// Its name.
    fn name(&self) -> &str;
    /// What the model sees of it.
    fn spec(&self) -> ToolSpec;
    /// The JSON schema of its arguments.
    fn args_schema(&self) -> Arc<Value>;
    /// Its review policy.
    fn policy(&self) -> Option<InterruptPolicy>;
    /// Decodes the arguments and runs it.
    fn call(&self, args: Value, cx: ToolContext) -> BoxFuture<'static, Result<Value, ToolError>>;

    /// Checks that `args` decode as this tool's arguments, without running it. The
    /// agent checks every call the model makes and every edit a reviewer writes with
    /// it before anything is stored, so a call that is reviewed or run can decode.
    ///
    /// The default checks `args` against [`args_schema`](Self::args_schema); typed
    /// tools decode them with their own decoder, which is stricter (integer ranges,
    /// formats the schema does not express).
    fn check_args(&self, args: &Value) -> Result<(), ToolError> {
        plumbing::check_depth(self.name(), args)?;
        crate::schema::validate(&self.args_schema(), args).map_err(|problems| {
            ToolError::InvalidArgs {
                tool: self.name().to_owned(),
                message: problems.join("; "),
            }
        })
    }
}

struct Typed<T>(PhantomData<fn() -> T>);

impl<T: Tool> DynTool for Typed<T> {
    fn name(&self) -> &str {
        T::NAME
    }

    fn spec(&self) -> ToolSpec {
        T::spec()
    }

    fn args_schema(&self) -> Arc<Value> {
        T::args_schema()
    }

    fn policy(&self) -> Option<InterruptPolicy> {
        T::policy()
    }

    fn call(&self, args: Value, cx: ToolContext) -> BoxFuture<'static, Result<Value, ToolError>> {
        match plumbing::decode_args::<T::Args>(T::NAME, args) {
            Ok(args) => T::call(args, cx),
            Err(e) => async move { Err(e) }.boxed(),
        }
    }

    fn check_args(&self, args: &Value) -> Result<(), ToolError> {
        plumbing::check_depth(T::NAME, args)?;
        // The plain decoder first (no path tracking); on failure, again for the path.
        if T::Args::deserialize(args).is_ok() {
            return Ok(());
        }
        plumbing::decoded::<T::Args>(T::NAME, serde_path_to_error::deserialize(args)).map(drop)
    }
}

/// The tools of an agent. Build it with `tools![a, b, c]`.
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: Vec<Arc<dyn DynTool>>,
}

impl fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl ToolSet {
    /// No tools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds tool `T`.
    pub fn with<T: Tool>(mut self) -> Self {
        self.tools.push(Arc::new(Typed::<T>(PhantomData)));
        self
    }

    /// Adds a tool known only at run time.
    pub fn with_dyn(mut self, tool: Arc<dyn DynTool>) -> Self {
        self.tools.push(tool);
        self
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynTool>> {
        self.tools.iter().find(|t| t.name() == name)
    }

    /// The tools, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DynTool>> {
        self.tools.iter()
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|t| t.name())
    }

    /// What the model sees of every tool.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    /// The number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// What a running tool can see and do: its call id, a stable idempotency key, the
/// agent's state, the stream writer, and typed interrupts.
#[derive(Clone)]
pub struct ToolContext {
    node: Option<NodeContext>,
    tool: Arc<str>,
    call_id: Arc<str>,
    message_id: Option<Arc<str>>,
    state: Arc<AgentState>,
    answers: Option<Arc<Mutex<VecDeque<Value>>>>,
}

impl fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolContext")
            .field("tool", &self.tool)
            .field("call_id", &self.call_id)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

impl ToolContext {
    pub(crate) fn new(
        node: NodeContext,
        tool: &str,
        call_id: &str,
        message_id: Option<&str>,
        state: Arc<AgentState>,
    ) -> Self {
        ToolContext {
            node: Some(node),
            tool: tool.into(),
            call_id: call_id.into(),
            message_id: message_id.map(Into::into),
            state,
            answers: None,
        }
    }

    /// A context outside any run, to call a tool in a unit test. Its interrupts return
    /// the given answers in order (and pause, `Err(Interrupted)`, once they run out).
    pub fn detached(tool: &str, call_id: &str, answers: impl IntoIterator<Item = Value>) -> Self {
        ToolContext {
            node: None,
            tool: tool.into(),
            call_id: call_id.into(),
            message_id: None,
            state: Arc::new(AgentState::default()),
            answers: Some(Arc::new(Mutex::new(answers.into_iter().collect()))),
        }
    }

    /// The id of the call being run.
    pub fn tool_call_id(&self) -> &str {
        &self.call_id
    }

    /// The tool's name.
    pub fn tool_name(&self) -> &str {
        &self.tool
    }

    /// A key that identifies this call across re-runs, restarts and processes:
    /// `"{thread}/{assistant message id}/{tool call id}"`. Use it to apply side effects
    /// at most once: a call can run again if the process died between its start and
    /// the storing of its result.
    pub fn idempotency_key(&self) -> String {
        let thread = self.node.as_ref().map_or("", |n| n.thread_id());
        format!(
            "{thread}/{}/{}",
            self.message_id.as_deref().unwrap_or(""),
            self.call_id
        )
    }

    /// The agent's state when the tools step started.
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// The node context of the tools task (none in a detached context).
    pub fn node_context(&self) -> Option<&NodeContext> {
        self.node.as_ref()
    }

    /// The run's context data of type `T` (see [`crate::RunConfig::context`]).
    pub fn context<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.node.as_ref()?.context()
    }

    /// Writes a value to the custom stream mode.
    pub fn write(&self, value: impl Serialize) {
        if let Some(node) = &self.node {
            node.writer().write(value);
        }
    }

    /// Pauses the call until a human answers (see [`NodeContext::interrupt`]): the
    /// tool runs again from its start when the thread is resumed, and this returns
    /// the answer.
    ///
    /// The payload is typed ([`Interrupt`]), and so is the answer; a resume that does
    /// not match the answer's JSON schema is refused before anything is stored. Return
    /// the error with `?`: while the call waits it is [`ToolError::Interrupted`], a
    /// pause, not a failure. In a unit test, a [`detached`](Self::detached) context
    /// answers from a list, in order; an answer that does not decode as `I::Resume` is
    /// [`ToolError::InvalidAnswer`]:
    ///
    /// ```
    /// use hitl_runtime::{tool, Interrupt, ToolContext, ToolError};
    /// use hitl_runtime::schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// #[schemars(crate = "hitl_runtime::schemars")]
    /// struct Approval { approved: bool }
    ///
    /// /// What the reviewer is shown; answered with an `Approval`.
    /// #[derive(Serialize, Interrupt)]
    /// #[interrupt(resume = Approval)]
    /// struct LargeTransfer { amount: f64, to: String }
    ///
    /// /// Transfer money; over 1000 a human must approve.
    /// #[tool]
    /// async fn transfer(cx: ToolContext, amount: f64, to: String) -> Result<String, ToolError> {
    ///     if amount > 1000.0 {
    ///         let answer = cx.interrupt(LargeTransfer { amount, to: to.clone() }).await?;
    ///         if !answer.approved {
    ///             return Ok("cancelled by the reviewer".into());
    ///         }
    ///     }
    ///     Ok(format!("sent {amount} to {to}"))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let answers = [serde_json::json!({"approved": false})];
    /// let cx = ToolContext::detached("transfer", "call_1", answers);
    /// assert_eq!(transfer(cx, 5000.0, "bob".into()).await.unwrap(), "cancelled by the reviewer");
    ///
    /// // No answer yet: the call pauses.
    /// let cx = ToolContext::detached("transfer", "call_2", []);
    /// assert!(matches!(transfer(cx, 5000.0, "bob".into()).await, Err(ToolError::Interrupted)));
    ///
    /// // A malformed answer is a decode error, not a pause.
    /// let cx = ToolContext::detached("transfer", "call_3", [serde_json::json!({"approved": "yes"})]);
    /// assert!(matches!(transfer(cx, 5000.0, "bob".into()).await, Err(ToolError::InvalidAnswer { .. })));
    /// # }
    /// ```
    ///
    /// The same tool in an agent, paused and resumed: `examples/transfer_threshold.rs`.
    pub async fn interrupt<I: Interrupt>(&self, value: I) -> Result<I::Resume, ToolError> {
        match &self.node {
            Some(node) => Ok(node.interrupt(value).await?),
            None => {
                let answer = self
                    .answers
                    .as_ref()
                    .and_then(|a| {
                        a.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .pop_front()
                    })
                    .ok_or(ToolError::Interrupted)?;
                serde_json::from_value(answer).map_err(|e| ToolError::InvalidAnswer {
                    tool: self.tool.to_string(),
                    expected: std::any::type_name::<I::Resume>(),
                    message: e.to_string(),
                })
            }
        }
    }
}

/// Plumbing for the code `#[tool]` generates: decoding arguments and converting what a
/// tool function returned. Not part of the public API: no semver guarantees; generated
/// code reaches it through `hitl_runtime::__private`.
#[doc(hidden)]
pub mod plumbing {
    use std::any::Any;
    use std::fmt;

    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::ToolError;

    /// Decodes a tool's arguments, naming the offending field on failure.
    pub fn decode_args<A: DeserializeOwned>(tool: &str, args: Value) -> Result<A, ToolError> {
        check_depth(tool, &args)?;
        decoded(tool, serde_path_to_error::deserialize(args))
    }

    /// Refuses arguments nested deeper than [`crate::MAX_JSON_DEPTH`] (decoding them
    /// could exhaust the stack).
    pub(crate) fn check_depth(tool: &str, args: &Value) -> Result<(), ToolError> {
        crate::schema::check_depth(args).map_err(|message| ToolError::InvalidArgs {
            tool: tool.to_owned(),
            message,
        })
    }

    /// The result of decoding arguments, with an error naming the offending field.
    pub(crate) fn decoded<A>(
        tool: &str,
        result: Result<A, serde_path_to_error::Error<serde_json::Error>>,
    ) -> Result<A, ToolError> {
        result.map_err(|e| {
            let mut segments: Vec<String> = e.path().iter().map(ToString::to_string).collect();
            let inner = e.into_inner().to_string();
            if inner.starts_with("unknown field") {
                // The path ends at the unknown field itself; the message already names it.
                segments.pop();
            }
            let path = segments.join(".");
            ToolError::InvalidArgs {
                tool: tool.to_owned(),
                message: if path.is_empty() {
                    inner
                } else {
                    format!("{path}: {inner}")
                },
            }
        })
    }

    /// Runs a sync `#[tool]` function on tokio's blocking pool, so that it neither
    /// stalls the run's other tasks nor blocks cancellation and timeouts. A panic in it
    /// panics the calling task, as an async tool's would.
    pub async fn blocking<T, F>(f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the blocking pool dropped a tool call: {e}"),
        }
    }

    /// Converts what a `#[tool]` function returned.
    pub fn tool_result<T: Serialize, E: fmt::Display + 'static>(
        result: Result<T, E>,
    ) -> Result<Value, ToolError> {
        match result {
            Ok(value) => tool_value(value),
            Err(e) => {
                let message = e.to_string();
                let boxed: Box<dyn Any> = Box::new(e);
                match boxed.downcast::<ToolError>() {
                    Ok(tool_error) => Err(*tool_error),
                    Err(_) => Err(ToolError::Failed(message)),
                }
            }
        }
    }

    /// Converts what an infallible `#[tool]` function returned.
    pub fn tool_value<T: Serialize>(value: T) -> Result<Value, ToolError> {
        serde_json::to_value(value).map_err(|e| {
            ToolError::Failed(format!("the tool's output does not serialize to JSON: {e}"))
        })
    }
}
