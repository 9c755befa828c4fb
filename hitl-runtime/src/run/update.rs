//! `update_state`: a checkpoint written from outside a run.

use std::sync::Arc;

use super::commit::{Draft, encode_given};
use super::compiled::GraphInner;
use super::lease::Lease;
use super::step::{Current, Runner};
use crate::context::RunConfig;
use crate::error::{CheckpointError, RunError};
use crate::state::State;

/// Who an `update_state` checkpoint is written as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Writer {
    /// The caller: the next tasks stay what they were.
    Caller,
    /// A node (by index): routed as if it had returned the update.
    Node(usize),
    /// The graph's end: nothing runs next, pending interrupts are dropped.
    End,
}

/// Writes an `update_state` checkpoint: `update` applied to the head (or to
/// `cfg.at_checkpoint(..)`), as `as_node` (see [`Writer`]). Returns a config at the
/// new checkpoint.
pub(crate) async fn update_state<S: State>(
    graph: &Arc<GraphInner<S>>,
    cfg: &RunConfig,
    update: S::Update,
    as_node: Writer,
) -> Result<RunConfig, RunError> {
    let saver = graph.checkpointer.clone().ok_or(RunError::NoCheckpointer {
        operation: "update_state",
    })?;
    let thread = cfg.thread_id.clone().ok_or(RunError::MissingThreadId)?;
    let runner = Runner {
        graph: graph.clone(),
        saver,
        thread: thread.clone(),
        ns: Arc::from(""),
        cfg: cfg.clone(),
        sink: None,
        before: Vec::new(),
        after: Vec::new(),
        limit: 0,
        steps: 0,
        cacheable: true,
        shared: None,
        reviewer: None,
    };
    let lease = Lease::acquire(&runner.saver, &thread, graph.run_lease).await?;
    let result = write_update(&runner, cfg, update, as_node).await;
    // What was written is durable before `update_state` returns; the update's own
    // error, if any, is the one reported (as a run's is).
    let ended = lease.end().await;
    let written = result?;
    ended?;
    Ok(written)
}

async fn write_update<S: State>(
    runner: &Runner<S>,
    cfg: &RunConfig,
    mut update: S::Update,
    as_node: Writer,
) -> Result<RunConfig, RunError> {
    let (graph, thread) = (&runner.graph, &runner.thread);
    let head = runner
        .load(None)
        .await?
        .ok_or_else(|| RunError::UnknownThread {
            thread: thread.to_string(),
        })?;
    let head_id = head.checkpoint.id;
    let base = match cfg.checkpoint_id {
        Some(id) if id != head_id => {
            drop(head);
            runner
                .load(Some(id))
                .await?
                .ok_or_else(|| CheckpointError::NotFound {
                    thread: thread.to_string(),
                    checkpoint: id,
                })?
        }
        _ => head,
    };
    let pieces = encode_given::<S>("update_state", &mut update)?;
    let mut draft = Draft::update(base.checkpoint, base.state, head_id);
    let writer = match as_node {
        Writer::Node(n) => graph.topology.name(n).clone(),
        Writer::Caller => Arc::from("update_state"),
        Writer::End => Arc::from("__end__"),
    };
    draft.apply(&writer, update, &pieces)?;
    let next = match as_node {
        Writer::Node(n) => {
            let id = draft.id();
            draft.seen_mut().insert(graph.topology.name(n).clone(), id);
            graph.topology.routes_after(n, draft.state())?
        }
        Writer::Caller => draft.base_next(),
        Writer::End => Vec::new(),
    };
    let (current, blobs) = Current::made(draft.finish(thread, next, cfg.metadata.clone())?, true);
    runner
        .put(&current, blobs, Some(head_id), Vec::new())
        .await?;
    let id = current.checkpoint.id;
    runner.remember(id, current.state);
    Ok(RunConfig::thread(thread.to_string()).at_checkpoint(id))
}
