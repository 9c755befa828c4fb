//! Applying the timeout answers of expired interrupts.

use std::time::SystemTime;

use serde_json::Value;

use super::compiled::CompiledGraph;
use crate::checkpoint::DecisionEntry;
use crate::context::RunConfig;
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
            let cfg = RunConfig::thread(waiting.thread.clone());
            let snapshot = match self.get_state(&cfg).await {
                Ok(s) => s,
                Err(e) => {
                    out.push(Err((waiting.thread, e)));
                    continue;
                }
            };
            let due: Vec<(InterruptId, Value)> = snapshot
                .interrupts
                .iter()
                .filter_map(|i| {
                    let g = i.governance.as_ref()?;
                    g.expired_at(now)
                        .then(|| Some((i.id, g.on_timeout.clone()?)))?
                })
                .collect();
            if !due.is_empty() {
                out.push(Ok((waiting.thread, due)));
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
