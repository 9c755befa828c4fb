//! The run lease: one runner per thread.
//!
//! A run takes the thread's lease in the saver before it reads the thread, renews it
//! while it runs, and releases it when it ends. A second runner (in this process or
//! another) gets [`RunError::ThreadBusy`] at once instead of re-running a task the first
//! is running. A crashed runner's lease expires after its time to live, and another
//! runner continues the thread from its last checkpoint.

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::Checkpointer;
use crate::error::{CheckpointError, RunError};

/// A held lease.
pub(crate) struct Lease {
    saver: Arc<dyn Checkpointer>,
    thread: Arc<str>,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// Takes the lease of `thread`, or fails with [`RunError::ThreadBusy`].
    pub(crate) async fn acquire(
        saver: &Arc<dyn Checkpointer>,
        thread: &Arc<str>,
        ttl: Duration,
    ) -> Result<Lease, RunError> {
        let holder = format!("run-{}", uuid::Uuid::now_v7().simple());
        match saver.acquire_lease(thread, &holder, ttl).await? {
            None => Ok(Lease {
                saver: saver.clone(),
                thread: thread.clone(),
                holder,
                ttl,
            }),
            Some(current) => Err(RunError::ThreadBusy {
                thread: thread.to_string(),
                holder: current,
            }),
        }
    }

    /// Renews the lease every third of its time to live; returns when it is lost (taken
    /// over after it expired, or not renewable for a whole time to live).
    pub(crate) async fn keep(&self) -> RunError {
        let period = self.ttl / 3;
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match self
                .saver
                .renew_lease(&self.thread, &self.holder, self.ttl)
                .await
            {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return self.lost(),
                Err(e) if last_renewed.elapsed() >= self.ttl => return e.into(),
                Err(e) => {
                    tracing::warn!(thread = %self.thread, error = %e, "renewing the run lease failed; retrying");
                }
            }
        }
    }

    fn lost(&self) -> RunError {
        RunError::LeaseLost {
            thread: self.thread.to_string(),
        }
    }

    /// Gives the lease up.
    pub(crate) async fn release(self) -> Result<(), CheckpointError> {
        self.saver.release_lease(&self.thread, &self.holder).await
    }
}
