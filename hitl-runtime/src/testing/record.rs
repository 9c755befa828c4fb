//! Record a run against a real model once, replay it offline in tests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ScriptedModel;
use super::reviewer::ScriptedReviewer;
use crate::agent::{ChatModel, ModelError, ModelRequest};
use crate::interrupt::PendingInterrupt;
use crate::message::{AssistantMessage, Message, MessageChunk};

/// A recorded run: the model's answers and the answers given to its interrupts, in
/// order. Made by a [`Recorder`], saved as JSON, replayed by [`Fixture::model`] and
/// [`Fixture::reviewer`].
///
/// ```no_run
/// # #[cfg(feature = "openai")] async fn record() -> Result<(), Box<dyn std::error::Error>> {
/// # use hitl_runtime::agent::{create_agent, HumanInTheLoop, OpenAiModel};
/// # use hitl_runtime::testing::{Fixture, Recorder, ScriptedReviewer, run_with_reviewer};
/// # use hitl_runtime::{tool, tools, InMemorySaver, RunConfig, ToolError};
/// # /// Delete a file.
/// # #[tool(interrupt(allowed = [approve, reject]))]
/// # async fn delete_file(path: String) -> Result<String, ToolError> { Ok(path) }
/// // Once, against a real server:
/// let recorder = Recorder::new();
/// let model = recorder.model(OpenAiModel::new("gpt-4o-mini"));
/// let agent = create_agent(model).tools(tools![delete_file])
///     .middleware(HumanInTheLoop::from_tools()).checkpointer(InMemorySaver::new()).build()?;
/// let reviewer = recorder.reviewer(ScriptedReviewer::new().approve::<delete_file>());
/// run_with_reviewer(&agent, "Delete old.txt", &RunConfig::thread("t"), &reviewer).await?;
/// recorder.save("tests/fixtures/delete.json")?;
///
/// // In the test, offline:
/// let fixture = Fixture::load("tests/fixtures/delete.json")?;
/// let agent = create_agent(fixture.model()).tools(tools![delete_file])
///     .middleware(HumanInTheLoop::from_tools()).checkpointer(InMemorySaver::new()).build()?;
/// let transcript = run_with_reviewer(&agent, "Delete old.txt", &RunConfig::thread("t"), &fixture.reviewer()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fixture {
    /// The model's answers, the i-th for the i-th model turn.
    pub turns: Vec<AssistantMessage>,
    /// The answers given to interrupts, in the order they were given.
    pub answers: Vec<RecordedAnswer>,
}

/// One answer given to an interrupt in a recorded run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedAnswer {
    /// The type of the interrupt it answered ([`PendingInterrupt::type_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<String>,
    /// The answer, as JSON.
    pub answer: Value,
}

/// Why a fixture could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The file could not be read or written.
    #[error("cannot access the fixture {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a fixture.
    #[error("{} is not a hitl fixture: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl Fixture {
    /// Reads a fixture saved by [`Recorder::save`] or [`Fixture::save`].
    ///
    /// # Errors
    /// If the file cannot be read or is not a fixture.
    pub fn load(path: impl AsRef<Path>) -> Result<Fixture, FixtureError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| FixtureError::Format {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the fixture as pretty JSON (reviewable in a diff).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FixtureError> {
        let path = path.as_ref();
        let mut text = serde_json::to_string_pretty(self).expect("fixtures serialize to JSON");
        text.push('\n');
        std::fs::write(path, text).map_err(|source| FixtureError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// A model that answers each turn as the recorded model did.
    pub fn model(&self) -> ScriptedModel {
        ScriptedModel::turns(self.turns.iter().cloned().map(Message::Assistant))
    }

    /// A reviewer that gives the recorded answers in order. A run that pauses at
    /// another type of interrupt than the recording did fails with
    /// [`FlowError::Diverged`](super::FlowError::Diverged).
    pub fn reviewer(&self) -> ScriptedReviewer {
        ScriptedReviewer::new().replaying(self.answers.clone())
    }
}

/// The shared fixture a recorder writes into.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Fixture>>);

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, Fixture> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, answer: RecordedAnswer) {
        self.lock().answers.push(answer);
    }

    fn turn(&self, turn: usize, message: &AssistantMessage) {
        let mut fixture = self.lock();
        match fixture.turns.get_mut(turn) {
            // A turn asked again (a retry) keeps its latest answer.
            Some(slot) => *slot = message.clone(),
            None => fixture.turns.push(message.clone()),
        }
    }
}

/// Records a run for offline replay: wrap the model with [`model`](Self::model) and
/// the reviewer with [`reviewer`](Self::reviewer) (or report human answers with
/// [`answered`](Self::answered)), then [`save`](Self::save). See [`Fixture`].
#[derive(Clone, Default)]
pub struct Recorder {
    log: Log,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("fixture", &*self.log.lock())
            .finish()
    }
}

impl Recorder {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// `model`, recording each answer it gives.
    pub fn model<M: ChatModel>(&self, model: M) -> RecordingModel<M> {
        RecordingModel {
            inner: model,
            log: self.log.clone(),
        }
    }

    /// `reviewer`, recording each answer it gives.
    pub fn reviewer(&self, reviewer: ScriptedReviewer) -> ScriptedReviewer {
        reviewer.logging(self.log.clone())
    }

    /// Records an answer given some other way (a human at a terminal or a server).
    pub fn answered(&self, interrupt: &PendingInterrupt, answer: &Value) {
        self.log.push(RecordedAnswer {
            interrupt: interrupt.type_name().map(str::to_owned),
            answer: answer.clone(),
        });
    }

    /// What was recorded so far.
    pub fn fixture(&self) -> Fixture {
        self.log.lock().clone()
    }

    /// Writes what was recorded (see [`Fixture::save`]).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FixtureError> {
        self.fixture().save(path)
    }
}

/// A chat model whose answers are recorded ([`Recorder::model`]).
pub struct RecordingModel<M> {
    inner: M,
    log: Log,
}

impl<M> fmt::Debug for RecordingModel<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingModel").finish_non_exhaustive()
    }
}

/// The model turn a request is for: the assistant messages so far.
fn turn_of(request: &ModelRequest<'_>) -> usize {
    request
        .messages
        .iter()
        .filter(|m| m.as_assistant().is_some())
        .count()
}

#[async_trait::async_trait]
impl<M: ChatModel> ChatModel for RecordingModel<M> {
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        let message = self.inner.invoke(request).await?;
        self.log.turn(turn_of(request), &message);
        Ok(message)
    }

    async fn stream(
        &self,
        request: &ModelRequest<'_>,
        on_chunk: &(dyn Fn(MessageChunk) + Send + Sync),
    ) -> Result<AssistantMessage, ModelError> {
        let message = self.inner.stream(request, on_chunk).await?;
        self.log.turn(turn_of(request), &message);
        Ok(message)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}
