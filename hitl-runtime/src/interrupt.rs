//! Interrupts: pausing a task until a human answers.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::governance::{Governance, GovernanceSpec};
use crate::ids::{InterruptId, TaskId};

/// A value a node can pause on, with the type of the answer it expects.
///
/// Derive it: `#[derive(Serialize, Interrupt)] #[interrupt(resume = TransferDecision)]`.
/// The payload is published with the JSON schema of `Resume`, and a resume value that
/// does not match that schema is rejected before anything is stored.
///
/// `serde_json::Value` implements it with an untyped answer (any JSON).
pub trait Interrupt: Serialize {
    /// The answer's type.
    type Resume: DeserializeOwned + Send + 'static;

    /// The name stored with the pending interrupt, so that readers can tell which type
    /// raised it ([`PendingInterrupt::is`], [`PendingInterrupt::downcast`]). The derive
    /// uses the type's name (`#[interrupt(name = "..")]` overrides it); keep it stable
    /// across deployments, since pending interrupts outlive processes. `None` for
    /// untyped payloads.
    const NAME: Option<&'static str> = None;

    /// The JSON schema answers must match, if any.
    fn resume_schema() -> Option<Arc<Value>>;

    /// Its deadline, timeout answer and the roles that may answer it
    /// (`#[interrupt(expires = "4h", on_timeout = fn_name, reviewers = ["ops"])]`).
    /// None by default.
    fn governance(&self) -> GovernanceSpec {
        GovernanceSpec::default()
    }
}

impl Interrupt for Value {
    type Resume = Value;

    fn resume_schema() -> Option<Arc<Value>> {
        None
    }
}

/// An interrupt as a node raises it with [`crate::NodeContext::interrupt_with`]: the
/// lower-level form of [`crate::NodeContext::interrupt`], for middleware.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptRequest {
    /// The payload shown to the human.
    pub value: Value,
    /// The JSON schema answers must match.
    pub resume_schema: Option<Arc<Value>>,
    /// A name for a validator registered on the graph
    /// ([`crate::CompileBuilder::resume_validator`]) that checks answers beyond the schema.
    pub kind: Option<String>,
    /// The payload's type name ([`Interrupt::NAME`]), stored so that readers can tell
    /// what raised the interrupt.
    pub payload_type: Option<String>,
    /// Its deadline, the roles that may answer it, the approvals it needs.
    pub governance: Option<GovernanceSpec>,
}

impl InterruptRequest {
    /// A request with an untyped answer.
    pub fn new(value: Value) -> Self {
        InterruptRequest {
            value,
            resume_schema: None,
            kind: None,
            payload_type: None,
            governance: None,
        }
    }

    /// Answered under these rules (nothing is stored if the spec declares nothing).
    pub fn governed(mut self, spec: GovernanceSpec) -> Self {
        self.governance = (!spec.is_empty()).then_some(spec);
        self
    }
}

/// An interrupt waiting for (or, in history, given) an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingInterrupt {
    /// Its id: answer it with `Command::resume_by_id([(id, value)])`.
    pub id: InterruptId,
    /// The payload.
    pub value: Value,
    /// The JSON schema the answer must match, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_schema: Option<Arc<Value>>,
    /// The node that raised it.
    pub node: String,
    /// The checkpoint namespace of that node ("" at the root, `"node:task"` in a
    /// subgraph).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ns: String,
    /// The task that raised it.
    pub task_id: TaskId,
    /// The validator name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The payload's type name ([`Interrupt::NAME`]); read it with
    /// [`type_name`](Self::type_name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    /// Its deadline, timeout answer, the roles that may answer it and the approvals it
    /// needs, if it declares any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<Governance>,
    /// The reviewers who approved it so far, when it needs several approvals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
}

impl PendingInterrupt {
    /// Which type raised it: the [`Interrupt::NAME`] of a typed interrupt
    /// (`"LargeTransfer"` for `#[derive(Interrupt)] struct LargeTransfer`),
    /// `"hitl.batched"` for a batched tool review
    /// ([`HitlRequest`](crate::agent::HitlRequest)), `"hitl.tool_approval"` for a
    /// per-call review ([`ToolApprovalRequest`](crate::agent::ToolApprovalRequest));
    /// `None` for an untyped payload.
    pub fn type_name(&self) -> Option<&str> {
        self.payload_type.as_deref().or(match self.kind.as_deref() {
            // Reviews raised before the type name was stored.
            Some(kind @ ("hitl.batched" | "hitl.tool_approval")) => Some(kind),
            _ => None,
        })
    }

    /// Whether a payload of type `I` raised it.
    pub fn is<I: Interrupt>(&self) -> bool {
        I::NAME.is_some() && I::NAME == self.type_name()
    }

    /// The interrupt as the type that raised it, to read its payload and answer it with
    /// `I::Resume`: `None` if another type raised it, an error if the payload does not
    /// decode as `I`.
    ///
    /// ```
    /// # use hitl_runtime::{Command, Interrupt, PendingInterrupt, AgentState};
    /// # use serde::{Deserialize, Serialize};
    /// # use schemars::JsonSchema;
    /// #[derive(Serialize, Deserialize, Interrupt)]
    /// #[interrupt(resume = Verdict)]
    /// struct LargeTransfer { amount: u64 }
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// enum Verdict { Allow, Deny }
    ///
    /// fn answer(pending: &[PendingInterrupt]) -> Command<AgentState> {
    ///     let answers = pending.iter().filter_map(|p| {
    ///         let asked = p.downcast::<LargeTransfer>()?.ok()?;
    ///         let verdict = if asked.payload.amount > 10_000 { Verdict::Deny } else { Verdict::Allow };
    ///         Some(asked.answer(verdict))
    ///     });
    ///     Command::answers(answers)
    /// }
    /// ```
    pub fn downcast<I: Interrupt + DeserializeOwned>(
        &self,
    ) -> Option<Result<TypedInterrupt<I>, serde_json::Error>> {
        if !self.is::<I>() {
            return None;
        }
        Some(I::deserialize(&self.value).map(|payload| TypedInterrupt {
            id: self.id,
            payload,
        }))
    }
}

/// A pending interrupt read as the type that raised it
/// ([`PendingInterrupt::downcast`]): its answer has the type the interrupt declared.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedInterrupt<I> {
    /// The interrupt's id.
    pub id: InterruptId,
    /// Its payload.
    pub payload: I,
}

impl<I: Interrupt> TypedInterrupt<I> {
    /// The answer to this interrupt, for [`Command::answers`](crate::Command::answers).
    /// Only an `I::Resume` compiles.
    pub fn answer(&self, answer: I::Resume) -> Answer
    where
        I::Resume: Serialize,
    {
        Answer {
            id: self.id,
            value: serde_json::to_value(answer)
                .map_err(|e| format!("the answer does not serialize to JSON: {e}")),
        }
    }
}

/// An answer to one pending interrupt, by id: built typed by
/// [`TypedInterrupt::answer`], or from JSON by [`Answer::json`]. Several answers to
/// interrupts of different types go in one [`Command::answers`](crate::Command::answers).
#[derive(Debug, Clone)]
pub struct Answer {
    pub(crate) id: InterruptId,
    pub(crate) value: Result<Value, String>,
}

impl Answer {
    /// An answer given as JSON (checked against the interrupt's schema when resumed).
    pub fn json(id: InterruptId, value: Value) -> Self {
        Answer {
            id,
            value: Ok(value),
        }
    }

    /// The interrupt it answers.
    pub fn id(&self) -> InterruptId {
        self.id
    }
}

/// How the answers to one kind of interrupt ([`crate::InterruptRequest::kind`]) are
/// checked, registered with [`crate::CompileBuilder::resume_validator`].
///
/// A closure `Fn(&Value, &Value) -> Result<(), Vec<String>>` is a `ResumeKind` that
/// only checks.
pub trait ResumeKind: Send + Sync + 'static {
    /// Checks an answer, given the interrupt's payload
    /// ([`crate::PendingInterrupt::value`]); returns the problems, one per line. Runs
    /// before the answer is stored.
    fn check(&self, payload: &Value, answer: &Value) -> Result<(), Vec<String>>;

    /// The JSON schema of the answers, if this kind derives it from the payload. An
    /// interrupt whose schema is derived is stored without it (the schema is derived
    /// again when the interrupt is read), and its answers are checked by
    /// [`check`](Self::check) alone, which must then reject whatever the schema
    /// rejects.
    fn schema(&self, payload: &Value) -> Option<Arc<Value>> {
        let _ = payload;
        None
    }

    /// Rewrites an answer given in another accepted form (an older client's, say) into
    /// the form [`check`](Self::check) expects; the rewritten answer is checked and
    /// stored. `None` (the default): the answer is checked as given.
    fn normalize(&self, payload: &Value, answer: &Value) -> Option<Value> {
        let _ = (payload, answer);
        None
    }

    /// Whether what the interrupt reviews is still what it was when it was raised
    /// (for a tool review: the tool's policy and argument schema). An error refuses
    /// the answer with [`crate::ResumeError::PolicyChanged`]. The default: unchanged.
    fn binding(&self, payload: &Value) -> Result<(), PolicyChange> {
        let _ = payload;
        Ok(())
    }

    /// How an answer counts when the interrupt needs several approvals
    /// ([`crate::Governance::approvals`]). The default: it decides.
    fn vote(&self, payload: &Value, answer: &Value) -> Vote {
        let _ = (payload, answer);
        Vote::Decides
    }

    /// Plumbing for the kinds this crate registers: they judge answers reading the
    /// stored payload in place, without decoding it into a [`Value`]. Not for other
    /// implementations (no semver guarantees).
    #[doc(hidden)]
    fn __in_place(&self) -> Option<&dyn InPlaceKind> {
        None
    }
}

/// A kind that judges an answer in one pass over the stored payload's JSON text:
/// [`ResumeKind::binding`], [`ResumeKind::normalize`], [`ResumeKind::check`] and, when
/// the answer counts toward a quorum, [`ResumeKind::vote`]. Plumbing (reached through
/// `hitl_runtime::__private`): no semver guarantees.
#[doc(hidden)]
pub trait InPlaceKind: Send + Sync {
    /// The answer as it is stored (normalized) and how it counts, or why it is refused.
    fn judge(
        &self,
        payload: &serde_json::value::RawValue,
        answer: Value,
        counts: bool,
    ) -> Result<(Value, Vote), Refusal>;
}

/// Why [`InPlaceKind::judge`] refused an answer.
#[doc(hidden)]
#[derive(Debug)]
pub enum Refusal {
    /// What the interrupt reviews changed since it was raised.
    Changed(PolicyChange),
    /// The answer's problems, one per line.
    Invalid(Vec<String>),
}

/// How an answer counts toward an interrupt's quorum ([`ResumeKind::vote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    /// It approves everything asked: one approval; the interrupt stays pending until
    /// enough distinct reviewers approved.
    Approves,
    /// It approves nothing (a rejection, say): it decides at once.
    Decides,
    /// It approves some things and declines others: accepted only as the approval that
    /// completes the quorum.
    Mixed,
}

/// A reviewed thing that changed since its review was raised ([`ResumeKind::binding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    /// What changed (a tool's name).
    pub tool: String,
    /// Its digest when the review was raised.
    pub raised: String,
    /// Its digest now (`None`: it no longer exists or is no longer reviewed).
    pub current: Option<String>,
}

impl<F> ResumeKind for F
where
    F: Fn(&Value, &Value) -> Result<(), Vec<String>> + Send + Sync + 'static,
{
    fn check(&self, payload: &Value, answer: &Value) -> Result<(), Vec<String>> {
        self(payload, answer)
    }
}

/// A shared [`ResumeKind`].
pub type ResumeValidator = Arc<dyn ResumeKind>;
