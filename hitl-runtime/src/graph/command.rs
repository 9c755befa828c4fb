//! `Command`: resume a paused thread, update its state, or send it somewhere.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::Goto;
use crate::governance::{DecidedBy, Reviewer};
use crate::ids::InterruptId;
use crate::interrupt::Answer;
use crate::state::State;

/// Resume a paused thread, update its state, or send it somewhere: any combination.
///
/// ```
/// # use hitl_runtime::{Command, State};
/// # use serde::{Serialize, Deserialize};
/// # #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
/// # struct Flow { step: u32 }
/// let answer: Command<Flow> = Command::resume(serde_json::json!({"approved": true}));
/// let patch = Command::<Flow>::update(FlowUpdate::default().step(3));
/// ```
pub struct Command<S: State> {
    update: Option<S::Update>,
    goto: Vec<Goto<S>>,
    resume: Option<Resume>,
    decided_by: Option<DecidedBy>,
    /// The clock a timeout is applied at (ms since the epoch); `None`: now.
    at: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Resume {
    /// One answer, for the only pending interrupt.
    Single(Result<Value, String>),
    /// Answers by interrupt id.
    ById(Vec<(InterruptId, Result<Value, String>)>),
}

fn to_json(value: impl Serialize) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("the answer does not serialize to JSON: {e}"))
}

impl<S: State> Command<S> {
    /// A command that does nothing yet; add to it with the builder methods.
    pub fn new() -> Self {
        Command {
            update: None,
            goto: Vec::new(),
            resume: None,
            decided_by: None,
            at: None,
        }
    }

    /// Says who answers: checked against the roles the interrupts ask for
    /// ([`crate::Governance::reviewers`]), counted for quorum, and written in the
    /// decision records.
    ///
    /// ```
    /// # use hitl_runtime::{AgentState, Command, Decision, Reviewer};
    /// let resume = Command::<AgentState>::resume(serde_json::json!({"decisions": [{"type": "approve"}]}))
    ///     .by(Reviewer::new("alice").role("finance"));
    /// ```
    pub fn by(mut self, reviewer: Reviewer) -> Self {
        self.decided_by = Some(DecidedBy::Reviewer(reviewer));
        self
    }

    /// The declared timeout answers of expired interrupts, applied by the system
    /// ([`DecidedBy::Timeout`]) as of `at` (ms since the Unix epoch): what
    /// [`CompiledGraph::expire_due`](crate::CompiledGraph::expire_due) sends, for
    /// servers that run expiry through their own run admission
    /// ([`CompiledGraph::due_timeouts`](crate::CompiledGraph::due_timeouts) lists them).
    /// Each answer is refused unless it is its interrupt's declared timeout answer and
    /// `at` is past its deadline.
    pub fn timeout(answers: Vec<(InterruptId, Value)>, at: u64) -> Self {
        let mut c = Command::resume_by_id(answers);
        c.decided_by = Some(DecidedBy::Timeout);
        c.at = Some(at);
        c
    }

    /// Who answers, and the clock the answers are checked at.
    pub(crate) fn decided_by(&self) -> (Option<&DecidedBy>, Option<u64>) {
        (self.decided_by.as_ref(), self.at)
    }

    /// Answers the one pending interrupt. With several pending, the run fails with
    /// [`crate::ResumeError::Ambiguous`]: use [`Command::resume_by_id`].
    pub fn resume(value: impl Serialize) -> Self {
        Command::new().with_resume(value)
    }

    /// Answers interrupts by id. Interrupts not named stay pending with the same ids.
    pub fn resume_by_id<V: Serialize>(answers: impl IntoIterator<Item = (InterruptId, V)>) -> Self {
        let mut c = Command::new();
        c.resume = Some(Resume::ById(
            answers
                .into_iter()
                .map(|(id, v)| (id, to_json(v)))
                .collect(),
        ));
        c
    }

    /// Answers interrupts by id with typed answers ([`TypedInterrupt::answer`]) or JSON
    /// ones ([`Answer::json`]), of any mix of interrupt types. Interrupts not answered
    /// stay pending with the same ids.
    ///
    /// [`TypedInterrupt::answer`]: crate::TypedInterrupt::answer
    pub fn answers(answers: impl IntoIterator<Item = Answer>) -> Self {
        let mut c = Command::new();
        c.resume = Some(Resume::ById(
            answers.into_iter().map(|a| (a.id, a.value)).collect(),
        ));
        c
    }

    /// The update, the gotos and the resume.
    pub(crate) fn into_parts(self) -> (Option<S::Update>, Vec<Goto<S>>, Option<Resume>) {
        (self.update, self.goto, self.resume)
    }

    /// Whether it carries a resume.
    pub(crate) fn has_resume(&self) -> bool {
        self.resume.is_some()
    }

    /// Applies an update (through the reducers) before the pending tasks run again.
    pub fn update(update: S::Update) -> Self {
        Command::new().with_update(update)
    }

    /// Sets the update.
    pub fn with_update(mut self, update: S::Update) -> Self {
        self.update = Some(update);
        self
    }

    /// Sets the answer for the one pending interrupt.
    pub fn with_resume(mut self, value: impl Serialize) -> Self {
        self.resume = Some(Resume::Single(to_json(value)));
        self
    }

    /// Also runs `goto` (a node or a `Send`) in the next superstep; on a paused thread,
    /// alongside the pending tasks.
    pub fn goto(mut self, goto: impl Into<Goto<S>>) -> Self {
        self.goto.push(goto.into());
        self
    }
}

impl<S: State> Default for Command<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: State> fmt::Debug for Command<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("update", &self.update)
            .field("goto", &self.goto)
            .field("resume", &self.resume)
            .field("decided_by", &self.decided_by)
            .finish()
    }
}
