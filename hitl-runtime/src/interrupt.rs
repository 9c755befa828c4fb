//! Interrupts: pausing a task until a human answers.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

    /// The JSON schema answers must match, if any.
    fn resume_schema() -> Option<Arc<Value>>;
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
}

impl InterruptRequest {
    /// A request with an untyped answer.
    pub fn new(value: Value) -> Self {
        InterruptRequest {
            value,
            resume_schema: None,
            kind: None,
        }
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
