//! Reading a checkpoint as a [`StateSnapshot`]: values, next tasks, their interrupts,
//! errors and results.

use std::sync::Arc;

use super::compiled::GraphInner;
use super::output::{StateSnapshot, TaskInfo};
use crate::checkpoint::pending::{self, Collected};
use crate::checkpoint::{Checkpoint, StoredCheckpoint, materialize};
use crate::context::RunConfig;
use crate::error::{CheckpointError, RunError};
use crate::ids::TaskId;
use crate::state::{State, StepWrites};

/// The state of a checkpoint with the finished tasks' updates applied (what a paused
/// superstep looks like from outside). Falls back to the committed state if the
/// updates conflict.
pub(super) fn preview<'a, S: State>(
    state: &Arc<S>,
    updates: impl Iterator<Item = &'a S::Update>,
) -> Arc<S> {
    let mut updates = updates.peekable();
    if updates.peek().is_none() {
        return state.clone();
    }
    let mut s = (**state).clone();
    let mut writes = StepWrites::new(S::channels());
    for u in updates {
        let applied = crate::error::catching(String::new, || s.apply(u.clone(), &mut writes));
        if !matches!(applied, Ok(Ok(()))) {
            return state.clone();
        }
    }
    Arc::new(s)
}

/// A snapshot of a stored checkpoint.
pub(super) fn snapshot_of<S: State>(
    graph: &GraphInner<S>,
    thread: &str,
    checkpoint: &Checkpoint,
    state: Arc<S>,
    collected: &Collected,
    is_head: bool,
) -> Result<StateSnapshot<S>, RunError> {
    let specs = checkpoint
        .next
        .iter()
        .chain(collected.commands.iter().flat_map(|c| c.goto.iter()));
    let mut tasks = Vec::new();
    let mut finished_updates = Vec::new();
    for (position, spec) in specs.enumerate() {
        let id = TaskId::derive(checkpoint.id, "", checkpoint.step, &spec.node, position);
        let result = collected.results.get(&id);
        if let Some(raw) = result.and_then(|r| r.update.as_ref())
            && let Ok(u) = serde_json::from_str::<S::Update>(raw.get())
        {
            finished_updates.push(u);
        }
        let interrupts = if is_head {
            collected.pending_of(id, &graph.validators)
        } else {
            collected.raised_by(id, &graph.validators)
        }
        .map_err(CheckpointError::decoding_with(thread, || {
            format!("the interrupts of task {id}")
        }))?;
        tasks.push(TaskInfo {
            id,
            name: spec.node.to_string(),
            error: collected.errors.get(&id).cloned(),
            interrupts,
            result: result
                .and_then(|r| r.update.as_ref())
                .and_then(|raw| serde_json::from_str(raw.get()).ok()),
        });
    }
    let interrupts = tasks
        .iter()
        .flat_map(|t| t.interrupts.iter().cloned())
        .collect();
    // At the head, `next` lists the tasks still to run. If every task of the step has
    // finished but the barrier has not run yet (the process stopped in between), they
    // are all listed: the step is not applied, so the thread is not done.
    let unfinished: Vec<String> = tasks
        .iter()
        .filter(|t| !is_head || !collected.results.contains_key(&t.id))
        .map(|t| t.name.clone())
        .collect();
    let next = if unfinished.is_empty() {
        tasks.iter().map(|t| t.name.clone()).collect()
    } else {
        unfinished
    };
    let values = if is_head {
        preview(&state, finished_updates.iter())
    } else {
        state
    };
    let config = RunConfig::thread(thread).at_checkpoint(checkpoint.id);
    Ok(StateSnapshot {
        values,
        next,
        tasks,
        interrupts,
        checkpoint_id: checkpoint.id,
        parent_checkpoint_id: checkpoint.parent_id,
        step: checkpoint.step,
        source: checkpoint.source,
        created_at: checkpoint.created_at(),
        parent_config: checkpoint
            .parent_id
            .map(|p| RunConfig::thread(thread).at_checkpoint(p)),
        metadata: checkpoint.metadata.clone(),
        config,
    })
}

/// Reads a stored checkpoint as a snapshot.
pub(super) fn snapshot_from_stored<S: State>(
    graph: &GraphInner<S>,
    thread: &str,
    stored: StoredCheckpoint,
    is_head: bool,
) -> Result<StateSnapshot<S>, RunError> {
    let state = Arc::new(materialize::<S>(thread, &stored)?);
    let collected = pending::collect(&stored.writes)
        .map_err(CheckpointError::decoding_with(thread, || {
            format!("pending writes of checkpoint {}", stored.checkpoint.id)
        }))?;
    snapshot_of(
        graph,
        thread,
        &stored.checkpoint,
        state,
        &collected,
        is_head,
    )
}
