//! A run's event log, shared by the worker that produces it and every client that
//! streams or joins it; and the SSE framing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use futures_core::Stream;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How a cancelled run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelAction {
    /// Keep what it did; the run is `interrupted`.
    Interrupt,
    /// Undo what it did and delete the run.
    Rollback,
}

/// One SSE event.
#[derive(Debug)]
pub(crate) struct SseEvent {
    pub(crate) name: String,
    pub(crate) data: String,
    /// `<unix ms>-<index in the log>`.
    pub(crate) id: String,
}

impl SseEvent {
    /// The bytes on the wire: CRLF line ends, the `id:` line only for resumable runs.
    pub(crate) fn frame(&self, with_id: bool) -> Bytes {
        let mut s = format!("event: {}\r\ndata: {}\r\n", self.name, self.data);
        if with_id {
            s.push_str("id: ");
            s.push_str(&self.id);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        Bytes::from(s)
    }
}

/// How a run ended, for `runs/wait` and `join`.
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    /// The body of `runs/wait` and `join`.
    pub(crate) body: Value,
}

#[derive(Default)]
struct Log {
    events: Vec<Arc<SseEvent>>,
    ending: Option<Ending>,
}

/// A run that is pending, running, or recently ended.
pub(crate) struct Live {
    pub(crate) run_id: String,
    pub(crate) resumable: bool,
    pub(crate) cancel: CancellationToken,
    action: Mutex<Option<CancelAction>>,
    log: Mutex<Log>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Live {
    pub(crate) fn new(run_id: &str, resumable: bool) -> Arc<Self> {
        Arc::new(Live {
            run_id: run_id.to_owned(),
            resumable,
            cancel: CancellationToken::new(),
            action: Mutex::new(None),
            log: Mutex::new(Log::default()),
            changed: watch::Sender::new(0),
        })
    }

    /// Appends an event.
    pub(crate) fn push(&self, name: &str, data: &Value) {
        let data = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        let mut log = lock(&self.log);
        let index = log.events.len();
        log.events.push(Arc::new(SseEvent {
            name: name.to_owned(),
            data,
            id: format!("{}-{index}", crate::time::now_us() / 1000),
        }));
        drop(log);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Records the ending; streams close, waiters wake.
    pub(crate) fn finish(&self, ending: Ending) {
        lock(&self.log).ending = Some(ending);
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn ending(&self) -> Option<Ending> {
        lock(&self.log).ending.clone()
    }

    pub(crate) fn is_finished(&self) -> bool {
        lock(&self.log).ending.is_some()
    }

    /// Waits for the ending.
    pub(crate) async fn wait(&self) -> Ending {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(e) = self.ending() {
                return e;
            }
            // The sender lives as long as `self`.
            let _ = rx.changed().await;
        }
    }

    /// Cancels the run; the first action asked for wins.
    pub(crate) fn request_cancel(&self, action: CancelAction) {
        lock(&self.action).get_or_insert(action);
        self.cancel.cancel();
    }

    pub(crate) fn cancel_action(&self) -> Option<CancelAction> {
        *lock(&self.action)
    }

    /// Events from index `from` on, and whether the log is complete.
    fn read(&self, from: usize) -> (Vec<Arc<SseEvent>>, bool) {
        let log = lock(&self.log);
        (
            log.events
                .get(from..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            log.ending.is_some(),
        )
    }

    /// The index after the event with this SSE id (`-1` or an id this log did not
    /// write: from the start).
    pub(crate) fn after_event_id(&self, last: &str) -> usize {
        let log = lock(&self.log);
        log.events
            .iter()
            .position(|e| e.id == last)
            .map_or(0, |i| i + 1)
    }

    /// The SSE body from event `from` on, until the run ends. A comment line keeps
    /// idle connections alive. With `cancel_on_drop`, a client that goes away before
    /// the end cancels the run.
    pub(crate) fn sse(
        self: &Arc<Self>,
        from: usize,
        cancel_on_drop: bool,
    ) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
        struct Cursor {
            live: Arc<Live>,
            rx: watch::Receiver<u64>,
            next: usize,
            pending: VecDeque<Bytes>,
            done: bool,
            cancel_on_drop: bool,
        }
        impl Drop for Cursor {
            fn drop(&mut self) {
                if self.cancel_on_drop && !self.live.is_finished() {
                    self.live.request_cancel(CancelAction::Interrupt);
                }
            }
        }
        let cursor = Cursor {
            rx: self.changed.subscribe(),
            live: self.clone(),
            next: from,
            pending: VecDeque::new(),
            done: false,
            cancel_on_drop,
        };
        futures_util::stream::unfold(cursor, |mut c| async move {
            loop {
                if let Some(b) = c.pending.pop_front() {
                    return Some((Ok(b), c));
                }
                if c.done {
                    return None;
                }
                let (events, finished) = c.live.read(c.next);
                c.next += events.len();
                let with_id = c.live.resumable;
                c.pending.extend(events.iter().map(|e| e.frame(with_id)));
                if finished {
                    c.done = true;
                    continue;
                }
                if !c.pending.is_empty() {
                    continue;
                }
                match tokio::time::timeout(HEARTBEAT, c.rx.changed()).await {
                    Ok(_) => {}
                    Err(_) => c
                        .pending
                        .push_back(Bytes::from_static(b": heartbeat\r\n\r\n")),
                }
            }
        })
    }
}

/// How long a stream may stay silent before a heartbeat comment.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How many ended runs keep their log (for `join` and `Last-Event-ID` replays).
const KEEP_ENDED: usize = 512;

/// The runs this process knows: every active run, and the latest ended ones.
#[derive(Default)]
pub(crate) struct Lives {
    inner: Mutex<LivesInner>,
}

#[derive(Default)]
struct LivesInner {
    by_run: HashMap<String, Arc<Live>>,
    ended: VecDeque<String>,
}

impl Lives {
    pub(crate) fn insert(&self, live: Arc<Live>) {
        lock(&self.inner).by_run.insert(live.run_id.clone(), live);
    }

    pub(crate) fn get(&self, run_id: &str) -> Option<Arc<Live>> {
        lock(&self.inner).by_run.get(run_id).cloned()
    }

    /// The live of a run, created if this process has none.
    pub(crate) fn ensure(&self, run_id: &str, resumable: bool) -> Arc<Live> {
        lock(&self.inner)
            .by_run
            .entry(run_id.to_owned())
            .or_insert_with(|| Live::new(run_id, resumable))
            .clone()
    }

    /// Notes that a run ended; the oldest ended runs are forgotten.
    pub(crate) fn ended(&self, run_id: &str) {
        let mut inner = lock(&self.inner);
        inner.ended.push_back(run_id.to_owned());
        while inner.ended.len() > KEEP_ENDED {
            if let Some(old) = inner.ended.pop_front() {
                inner.by_run.remove(&old);
            }
        }
    }

    pub(crate) fn remove(&self, run_id: &str) {
        lock(&self.inner).by_run.remove(run_id);
    }
}
