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
//! let reviewer = ScriptedReviewer::new().approve("delete_file");
//! let transcript = run_with_reviewer(&agent, "clean up", &RunConfig::thread("t"), &reviewer).await.unwrap();
//! assert!(transcript.to_string().contains("tool delete_file: deleted a.txt"));
//! # });
//! # }
//! ```

pub mod conformance;

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::agent::{Agent, AgentState, ChatModel, ModelError, ModelRequest};
use crate::context::RunConfig;
use crate::error::RunError;
use crate::graph::Command;
use crate::interrupt::PendingInterrupt;
use crate::message::{AssistantMessage, Message, MessageChunk, ToolCallChunk, ToolStatus};
use crate::policy::{Action, Decision};
use crate::run::Input;

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

/// Answers review interrupts like a human would: by tool name, or in order.
#[derive(Debug, Clone, Default)]
pub struct ScriptedReviewer {
    by_tool: HashMap<String, Decision>,
    in_order: Vec<Decision>,
    next: Arc<Mutex<usize>>,
}

impl ScriptedReviewer {
    /// A reviewer with no answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `decision` for every call of `tool`.
    pub fn decide(mut self, tool: impl Into<String>, decision: Decision) -> Self {
        self.by_tool.insert(tool.into(), decision);
        self
    }

    /// Approves every call of `tool`.
    pub fn approve(self, tool: impl Into<String>) -> Self {
        self.decide(tool, Decision::Approve)
    }

    /// Runs every call of `tool` with `args` instead.
    pub fn edit(self, tool: impl Into<String>, args: Value) -> Self {
        let tool = tool.into();
        let decision = Decision::Edit {
            edited_action: Action {
                name: tool.clone(),
                args,
            },
        };
        self.decide(tool, decision)
    }

    /// Rejects every call of `tool`, telling the model why.
    pub fn reject(self, tool: impl Into<String>, message: impl Into<String>) -> Self {
        let message: String = message.into();
        self.decide(
            tool,
            Decision::Reject {
                message: (!message.is_empty()).then_some(message),
            },
        )
    }

    /// Answers in place of every call of `tool`.
    pub fn respond(self, tool: impl Into<String>, message: impl Into<String>) -> Self {
        self.decide(
            tool,
            Decision::Respond {
                message: message.into(),
            },
        )
    }

    /// Takes these decisions, one per reviewed call, in the order calls are reviewed
    /// (before any rule by tool name).
    pub fn in_order(mut self, decisions: impl IntoIterator<Item = Decision>) -> Self {
        self.in_order.extend(decisions);
        self
    }

    fn decide_for(&self, tool: &str) -> Option<Decision> {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = self.in_order.get(*next) {
            *next += 1;
            return Some(d.clone());
        }
        self.by_tool.get(tool).cloned()
    }

    /// The decisions for one interrupt (batched or per call), or `None` if it is not a
    /// review request or a call has no scripted decision.
    pub fn decisions(&self, interrupt: &PendingInterrupt) -> Option<Vec<(String, Decision)>> {
        let value = &interrupt.value;
        if let Some(requests) = value.get("action_requests").and_then(Value::as_array) {
            return requests
                .iter()
                .map(|r| {
                    let name = r.get("name")?.as_str()?.to_owned();
                    let d = self.decide_for(&name)?;
                    Some((name, d))
                })
                .collect();
        }
        if value.get("type").and_then(Value::as_str) == Some("tool_approval") {
            let name = value.get("name")?.as_str()?.to_owned();
            let d = self.decide_for(&name)?;
            return Some(vec![(name, d)]);
        }
        None
    }

    /// The resume value for one interrupt.
    pub fn answer(&self, interrupt: &PendingInterrupt) -> Option<Value> {
        let decisions = self.decisions(interrupt)?;
        if interrupt.value.get("action_requests").is_some() {
            let list: Vec<Decision> = decisions.into_iter().map(|(_, d)| d).collect();
            Some(json!({ "decisions": list }))
        } else {
            decisions
                .into_iter()
                .next()
                .map(|(_, d)| serde_json::to_value(d).expect("decisions serialize"))
        }
    }
}

/// One pause of a run: what was asked and what was answered.
#[derive(Debug, Clone)]
struct Review {
    /// How many messages the conversation had when it paused.
    at: usize,
    interrupts: Vec<PendingInterrupt>,
    answers: Vec<(String, Decision)>,
}

/// A run of an agent, rendered for humans and snapshot tests: messages, review
/// requests, decisions and tool results, without ids.
#[derive(Debug, Clone)]
pub struct Transcript {
    messages: Vec<Message>,
    reviews: Vec<Review>,
}

impl Transcript {
    /// The final conversation.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// How many times the run paused for review.
    pub fn reviews(&self) -> usize {
        self.reviews.len()
    }
}

fn decision_text(name: &str, d: &Decision) -> String {
    match d {
        Decision::Approve => format!("approve {name}"),
        Decision::Edit { edited_action } => format!("edit {name} -> {}", edited_action.args),
        Decision::Reject { message } => match message {
            Some(m) => format!("reject {name}: {m}"),
            None => format!("reject {name}"),
        },
        Decision::Respond { message } => format!("respond {name}: {message}"),
    }
}

fn render_review(out: &mut String, review: &Review) -> fmt::Result {
    for interrupt in &review.interrupts {
        let v = &interrupt.value;
        if let (Some(requests), Some(configs)) = (
            v.get("action_requests").and_then(Value::as_array),
            v.get("review_configs").and_then(Value::as_array),
        ) {
            writeln!(
                out,
                "review ({} call{}):",
                requests.len(),
                if requests.len() == 1 { "" } else { "s" }
            )?;
            for (r, c) in requests.iter().zip(configs) {
                writeln!(
                    out,
                    "  {} {} {}\n    {}",
                    r["name"].as_str().unwrap_or("?"),
                    r["args"],
                    c["allowed_decisions"],
                    r["description"]
                        .as_str()
                        .unwrap_or("")
                        .replace('\n', "\n    ")
                )?;
            }
        } else if v.get("type").and_then(Value::as_str) == Some("tool_approval") {
            writeln!(
                out,
                "review call: {} {} {}\n    {}",
                v["name"].as_str().unwrap_or("?"),
                v["args"],
                v["allowed_decisions"],
                v["description"]
                    .as_str()
                    .unwrap_or("")
                    .replace('\n', "\n    ")
            )?;
        } else {
            writeln!(out, "interrupt at {}: {v}", interrupt.node)?;
        }
    }
    let decided: Vec<String> = review
        .answers
        .iter()
        .map(|(n, d)| decision_text(n, d))
        .collect();
    writeln!(out, "decisions: {}", decided.join("; "))
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (i, m) in self.messages.iter().enumerate() {
            for review in self.reviews.iter().filter(|r| r.at == i) {
                render_review(&mut out, review)?;
            }
            match m {
                Message::System(s) => writeln!(out, "system: {}", s.content)?,
                Message::User(u) => writeln!(out, "user: {}", u.content)?,
                Message::Assistant(a) => {
                    let text = a.content.text();
                    if a.tool_calls.is_empty() {
                        writeln!(out, "ai: {text}")?;
                    } else {
                        writeln!(out, "ai: {text}")?;
                        for c in &a.tool_calls {
                            writeln!(out, "  call {} {}", c.name, c.args)?;
                        }
                    }
                }
                Message::Tool(t) => {
                    let status = match t.status {
                        ToolStatus::Success => "",
                        ToolStatus::Error => " (error)",
                    };
                    writeln!(
                        out,
                        "tool {}{status}: {}",
                        t.name.as_deref().unwrap_or("?"),
                        t.content.text().replace('\n', "\n  ")
                    )?;
                }
            }
        }
        for review in self.reviews.iter().filter(|r| r.at >= self.messages.len()) {
            render_review(&mut out, review)?;
        }
        f.write_str(out.trim_end())
    }
}

/// Why a scripted flow ([`run_with_reviewer`]) stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A review the scripted reviewer has no decision for.
    #[error(
        "the scripted reviewer has no decision for {what} (interrupt {interrupt}); add one with `ScriptedReviewer::on(..)` or `then(..)`"
    )]
    NoDecision {
        /// The interrupt.
        interrupt: crate::InterruptId,
        /// What it asks about: the tools and call ids under review.
        what: String,
    },
    /// More reviews than any sensible flow needs.
    #[error("more than {limit} reviews in one flow; is the model looping?")]
    TooManyReviews {
        /// The limit.
        limit: usize,
    },
}

/// What an interrupt asks about, for error messages: the tools under review.
fn describe_review(interrupt: &PendingInterrupt) -> String {
    let value = &interrupt.value;
    let names: Vec<String> = match value.get("action_requests").and_then(Value::as_array) {
        Some(requests) => requests
            .iter()
            .map(|r| {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("?");
                format!("`{name}`")
            })
            .collect(),
        None => match value.get("name").and_then(Value::as_str) {
            Some(name) => vec![format!("`{name}`")],
            None => Vec::new(),
        },
    };
    if names.is_empty() {
        format!("an interrupt of node `{}`", interrupt.node)
    } else {
        format!("the review of {}", names.join(", "))
    }
}

/// Runs an agent to the end, answering every review with `reviewer`.
///
/// Fails if the run fails, if a review has no scripted answer, or after 50 reviews.
pub async fn run_with_reviewer(
    agent: &Agent,
    input: impl Into<Input<AgentState>>,
    cfg: &RunConfig,
    reviewer: &ScriptedReviewer,
) -> Result<Transcript, FlowError> {
    let mut out = agent.invoke(input, cfg).await?;
    let mut reviews = Vec::new();
    while out.is_interrupted() {
        if reviews.len() >= 50 {
            return Err(FlowError::TooManyReviews { limit: 50 });
        }
        let mut answers = Vec::new();
        let mut by_id = Vec::new();
        for interrupt in &out.interrupts {
            let decided = reviewer
                .decisions(interrupt)
                .ok_or_else(|| FlowError::NoDecision {
                    interrupt: interrupt.id,
                    what: describe_review(interrupt),
                })?;
            let value = if interrupt.value.get("action_requests").is_some() {
                json!({"decisions": decided.iter().map(|(_, d)| d).collect::<Vec<_>>()})
            } else {
                serde_json::to_value(&decided[0].1).expect("decisions serialize")
            };
            answers.extend(decided);
            by_id.push((interrupt.id, value));
        }
        reviews.push(Review {
            at: out.values.messages.len(),
            interrupts: out.interrupts.clone(),
            answers,
        });
        out = agent.invoke(Command::resume_by_id(by_id), cfg).await?;
    }
    Ok(Transcript {
        messages: out.values.messages.clone(),
        reviews,
    })
}
