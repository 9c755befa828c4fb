#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[allow(unused_extern_crates)]
extern crate self as hitl_runtime;

// Layers, each using only the ones above it:
// ids, error → schema, state, message, interrupt, governance → checkpoint → context → graph → run
// → tool, policy → agent → testing.
pub mod agent;
pub mod checkpoint;
mod context;
mod error;
pub mod governance;
mod graph;
mod ids;
mod interrupt;
pub mod message;
pub mod policy;
mod run;
mod schema;
pub mod state;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
pub mod tool;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The [schemars](https://docs.rs/schemars/1) crate, version 1.x, that this crate's
/// JSON schemas come from.
///
/// Tool parameters and interrupt answers implement its `JsonSchema`; deriving it with
/// this re-export saves a direct dependency on a matching version:
///
/// ```
/// use hitl_runtime::schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
/// #[schemars(crate = "hitl_runtime::schemars")] // only without a `schemars` dependency
/// struct Recipient {
///     email: String,
/// }
///
/// let schema = hitl_runtime::schema_of::<Recipient>();
/// assert_eq!(schema["properties"]["email"]["type"], "string");
/// ```
///
/// A minor or patch update of this crate never moves the re-export to another major
/// version of schemars.
pub use schemars;

pub use agent::AgentState;
#[cfg(feature = "postgres")]
pub use checkpoint::PostgresSaver;
#[cfg(feature = "sqlite")]
pub use checkpoint::SqliteSaver;
pub use checkpoint::{Checkpointer, InMemorySaver};
pub use context::{NodeContext, RunConfig, StreamMode, StreamModes, StreamWriter};
pub use error::{
    BoxError, CheckpointError, GraphError, Interrupted, NodeError, ReducerError, ResumeError,
    RunError,
};
pub use governance::{DecidedBy, Governance, GovernanceSpec, Reviewer};
pub use graph::{
    Command, END, EdgeSource, EdgeTarget, EdgeTargets, End, Goto, NodeHandle, NodeOutput, Route,
    START, SendTo, Start, StateGraph,
};
pub use ids::{CheckpointId, InterruptId, ParseIdError, TaskId};
pub use interrupt::{
    Answer, Interrupt, InterruptRequest, PendingInterrupt, PolicyChange, ResumeKind,
    ResumeValidator, TypedInterrupt, Vote,
};
pub use message::{Message, ToolCall};
pub use policy::{
    Action, Decision, DecisionSet, DecisionType, HitlResponse, InterruptPolicy, PolicyMap,
};
pub use run::{
    CompileBuilder, CompiledGraph, DueTimeouts, Expired, Input, RunOutput, RunStatus, RunStream,
    StateSnapshot, StreamEvent, TaskInfo, TaskOutcome,
};
pub use schema::{MAX_JSON_DEPTH, json_depth, schema_of, validate as validate_json};
pub use state::{State, StateUpdate};
pub use tool::{DynTool, Tool, ToolArgs, ToolContext, ToolError, ToolParam, ToolSet, ToolSpec};

/// Derives [`State`]: each field is a channel.
///
/// ```
/// use hitl_runtime::{State, Message};
/// use serde::{Deserialize, Serialize};
///
/// fn add(total: &mut u64, n: u64) {
///     *total += n;
/// }
///
/// #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
/// struct Flow {
///     #[state(reducer = append)]
///     log: Vec<String>,          // writes are appended
///     #[state(reducer = messages)]
///     messages: Vec<Message>,    // appended, or replace the message with the same id
///     #[state(reducer = add)]
///     total: u64,                // folded with `add`
///     step: u32,                 // last value; two writes in one superstep are an error
/// }
///
/// let update = FlowUpdate::default().step(3).log(vec!["a".to_string()]);
/// assert_eq!(update.step, Some(3));
/// ```
///
/// The derive also generates `FlowUpdate` (every field an `Option`, with a builder
/// method per field), `From<FlowUpdate>` for node outputs and run inputs, and the
/// per-channel (de)serialization the checkpointers use. Append and message channels
/// are checkpointed as deltas.
///
/// Generated code names `::hitl_runtime`; reaching the crate under another name (a
/// renamed dependency, a re-export), say so with `#[state(crate = "::my_hitl")]` on the
/// struct. Every macro takes the same key: `#[tool(crate = "..")]`,
/// `#[interrupt(crate = "..")]`, `interrupt_on! { crate = ".."; .. }`,
/// `tools![crate = ".."; ..]`.
#[cfg(feature = "macros")]
pub use hitl_macros::State;

/// Derives [`Interrupt`]: a payload a node can pause on, and the type of its answer.
///
/// ```
/// use hitl_runtime::Interrupt;
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// struct TransferDecision { approved: bool }
///
/// #[derive(Serialize, Interrupt)]
/// #[interrupt(resume = TransferDecision)]
/// struct LargeTransfer { amount: f64, to: String }
/// ```
///
/// Keys: `resume = Type` (required), `name = ".."` (the stored type name),
/// `expires = "30m"` with `on_timeout = fn_name` (a `fn() -> Type` giving the answer
/// applied when it expires; both or neither), `reviewers = ["ops"]` (roles that may
/// answer), `crate = "::path"` (through a re-export). `approvals` is for tool reviews.
///
/// ```
/// # use hitl_runtime::Interrupt;
/// # use serde::{Deserialize, Serialize};
/// # use schemars::JsonSchema;
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// struct Verdict { approved: bool }
///
/// fn deny() -> Verdict { Verdict { approved: false } }
///
/// #[derive(Serialize, Interrupt)]
/// #[interrupt(resume = Verdict, expires = "1d", on_timeout = deny, reviewers = ["ops"])]
/// struct LargeTransfer { amount: f64 }
///
/// let spec = LargeTransfer { amount: 5e4 }.governance();
/// assert_eq!(spec.reviewers, [["ops"]]);
/// ```
#[cfg(feature = "macros")]
pub use hitl_macros::Interrupt;

#[cfg(feature = "macros")]
#[doc = include_str!("docs/tool.md")]
pub use hitl_macros::tool;

/// Review policies by tool, overriding the tools' `#[tool(interrupt(..))]`.
///
/// ```
/// # use hitl_runtime::{tool, interrupt_on, ToolError};
/// /// Delete a file.
/// #[tool(interrupt(allowed = [approve, reject]))]
/// async fn delete_file(path: String) -> Result<String, ToolError> { Ok(path) }
/// /// Send an email.
/// #[tool]
/// async fn send_email(to: String) -> Result<String, ToolError> { Ok(to) }
/// /// Read data.
/// #[tool]
/// async fn read_data() -> Result<String, ToolError> { Ok(String::new()) }
///
/// let policies = interrupt_on! {
///     delete_file: [approve, reject],  // these decisions
///     send_email: true,                // every decision
///     read_data: false,                // never reviewed
/// };
/// assert!(policies.get("read_data").unwrap().is_none());
/// ```
///
/// Each key is a tool in scope (a misspelled name does not compile) and each decision
/// is one of `approve`, `edit`, `reject`, `respond` (anything else does not compile).
/// `tool: interrupt(allowed = [..], expires = "4h", on_timeout = reject(".."),
/// reviewers = [".."], approvals = 2)` sets the governance keys of `#[tool]`, checked
/// the same way.
/// Through a re-export of this crate, start with `crate = "::my_hitl";`.
#[cfg(feature = "macros")]
pub use hitl_macros::interrupt_on;

/// A typed set of tools for an agent: `tools![read_file, delete_file]`.
///
/// Each name must be a `#[tool]` in scope; a missing one does not compile. Through a
/// re-export of this crate: `tools![crate = "::my_hitl"; read_file, delete_file]`.
#[cfg(feature = "macros")]
pub use hitl_macros::tools;

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(all(doctest, feature = "openai", feature = "sqlite", feature = "test-util"))]
pub struct ReadmeDoctests;
