//! Scripted flows and their transcripts.

use std::fmt::{self, Write};

use serde_json::Value;

use super::reviewer::ScriptedReviewer;
use crate::agent::{Agent, AgentState, HitlRequest, ToolApprovalRequest};
use crate::context::RunConfig;
use crate::error::RunError;
use crate::graph::Command;
use crate::ids::InterruptId;
use crate::interrupt::{Answer, PendingInterrupt};
use crate::message::{Message, ToolStatus};
use crate::run::Input;

/// One pause of a run: what was asked and what was answered.
#[derive(Debug, Clone)]
struct Review {
    /// How many messages the conversation had when it paused.
    at: usize,
    interrupts: Vec<PendingInterrupt>,
    /// The answers, as the transcript shows them.
    answers: Vec<String>,
}

/// A run of an agent, rendered for humans and snapshot tests: messages, review
/// requests, decisions and tool results, without ids. Tool results are listed in the
/// order of the calls they answer, and no line ends in whitespace.
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

    /// The order messages are shown in: each run of tool messages sorted by the
    /// position of its call in the assistant message before it.
    fn display_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.messages.len()).collect();
        let mut i = 0;
        while i < self.messages.len() {
            let Some(ai) = self.messages[i].as_assistant() else {
                i += 1;
                continue;
            };
            let start = i + 1;
            let mut end = start;
            while matches!(self.messages.get(end), Some(Message::Tool(_))) {
                end += 1;
            }
            let position = |m: &Message| match m {
                Message::Tool(t) => ai
                    .tool_calls
                    .iter()
                    .position(|c| c.id.as_deref() == Some(t.tool_call_id.as_str()))
                    .unwrap_or(usize::MAX),
                _ => usize::MAX,
            };
            order[start..end].sort_by_key(|&k| position(&self.messages[k]));
            i = end.max(i + 1);
        }
        order
    }
}

fn render_review(out: &mut String, review: &Review) -> fmt::Result {
    for interrupt in &review.interrupts {
        if let Some(Ok(request)) = interrupt.downcast::<HitlRequest>() {
            let requests = &request.payload.action_requests;
            let plural = if requests.len() == 1 { "" } else { "s" };
            writeln!(out, "review ({} call{plural}):", requests.len())?;
            for (r, c) in requests.iter().zip(&request.payload.review_configs) {
                writeln!(
                    out,
                    "  {} {} {}\n    {}",
                    r.name,
                    r.args,
                    allowed(&c.allowed_decisions),
                    r.description.replace('\n', "\n    ")
                )?;
            }
        } else if let Some(Ok(request)) = interrupt.downcast::<ToolApprovalRequest>() {
            let r = &request.payload;
            writeln!(
                out,
                "review call: {} {} {}\n    {}",
                r.name,
                r.args,
                allowed(&r.allowed_decisions),
                r.description.replace('\n', "\n    ")
            )?;
        } else {
            match interrupt.type_name() {
                Some(name) => writeln!(
                    out,
                    "interrupt {name} at {}: {}",
                    interrupt.node, interrupt.value
                )?,
                None => writeln!(out, "interrupt at {}: {}", interrupt.node, interrupt.value)?,
            }
        }
    }
    writeln!(out, "decisions: {}", review.answers.join("; "))
}

fn allowed(decisions: &[crate::policy::DecisionType]) -> String {
    serde_json::to_string(decisions).unwrap_or_default()
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (position, &i) in self.display_order().iter().enumerate() {
            for review in self.reviews.iter().filter(|r| r.at == position) {
                render_review(&mut out, review)?;
            }
            match &self.messages[i] {
                Message::System(s) => writeln!(out, "system: {}", s.content)?,
                Message::User(u) => writeln!(out, "user: {}", u.content)?,
                Message::Assistant(a) => {
                    writeln!(out, "ai: {}", a.content.text())?;
                    for c in &a.tool_calls {
                        writeln!(out, "  call {} {}", c.name, c.args)?;
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
        let mut lines = out.trim_end().lines().map(str::trim_end);
        if let Some(first) = lines.next() {
            f.write_str(first)?;
        }
        for line in lines {
            f.write_char('\n')?;
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// Why a scripted flow ([`run_with_reviewer`]) stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// An interrupt the scripted reviewer has no answer for.
    #[error(
        "the scripted reviewer has no decision for {what} (interrupt {interrupt}); \
         script one with `approve::<Tool>()`, `edit(ToolArgs {{ .. }})`, `reject::<Tool>(..)`, \
         `respond::<Tool>(..)`, `in_order(..)` or `answer_with(..)`"
    )]
    NoDecision {
        /// The interrupt.
        interrupt: InterruptId,
        /// What it asks about: the tool and call under review, or the interrupt type.
        what: String,
    },
    /// A recorded or scripted answer does not fit the run: the run went another way
    /// than the recording, or an answer function failed.
    #[error("the scripted answer to interrupt {interrupt} does not fit: {message}")]
    Diverged {
        /// The interrupt.
        interrupt: InterruptId,
        /// What does not fit.
        message: String,
    },
    /// More reviews than any sensible flow needs.
    #[error("more than {limit} reviews in one flow; is the model looping?")]
    TooManyReviews {
        /// The limit.
        limit: usize,
    },
}

/// Runs an agent to the end, answering every interrupt with `reviewer`.
///
/// Fails if the run fails, if an interrupt has no scripted answer, or after 50 reviews.
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
        let mut lines = Vec::new();
        let mut answers = Vec::new();
        for interrupt in &out.interrupts {
            let (value, shown): (Value, _) = reviewer.answer_lines(interrupt)?;
            lines.extend(shown);
            answers.push(Answer::json(interrupt.id, value));
        }
        reviews.push(Review {
            at: out.values.messages.len(),
            interrupts: out.interrupts.clone(),
            answers: lines,
        });
        out = agent.invoke(Command::answers(answers), cfg).await?;
    }
    Ok(Transcript {
        messages: out.values.messages.clone(),
        reviews,
    })
}
