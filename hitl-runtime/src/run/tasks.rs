//! Planning a superstep's tasks, running them concurrently, and settling what each
//! returned into an [`Outcome`] that is stored the moment it is known.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::commit::{Pieces, assemble, decode_update, encode_update, object, too_deep};
use super::step::{Current, Runner};
use super::stream::{StreamEvent, TaskOutcome};
use crate::checkpoint::pending::{self, ErrorPayload, ResultOut};
use crate::checkpoint::{PendingWrite, TaskSpec, WriteKind};
use crate::context::{NodeContext, RunShared, StreamMode, TaskShared};
use crate::error::{BoxError, CheckpointError, NodeError, RunError};
use crate::graph::NodeOutput;
use crate::ids::TaskId;
use crate::interrupt::PendingInterrupt;
use crate::state::{State, StateUpdate};

/// How a task ended.
pub(crate) enum Outcome<S: State> {
    /// It returned: its update (also encoded) and the tasks it sent.
    Done {
        update: Option<S::Update>,
        pieces: Pieces,
        goto: Vec<TaskSpec>,
    },
    /// It failed.
    Failed {
        message: String,
        source: Option<BoxError>,
    },
    /// It paused at these interrupts.
    Interrupted(Vec<PendingInterrupt>),
}

/// A task of the superstep about to run.
pub(crate) struct Planned<S: State> {
    pub(crate) id: TaskId,
    pub(crate) node: usize,
    pub(crate) spec: TaskSpec,
    /// Its stored result, when an earlier run of this step finished it.
    pub(crate) prior: Option<Outcome<S>>,
}

/// What running a superstep's tasks gave: one outcome per planned task, and the
/// result held back to be stored with the next checkpoint.
pub(crate) struct Ran<S: State> {
    pub(crate) outcomes: Vec<Outcome<S>>,
    pub(crate) deferred: Vec<PendingWrite>,
}

impl<S: State> Runner<S> {
    /// The tasks of a checkpoint (`next`, plus a `Command`'s gotos), each with a
    /// deterministic id and, if it already finished, its stored result.
    pub(super) fn plan(&self, current: &Current<S>) -> Result<Vec<Planned<S>>, RunError> {
        let topology = &self.graph.topology;
        let specs = current.checkpoint.next.iter().chain(
            current
                .collected
                .commands
                .iter()
                .flat_map(|c| c.goto.iter()),
        );
        let mut planned = Vec::new();
        for (position, spec) in specs.enumerate() {
            let node = topology.index_of(&spec.node).ok_or_else(|| {
                CheckpointError::corrupt(
                    &self.thread,
                    format!(
                        "checkpoint {} schedules node `{}`, which this graph does not have \
                         (was the graph changed since it was written?)",
                        current.checkpoint.id, spec.node
                    ),
                )
            })?;
            let id = TaskId::derive(
                current.checkpoint.id,
                &self.ns,
                current.checkpoint.step,
                &spec.node,
                position,
            );
            let prior = match current.collected.results.get(&id) {
                Some(result) => {
                    let (update, pieces) = match &result.update {
                        Some(raw) => {
                            let (u, p) = decode_update::<S>(raw).map_err(
                                CheckpointError::decoding_with(&self.thread, || {
                                    format!("stored result of task {id}")
                                }),
                            )?;
                            (Some(u), p)
                        }
                        None => (None, Vec::new()),
                    };
                    Some(Outcome::Done {
                        update,
                        pieces,
                        goto: result.goto.clone(),
                    })
                }
                None => None,
            };
            planned.push(Planned {
                id,
                node,
                spec: spec.clone(),
                prior,
            });
        }
        Ok(planned)
    }

    /// Runs the tasks without a stored result, concurrently on this run's own task
    /// (no thread hand-offs; dropping the run drops them; a lone task is awaited in
    /// place). Each outcome is stored as a pending write as soon as it is known, except
    /// the last task's result, which is held back to travel with the next checkpoint
    /// (one write instead of two).
    pub(super) async fn run_tasks(
        &self,
        current: &Current<S>,
        planned: &mut [Planned<S>],
        shared: &Arc<RunShared>,
    ) -> Result<Ran<S>, RunError> {
        let mut outcomes: Vec<Option<Outcome<S>>> =
            planned.iter_mut().map(|t| t.prior.take()).collect();
        let waiting = outcomes.iter().filter(|o| o.is_none()).count();
        let unfinished = AtomicUsize::new(waiting);
        let unfinished = &unfinished;
        let step = current.checkpoint.step + 1;
        // Starts task `i` (its start is streamed now, when it is started).
        let start = move |i: usize, task: &Planned<S>| {
            let node = self.graph.topology.node(task.node);
            self.emit(StreamMode::Tasks, || StreamEvent::TaskStart {
                task_id: task.id,
                node: node.name().to_string(),
                step,
            });
            let cx = NodeContext::new(TaskShared {
                run: shared.clone(),
                ns: self.ns.clone(),
                node: node.name().clone(),
                task_id: task.id,
                checkpoint_id: current.checkpoint.id,
                step,
                input: task.spec.input.clone(),
                interrupts: Default::default(),
            });
            let fut = node.start(current.state.clone(), cx.clone());
            let timeout = node.timeout();
            let (node_index, task_id) = (task.node, task.id);
            let checkpoint = current.checkpoint.id;
            async move {
                let run = async move {
                    match timeout {
                        Some(d) => tokio::time::timeout(d, fut)
                            .await
                            .unwrap_or_else(|_| Err(NodeError::timeout(d))),
                        None => fut.await,
                    }
                };
                let result = match AssertUnwindSafe(run).catch_unwind().await {
                    Ok(r) => r,
                    Err(panic) => Err(NodeError::msg(format!(
                        "panicked: {}",
                        crate::error::panic_message(&*panic)
                    ))),
                };
                // Settling encodes the update: a panicking `Serialize` fails the task too.
                let outcome =
                    crate::error::catching(String::new, || self.settle(node_index, &cx, result))
                        .unwrap_or_else(|e| {
                            let RunError::Panicked { message, .. } = e else {
                                unreachable!("catching only returns Panicked")
                            };
                            Outcome::Failed {
                                message: format!(
                                    "its update panicked while serializing: {message}"
                                ),
                                source: None,
                            }
                        });
                let write = outcome_write(task_id, &outcome, &self.graph.validators);
                let last = unfinished.fetch_sub(1, Ordering::AcqRel) == 1;
                if last && matches!(outcome, Outcome::Done { .. }) {
                    return (i, Ok((outcome, Some(write))));
                }
                let stored = self
                    .saver
                    .put_writes(&self.thread, &self.ns, checkpoint, vec![write])
                    .await
                    .map(|()| (outcome, None))
                    .map_err(RunError::from);
                (i, stored)
            }
        };
        let cancel = self.cfg.cancel.as_ref();
        let mut deferred = Vec::new();
        let settled = |outcomes: &mut [Option<Outcome<S>>],
                       deferred: &mut Vec<PendingWrite>,
                       (i, stored): (usize, Result<_, RunError>)|
         -> Result<(), RunError> {
            let (outcome, unstored) = stored?;
            deferred.extend(unstored);
            self.emit_task_end(&planned[i], step, &outcome);
            outcomes[i] = Some(outcome);
            Ok(())
        };
        // One task (a sequential step, the common case) runs in place: no set of futures
        // to allocate and poll it through.
        let single = match waiting {
            1 => outcomes.iter().position(Option::is_none),
            _ => None,
        };
        match single {
            Some(i) => {
                let done = unless_cancelled(cancel, start(i, &planned[i])).await?;
                settled(&mut outcomes, &mut deferred, done)?;
            }
            None => {
                let mut running: FuturesUnordered<_> = (0..planned.len())
                    .filter(|&i| outcomes[i].is_none())
                    .map(|i| start(i, &planned[i]))
                    .collect();
                while let Some(done) = unless_cancelled(cancel, running.next()).await? {
                    settled(&mut outcomes, &mut deferred, done)?;
                }
            }
        }
        let outcomes: Vec<Outcome<S>> = outcomes
            .into_iter()
            .map(|o| o.expect("every task has an outcome"))
            .collect();
        if !deferred.is_empty() && outcomes.iter().any(|o| !matches!(o, Outcome::Done { .. })) {
            // No checkpoint follows this step: store the result now.
            self.store_writes(current.checkpoint.id, std::mem::take(&mut deferred))
                .await?;
        }
        Ok(Ran { outcomes, deferred })
    }

    fn emit_task_end(&self, task: &Planned<S>, step: i64, outcome: &Outcome<S>) {
        let name = self.graph.topology.name(task.node);
        if let Outcome::Done { update, .. } = outcome {
            self.emit(StreamMode::Updates, || StreamEvent::Update {
                node: name.to_string(),
                task_id: task.id,
                update: update.clone(),
            });
        }
        self.emit(StreamMode::Tasks, || StreamEvent::TaskEnd {
            task_id: task.id,
            node: name.to_string(),
            step,
            outcome: match outcome {
                Outcome::Done { pieces, .. } => TaskOutcome::Finished(
                    (!pieces.is_empty())
                        .then(|| serde_json::from_str(assemble::<S>(pieces).get()).ok())
                        .flatten(),
                ),
                Outcome::Failed { message, .. } => TaskOutcome::Failed(message.clone()),
                Outcome::Interrupted(list) => TaskOutcome::Interrupted(list.clone()),
            },
        });
    }

    /// Stores pending writes on a checkpoint of this run's namespace.
    pub(super) async fn store_writes(
        &self,
        checkpoint: crate::ids::CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<(), RunError> {
        self.saver
            .put_writes(&self.thread, &self.ns, checkpoint, writes)
            .await
            .map_err(RunError::from)
    }

    /// Turns what a node returned (and what its context recorded) into an outcome.
    fn settle(
        &self,
        node: usize,
        cx: &NodeContext,
        result: Result<NodeOutput<S>, NodeError>,
    ) -> Outcome<S> {
        let failed = |message: String| Outcome::Failed {
            message,
            source: None,
        };
        let (raised, failure) = cx.take_outcome();
        if let Some(message) = failure {
            return failed(message);
        }
        if !raised.is_empty() {
            return Outcome::Interrupted(raised);
        }
        let (update, gotos, resume_in_node) = match result {
            Ok(output) => output.into_parts(),
            Err(e) if e.is_interrupt() => {
                return failed(
                    "returned `Interrupted` without a pending interrupt; only propagate the \
                     error `interrupt()` returned"
                        .into(),
                );
            }
            Err(e) => {
                return Outcome::Failed {
                    message: e.to_string(),
                    source: e.into_source(),
                };
            }
        };
        if resume_in_node {
            return failed(
                "a node returned a `Command` with a resume value; nodes update and route, \
                 only callers resume"
                    .into(),
            );
        }
        let goto = match self.graph.topology.node_gotos(node, gotos) {
            Ok(goto) => goto,
            Err(e) => return failed(e.to_string()),
        };
        let mut update = update;
        let pieces = match &mut update {
            Some(u) => {
                u.prepare();
                match encode_update::<S>(u) {
                    Ok(pieces) => match too_deep(&pieces) {
                        None => pieces,
                        Some(depth) => {
                            return failed(format!(
                                "its update nests {depth} levels deep; at most {} are \
                                 accepted, so that everything stored can be read back",
                                crate::MAX_JSON_DEPTH
                            ));
                        }
                    },
                    Err(e) => return failed(format!("its update does not serialize to JSON: {e}")),
                }
            }
            None => Vec::new(),
        };
        Outcome::Done {
            update,
            pieces,
            goto,
        }
    }
}

/// Awaits `fut`, or fails with [`RunError::Cancelled`] as soon as the run's token is
/// cancelled (checked first).
async fn unless_cancelled<T>(
    cancel: Option<&CancellationToken>,
    fut: impl Future<Output = T>,
) -> Result<T, RunError> {
    match cancel {
        Some(token) => tokio::select! {
            biased;
            () = token.cancelled() => Err(RunError::Cancelled),
            out = fut => Ok(out),
        },
        None => Ok(fut.await),
    }
}

/// The pending write that stores an outcome.
fn outcome_write<S: State>(
    task_id: TaskId,
    outcome: &Outcome<S>,
    kinds: &pending::Kinds,
) -> PendingWrite {
    match outcome {
        Outcome::Done { pieces, goto, .. } => pending::write(
            task_id,
            0,
            WriteKind::Result,
            &ResultOut {
                update: (!pieces.is_empty()).then(|| object::<S>(pieces)),
                goto,
            },
        ),
        Outcome::Failed { message, .. } => pending::write(
            task_id,
            WriteKind::ERROR_IDX,
            WriteKind::Error,
            &ErrorPayload {
                message: message.clone(),
            },
        ),
        Outcome::Interrupted(list) => pending::interrupts_write(task_id, list, kinds),
    }
}
