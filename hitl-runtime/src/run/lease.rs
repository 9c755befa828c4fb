//! The run lease: one runner per thread.
//!
//! A run takes the thread's lease in the saver before it reads the thread, renews it
//! while it runs, and releases it when it ends. A second runner (in this process or
//! another) gets [`RunError::ThreadBusy`] at once instead of re-running a task the first
//! is running. A crashed runner's lease expires after its time to live, and another
//! runner continues the thread from its last checkpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::checkpoint::Checkpointer;
use crate::error::{CheckpointError, RunError};

/// A held lease.
pub(crate) struct Lease {
    saver: Arc<dyn Checkpointer>,
    thread: Arc<str>,
    holder: String,
    ttl: Duration,
    /// When it was taken (the first renewal is due a third of `ttl` later).
    taken: Instant,
}

/// A holder name unique across processes and runs: this process's random prefix (a
/// UUIDv7, made once) and the run's number in the process.
fn holder() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| format!("run-{}-", uuid::Uuid::now_v7().simple()));
    let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
    // The number's decimal digits, without the formatting machinery.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut holder = String::with_capacity(prefix.len() + digits.len() - i);
    holder.push_str(prefix);
    holder.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
    holder
}

impl Lease {
    /// Takes the lease of `thread`, or fails with [`RunError::ThreadBusy`].
    pub(crate) async fn acquire(
        saver: &Arc<dyn Checkpointer>,
        thread: &Arc<str>,
        ttl: Duration,
    ) -> Result<Lease, RunError> {
        let holder = holder();
        let taken = Instant::now();
        match saver.acquire_lease(thread, &holder, ttl).await? {
            None => Ok(Lease {
                saver: saver.clone(),
                thread: thread.clone(),
                holder,
                ttl,
                taken,
            }),
            Some(current) => Err(RunError::ThreadBusy {
                thread: thread.to_string(),
                holder: current,
            }),
        }
    }

    /// Runs `run` while holding the lease: the renewals ([`keep`](Self::keep)) start
    /// only once `run` waits, so a run that finishes without waiting arms no timer; one
    /// that waits is renewed on schedule (counted from when the lease was taken). Fails
    /// with the renewal's error if the lease is lost first. `run` is pinned by the
    /// caller, so that it is not moved (a run's future is large).
    pub(crate) fn hold<'a, F: Future + Send>(
        &'a self,
        mut run: Pin<&'a mut F>,
    ) -> impl Future<Output = Result<F::Output, RunError>> + Send + 'a {
        let mut keep: Option<Pin<Box<dyn Future<Output = RunError> + Send + 'a>>> = None;
        std::future::poll_fn(move |cx| {
            if let Poll::Ready(out) = run.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            keep.get_or_insert_with(|| Box::pin(self.keep()))
                .as_mut()
                .poll(cx)
                .map(Err)
        })
    }

    /// Renews the lease every third of its time to live; returns when it is lost (taken
    /// over after it expired, or not renewable for a whole time to live).
    async fn keep(&self) -> RunError {
        let period = self.ttl / 3;
        let mut last_renewed = self.taken;
        let mut due = self.taken + period;
        loop {
            tokio::time::sleep_until(due).await;
            match self
                .saver
                .renew_lease(&self.thread, &self.holder, self.ttl)
                .await
            {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => return self.lost(),
                Err(e) if last_renewed.elapsed() >= self.ttl => return e.into(),
                Err(e) => {
                    tracing::warn!(thread = %self.thread, error = %e, "renewing the run lease failed; retrying");
                }
            }
            due = Instant::now() + period;
        }
    }

    fn lost(&self) -> RunError {
        RunError::LeaseLost {
            thread: self.thread.to_string(),
        }
    }

    /// Makes what the run wrote durable and gives the lease up
    /// ([`Checkpointer::end_run`]).
    pub(crate) async fn end(self) -> Result<(), CheckpointError> {
        self.saver.end_run(&self.thread, &self.holder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_distinct_and_share_the_process_prefix() {
        let (a, b) = (holder(), holder());
        assert_ne!(a, b);
        assert!(a.starts_with("run-"), "{a}");
        let prefix = |h: &str| h[..h.rfind('-').unwrap()].to_owned();
        assert_eq!(prefix(&a), prefix(&b));
        let n = |h: &str| h[h.rfind('-').unwrap() + 1..].parse::<u64>().unwrap();
        assert!(n(&b) > n(&a));
    }
}
