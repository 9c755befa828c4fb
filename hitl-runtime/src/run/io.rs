//! What a run reads and writes: loading a checkpoint with its state (through the
//! state cache), caching the state a run ends at, and writing a checkpoint.

use std::sync::Arc;

use super::snapshot::snapshot_of;
use super::step::{Current, Runner};
use super::stream::StreamEvent;
use crate::checkpoint::pending;
use crate::checkpoint::{Blob, CheckpointWrite, PendingWrite, materialize};
use crate::context::StreamMode;
use crate::error::{CheckpointError, RunError};
use crate::ids::CheckpointId;
use crate::state::State;

impl<S: State> Runner<S> {
    /// Loads a checkpoint with its state (from the cache when possible).
    pub(crate) async fn load(
        &self,
        id: Option<CheckpointId>,
    ) -> Result<Option<Current<S>>, RunError> {
        let cached = if self.cacheable {
            self.graph.cache.peek(&self.thread, &self.ns)
        } else {
            None
        };
        let Some(mut stored) = self.saver.get(&self.thread, &self.ns, id, cached).await? else {
            return Ok(None);
        };
        let state = match self
            .cacheable
            .then(|| {
                self.graph
                    .cache
                    .take(&self.thread, &self.ns, stored.checkpoint.id)
            })
            .flatten()
        {
            Some(state) => state,
            None => {
                if stored.blobs.is_empty() && !stored.checkpoint.channels.is_empty() {
                    // The saver skipped the blobs for a cached state another run took.
                    stored = self
                        .saver
                        .get(&self.thread, &self.ns, Some(stored.checkpoint.id), None)
                        .await?
                        .ok_or_else(|| CheckpointError::NotFound {
                            thread: self.thread.to_string(),
                            checkpoint: stored.checkpoint.id,
                        })?;
                }
                Arc::new(materialize(&self.thread, &stored)?)
            }
        };
        let collected =
            pending::collect(&stored.writes)
                .map_err(CheckpointError::decoding_with(&self.thread, || {
                    format!("pending writes of checkpoint {}", stored.checkpoint.id)
                }))?;
        Ok(Some(Current {
            checkpoint: stored.checkpoint,
            state,
            collected: Box::new(collected),
            created_here: false,
        }))
    }

    /// Keeps a state in the cache for the next run on this thread.
    pub(crate) fn remember(&self, checkpoint: CheckpointId, state: Arc<S>) {
        if self.cacheable {
            self.graph
                .cache
                .put(&self.thread, &self.ns, checkpoint, state);
        }
    }

    /// Writes a checkpoint with compare-and-set on the head, with the step's held-back
    /// result, and streams it.
    pub(crate) async fn put(
        &self,
        current: &Current<S>,
        blobs: Vec<Blob>,
        expected_head: Option<CheckpointId>,
        head_writes: Vec<PendingWrite>,
    ) -> Result<(), RunError> {
        self.saver
            .put(CheckpointWrite {
                thread: self.thread.to_string(),
                ns: self.ns.to_string(),
                checkpoint: current.checkpoint.clone(),
                blobs,
                expected_head,
                head_writes,
            })
            .await?;
        if self
            .sink
            .as_ref()
            .is_some_and(|s| s.wants(StreamMode::Checkpoints))
        {
            let snapshot = snapshot_of(
                &self.graph,
                &self.thread,
                &current.checkpoint,
                current.state.clone(),
                &current.collected,
                true,
            )?;
            self.emit(StreamMode::Checkpoints, || {
                StreamEvent::Checkpoint(Box::new(snapshot))
            });
        }
        Ok(())
    }
}
