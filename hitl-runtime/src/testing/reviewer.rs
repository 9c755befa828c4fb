//! The scripted reviewer: answers reviews and typed interrupts like a human would.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::record::{Log, RecordedAnswer};
use super::transcript::FlowError;
use crate::agent::{HitlRequest, ToolApprovalRequest};
use crate::interrupt::{Interrupt, PendingInterrupt};
use crate::policy::{AllowsApprove, AllowsEdit, AllowsReject, AllowsRespond, Decision};
use crate::tool::{Tool, ToolArgs};

type AnswerFn = Arc<dyn Fn(&PendingInterrupt) -> Result<Value, String> + Send + Sync>;

/// Where the reviewer is in its ordered answers.
#[derive(Debug, Default)]
struct Cursor {
    decisions: usize,
    replayed: usize,
}

/// Answers interrupts like a human would: tool reviews by tool type (or in order),
/// typed custom interrupts with a function of their payload, or the answers of a
/// recorded run ([`Fixture::reviewer`](super::Fixture::reviewer)).
///
/// Reviews are addressed by the tool's type, so a misspelled tool, a decision its
/// policy does not allow, or another tool's arguments do not compile:
///
/// ```
/// # use hitl_runtime::{tool, ToolError};
/// # use hitl_runtime::testing::ScriptedReviewer;
/// /// Delete a file.
/// #[tool(interrupt(allowed = [approve, reject]))]
/// async fn delete_file(path: String) -> Result<String, ToolError> { Ok(path) }
/// /// Send an email.
/// #[tool(interrupt(allowed = [approve, edit, reject]))]
/// async fn send_email(to: String) -> Result<String, ToolError> { Ok(to) }
///
/// let reviewer = ScriptedReviewer::new()
///     .reject::<delete_file>("keep it")
///     .edit(SendEmailArgs { to: "carol".into() });
/// ```
#[derive(Clone, Default)]
pub struct ScriptedReviewer {
    by_tool: HashMap<String, Decision>,
    in_order: Vec<Decision>,
    custom: HashMap<&'static str, AnswerFn>,
    replay: Vec<RecordedAnswer>,
    cursor: Arc<Mutex<Cursor>>,
    log: Option<Log>,
}

impl fmt::Debug for ScriptedReviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedReviewer")
            .field("by_tool", &self.by_tool)
            .field("in_order", &self.in_order)
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .field("replay", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl ScriptedReviewer {
    /// A reviewer with no answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `decision` for every call of the tool named `tool`: the untyped form, for
    /// tools known only at run time.
    pub fn decide(mut self, tool: impl Into<String>, decision: Decision) -> Self {
        self.by_tool.insert(tool.into(), decision);
        self
    }

    /// Approves every call of `T`. Compiles only if `T` allows `approve`.
    pub fn approve<T: AllowsApprove>(self) -> Self {
        self.decide(T::NAME, Decision::approve::<T>())
    }

    /// Runs every call of the tool these are the arguments of with these arguments
    /// instead. Compiles only if that tool allows `edit`.
    pub fn edit<A>(self, args: A) -> Self
    where
        A: ToolArgs,
        A::Tool: AllowsEdit,
    {
        self.decide(<A::Tool as Tool>::NAME, Decision::edit::<A::Tool>(args))
    }

    /// Rejects every call of `T`, telling the model why. Compiles only if `T` allows
    /// `reject`.
    pub fn reject<T: AllowsReject>(self, message: impl Into<String>) -> Self {
        self.decide(T::NAME, Decision::reject::<T>(message))
    }

    /// Answers in place of every call of `T`. Compiles only if `T` allows `respond`.
    pub fn respond<T: AllowsRespond>(self, message: impl Into<String>) -> Self {
        self.decide(T::NAME, Decision::respond::<T>(message))
    }

    /// Takes these decisions, one per reviewed call, in the order calls are reviewed
    /// (before any rule by tool).
    pub fn in_order(mut self, decisions: impl IntoIterator<Item = Decision>) -> Self {
        self.in_order.extend(decisions);
        self
    }

    /// Answers every interrupt of the typed payload `I` (a `#[derive(Interrupt)]`
    /// type) with `answer(payload)`; the answer's type is the one `I` declares.
    ///
    /// ```
    /// # use hitl_runtime::Interrupt;
    /// # use hitl_runtime::testing::ScriptedReviewer;
    /// # use serde::{Deserialize, Serialize};
    /// # use schemars::JsonSchema;
    /// #[derive(Serialize, Deserialize, Interrupt)]
    /// #[interrupt(resume = Verdict)]
    /// struct LargeTransfer { amount: u64 }
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// enum Verdict { Allow, Deny }
    ///
    /// let reviewer = ScriptedReviewer::new()
    ///     .answer_with(|t: LargeTransfer| if t.amount > 10_000 { Verdict::Deny } else { Verdict::Allow });
    /// ```
    pub fn answer_with<I, F>(mut self, answer: F) -> Self
    where
        I: Interrupt + DeserializeOwned,
        I::Resume: Serialize,
        F: Fn(I) -> I::Resume + Send + Sync + 'static,
    {
        const {
            assert!(
                I::NAME.is_some(),
                "`answer_with` needs a typed interrupt (`#[derive(Interrupt)]`): an untyped payload has no name to match"
            );
        };
        let name = I::NAME.unwrap_or_default();
        let f: AnswerFn = Arc::new(move |interrupt| {
            let payload: I = serde_json::from_value(interrupt.value.clone())
                .map_err(|e| format!("its payload does not decode as `{name}`: {e}"))?;
            serde_json::to_value(answer(payload))
                .map_err(|e| format!("the answer does not serialize to JSON: {e}"))
        });
        self.custom.insert(name, f);
        self
    }

    /// Replays recorded answers, in order, before any other rule.
    pub(crate) fn replaying(mut self, answers: Vec<RecordedAnswer>) -> Self {
        self.replay = answers;
        self
    }

    /// Records every answer it gives into `log`.
    pub(crate) fn logging(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }

    fn cursor(&self) -> std::sync::MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide_for(&self, tool: &str) -> Option<Decision> {
        let mut cursor = self.cursor();
        if let Some(d) = self.in_order.get(cursor.decisions) {
            cursor.decisions += 1;
            return Some(d.clone());
        }
        self.by_tool.get(tool).cloned()
    }

    /// The answer to one interrupt, as JSON.
    ///
    /// # Errors
    /// [`FlowError::NoDecision`] naming the tool and call (or the interrupt type) when
    /// the script has no answer for it.
    pub fn answer(&self, interrupt: &PendingInterrupt) -> Result<Value, FlowError> {
        self.answer_lines(interrupt).map(|(value, _)| value)
    }

    /// The answer to one interrupt and how the transcript shows it.
    pub(crate) fn answer_lines(
        &self,
        interrupt: &PendingInterrupt,
    ) -> Result<(Value, Vec<String>), FlowError> {
        let answered = self.answer_unlogged(interrupt)?;
        if let Some(log) = &self.log {
            log.push(RecordedAnswer {
                interrupt: interrupt.type_name().map(str::to_owned),
                answer: answered.0.clone(),
            });
        }
        Ok(answered)
    }

    fn answer_unlogged(
        &self,
        interrupt: &PendingInterrupt,
    ) -> Result<(Value, Vec<String>), FlowError> {
        if let Some(recorded) = self.next_replayed() {
            if recorded.interrupt.as_deref() != interrupt.type_name() {
                return Err(FlowError::Diverged {
                    interrupt: interrupt.id,
                    message: format!(
                        "the recorded answer was given to {}, this run paused at {}",
                        describe_type(recorded.interrupt.as_deref()),
                        describe_type(interrupt.type_name())
                    ),
                });
            }
            let lines = answer_text(interrupt, &recorded.answer);
            return Ok((recorded.answer, lines));
        }
        let no_decision = |what: String| FlowError::NoDecision {
            interrupt: interrupt.id,
            what,
        };
        if interrupt.is::<HitlRequest>() {
            let request: HitlRequest = serde_json::from_value(interrupt.value.clone())
                .map_err(|e| no_decision(format!("a review that does not decode ({e})")))?;
            let mut decisions = Vec::new();
            for (k, r) in request.action_requests.iter().enumerate() {
                let d = self.decide_for(&r.name).ok_or_else(|| {
                    no_decision(format!("`{}` (call {} of the review)", r.name, k + 1))
                })?;
                decisions.push(d);
            }
            let lines = decisions
                .iter()
                .zip(&request.action_requests)
                .map(|(d, r)| decision_text(&r.name, d))
                .collect();
            return Ok((json!({ "decisions": decisions }), lines));
        }
        if interrupt.is::<ToolApprovalRequest>() {
            let request: ToolApprovalRequest = serde_json::from_value(interrupt.value.clone())
                .map_err(|e| no_decision(format!("a review that does not decode ({e})")))?;
            let d = self.decide_for(&request.name).ok_or_else(|| {
                no_decision(format!(
                    "`{}` (call `{}`)",
                    request.name, request.tool_call_id
                ))
            })?;
            let line = decision_text(&request.name, &d);
            let value = serde_json::to_value(d).expect("decisions serialize to JSON");
            return Ok((value, vec![line]));
        }
        let Some(name) = interrupt.type_name() else {
            return Err(no_decision(format!(
                "an untyped interrupt of node `{}`",
                interrupt.node
            )));
        };
        let f = self.custom.get(name).ok_or_else(|| {
            no_decision(format!(
                "interrupt `{name}` of node `{}`; add `.answer_with(|payload: {name}| ..)`",
                interrupt.node
            ))
        })?;
        let value = f(interrupt).map_err(|message| FlowError::Diverged {
            interrupt: interrupt.id,
            message,
        })?;
        let lines = vec![format!("answer {name}: {value}")];
        Ok((value, lines))
    }

    fn next_replayed(&self) -> Option<RecordedAnswer> {
        let mut cursor = self.cursor();
        let recorded = self.replay.get(cursor.replayed)?.clone();
        cursor.replayed += 1;
        Some(recorded)
    }
}

fn describe_type(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("a `{name}` interrupt"),
        None => "an untyped interrupt".to_owned(),
    }
}

/// How the transcript shows a decision.
pub(crate) fn decision_text(name: &str, d: &Decision) -> String {
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

/// How the transcript shows an answer given as JSON (a recorded one).
fn answer_text(interrupt: &PendingInterrupt, answer: &Value) -> Vec<String> {
    if let Some(Ok(review)) = interrupt.downcast::<HitlRequest>()
        && let Ok(response) = serde_json::from_value::<crate::policy::HitlResponse>(answer.clone())
    {
        return review
            .payload
            .action_requests
            .iter()
            .zip(&response.decisions)
            .map(|(r, d)| decision_text(&r.name, d))
            .collect();
    }
    if let Some(Ok(review)) = interrupt.downcast::<ToolApprovalRequest>()
        && let Ok(d) = serde_json::from_value::<Decision>(answer.clone())
    {
        return vec![decision_text(&review.payload.name, &d)];
    }
    match interrupt.type_name() {
        Some(name) => vec![format!("answer {name}: {answer}")],
        None => vec![format!("answer: {answer}")],
    }
}
