//! Applying the timeout answers of expired interrupts.

use std::time::SystemTime;

use serde_json::Value;

use super::compiled::CompiledGraph;
use crate::checkpoint::pending;
use crate::checkpoint::{Checkpointer, DecisionEntry, PendingThread};
use crate::context::RunConfig;
use crate::error::CheckpointError;
use crate::error::RunError;
use crate::governance::millis;
use crate::graph::Command;
use crate::ids::InterruptId;
use crate::state::State;

/// A thread with interrupts due and their timeout answers
/// ([`CompiledGraph::due_timeouts`]), or a thread that could not be read.
pub type DueTimeouts = Result<(String, Vec<(InterruptId, Value)>), (String, RunError)>;

/// The timeout answers applied to one thread by [`CompiledGraph::expire_due`].
#[derive(Debug)]
pub struct Expired {
    /// The thread.
    pub thread: String,
    /// The interrupts that expired and were answered.
    pub interrupts: Vec<InterruptId>,
    /// How the run they resumed ended: `Ok` with the run's status, or why it could
    /// not run (another runner holds the thread, say: the next call tries again).
    pub result: Result<super::RunStatus, RunError>,
}

impl<S: State> CompiledGraph<S> {
    /// Applies the declared timeout answer of every interrupt whose deadline passed at
    /// `now`, on every thread of the saver, as the system ([`crate::DecidedBy::Timeout`]):
    /// through the normal resume path, so each is checked and recorded like any
    /// decision, and the thread continues. An interrupt that expired without a timeout
    /// answer stays pending (late answers to it are refused).
    ///
    /// Call it periodically (hitl-server does); no process needs to stay up while an
    /// approval waits. A thread that fails to resume is reported in its [`Expired`]
    /// and left as it was.
    pub async fn expire_due(&self, now: SystemTime) -> Result<Vec<Expired>, RunError> {
        let at = millis(now);
        let mut out = Vec::new();
        for due in self.due_timeouts(now).await? {
            let (thread, answers) = match due {
                Ok(due) => due,
                Err((thread, e)) => {
                    out.push(Expired {
                        thread,
                        interrupts: Vec::new(),
                        result: Err(e),
                    });
                    continue;
                }
            };
            let interrupts = answers.iter().map(|(id, _)| *id).collect();
            let result = self
                .invoke(
                    Command::timeout(answers, at),
                    &RunConfig::thread(thread.clone()),
                )
                .await
                .map(|o| o.status);
            out.push(Expired {
                thread,
                interrupts,
                result,
            });
        }
        Ok(out)
    }

    /// The threads with interrupts due at `now` and their declared timeout answers,
    /// for [`Command::timeout`] (or a thread whose state could not be read, with why).
    pub async fn due_timeouts(&self, now: SystemTime) -> Result<Vec<DueTimeouts>, RunError> {
        let saver = self.saver("due_timeouts")?;
        let now = millis(now);
        let mut out = Vec::new();
        for waiting in saver.threads_with_pending_interrupts(usize::MAX).await? {
            match due_on(saver.as_ref(), &waiting, now).await {
                Ok(due) if due.is_empty() => {}
                Ok(due) => out.push(Ok((waiting.thread, due))),
                Err(e) => out.push(Err((waiting.thread, e))),
            }
        }
        Ok(out)
    }

    /// A thread's decision records, in chain order.
    pub async fn decision_records(&self, thread: &str) -> Result<Vec<DecisionEntry>, RunError> {
        let saver = self.saver("decision_records")?;
        Ok(saver
            .decision_records(&crate::checkpoint::RecordQuery::thread(thread))
            .await?)
    }
}

/// The timeout answers due at `now` on a waiting thread, read from its head's pending
/// writes alone (its state is not loaded: this runs for every waiting thread).
async fn due_on(
    saver: &dyn Checkpointer,
    waiting: &PendingThread,
    now: u64,
) -> Result<Vec<(InterruptId, Value)>, RunError> {
    let head = Some(waiting.checkpoint);
    let Some(stored) = saver.get(&waiting.thread, "", head, head).await? else {
        return Ok(Vec::new());
    };
    let collected = pending::collect(&stored.writes).map_err(CheckpointError::decoding(
        &waiting.thread,
        "the pending writes of its head",
    ))?;
    let mut due = Vec::new();
    for (_, id) in &collected.pending {
        let Some(record) = collected.record(*id) else {
            continue;
        };
        let view = record
            .view()
            .map_err(CheckpointError::decoding_with(&waiting.thread, || {
                format!("interrupt {id}")
            }))?;
        if let Some(g) = view.governance
            && g.expired_at(now)
            && let Some(answer) = g.on_timeout
        {
            due.push((*id, answer));
        }
    }
    Ok(due)
}
