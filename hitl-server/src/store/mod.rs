//! Where threads and runs are recorded, and how pending runs reach a worker.
//!
//! The checkpoints of a thread stay in its graph's own checkpointer; this store keeps
//! what the HTTP API adds on top: thread records (metadata, status), run records
//! (status, arguments, who asked) and the queue of pending runs.
//!
//! - [`RunStore`]: the records. [`SqliteRunStore`] is the default (one file, its own
//!   tables and connection). A Postgres store implements the same trait: every
//!   method is one transaction, and [`RunStore::claim_next`] is the
//!   `SELECT … FOR UPDATE SKIP LOCKED` of a multi-process queue.
//! - [`RunQueue`]: the wake-ups. [`LocalQueue`] is an in-process channel; a Postgres
//!   queue sends `NOTIFY` in [`RunQueue::wake`] and `LISTEN`s in
//!   [`RunQueue::next_wake`].

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_queue;
mod sqlite;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Mutex as AsyncMutex, mpsc};

#[cfg(feature = "postgres")]
pub use postgres::{PostgresRunStore, PostgresStoreBuilder};
#[cfg(feature = "postgres")]
pub use postgres_queue::PostgresQueue;
pub use sqlite::SqliteRunStore;

use crate::auth::Identity;
use crate::error::StoreError;

/// A thread's status, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ThreadStatus {
    /// Nothing pending: never run, or finished.
    Idle,
    /// A run is pending or running.
    Busy,
    /// Paused: at interrupts, at a breakpoint, or after a cancelled run.
    Interrupted,
    /// The last run failed.
    Error,
}

/// A run's status.
///
/// A run that paused at an interrupt ended with [`RunStatus::Success`] (the thread is
/// then `interrupted`); [`RunStatus::Interrupted`] means the run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Waiting for its thread to be free.
    Pending,
    /// Running.
    Running,
    /// Finished, or paused at interrupts or a breakpoint.
    Success,
    /// Failed.
    Error,
    /// Cancelled (`POST …/cancel?action=interrupt`, or a later run's
    /// `multitask_strategy=interrupt`).
    Interrupted,
    /// Ran out of time. Part of the API's vocabulary (clients filter on it); this
    /// server sets no run deadlines yet, so it records none.
    Timeout,
}

/// How a new run treats a thread that already has a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MultitaskStrategy {
    /// Refuse the new run (409).
    Reject,
    /// Run it after the others (the default).
    #[default]
    Enqueue,
    /// Cancel the others, keeping what they did, then run it.
    Interrupt,
    /// Cancel the others and undo what they did, then run it.
    Rollback,
}

macro_rules! string_enum {
    ($ty:ty, $what:literal, $($variant:path => $s:literal),+ $(,)?) => {
        impl $ty {
            /// The name used on the wire and in the store.
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $s,)+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($variant),)+
                    other => Err(format!(
                        concat!("`{}` is not a ", $what, "; expected one of: {}"),
                        other,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(ThreadStatus, "thread status",
    ThreadStatus::Idle => "idle", ThreadStatus::Busy => "busy",
    ThreadStatus::Interrupted => "interrupted", ThreadStatus::Error => "error");
string_enum!(RunStatus, "run status",
    RunStatus::Pending => "pending", RunStatus::Running => "running",
    RunStatus::Success => "success", RunStatus::Error => "error",
    RunStatus::Interrupted => "interrupted", RunStatus::Timeout => "timeout");
string_enum!(MultitaskStrategy, "multitask strategy",
    MultitaskStrategy::Reject => "reject", MultitaskStrategy::Enqueue => "enqueue",
    MultitaskStrategy::Interrupt => "interrupt", MultitaskStrategy::Rollback => "rollback");

impl RunStatus {
    /// Whether the run has not ended yet.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

/// A thread as recorded by the server (its state lives in the graph's checkpointer).
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRecord {
    /// Its id.
    pub thread_id: String,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at: i64,
    /// Last change of the record.
    pub updated_at: i64,
    /// Last change of the state (a run or a state update).
    pub state_updated_at: i64,
    /// The client's metadata, plus `graph_id` and `assistant_id` once it ran.
    pub metadata: Map<String, Value>,
    /// Its status.
    pub status: ThreadStatus,
    /// The last run's error, `{"error": <kind>, "message": <text>}`.
    pub error: Option<Value>,
    /// The graph its state belongs to, once a run or update bound it.
    pub graph_id: Option<String>,
}

impl ThreadRecord {
    /// A new idle thread.
    pub fn new(thread_id: impl Into<String>, metadata: Map<String, Value>) -> Self {
        let now = crate::time::now_us();
        ThreadRecord {
            thread_id: thread_id.into(),
            created_at: now,
            updated_at: now,
            state_updated_at: now,
            metadata,
            status: ThreadStatus::Idle,
            error: None,
            graph_id: None,
        }
    }
}

/// Changes to a thread record, applied atomically by [`RunStore::update_thread`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ThreadUpdate {
    /// Entries merged into the metadata.
    pub metadata: Option<Map<String, Value>>,
    /// A new status.
    pub status: Option<ThreadStatus>,
    /// A new error (`Some(None)` clears it).
    pub error: Option<Option<Value>>,
    /// Binds the thread to a graph.
    pub graph_id: Option<String>,
    /// Whether the state changed (moves `state_updated_at`).
    pub state_changed: bool,
}

impl ThreadUpdate {
    /// Merges metadata.
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the status.
    pub fn status(mut self, status: ThreadStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets or clears the error.
    pub fn error(mut self, error: Option<Value>) -> Self {
        self.error = Some(error);
        self
    }

    /// Binds the thread to a graph.
    pub fn graph(mut self, graph_id: impl Into<String>) -> Self {
        self.graph_id = Some(graph_id.into());
        self
    }

    /// Marks the state as changed.
    pub fn state_changed(mut self) -> Self {
        self.state_changed = true;
        self
    }

    /// Applies the changes to a record.
    pub fn apply(self, thread: &mut ThreadRecord, now: i64) {
        if let Some(m) = self.metadata {
            thread.metadata.extend(m);
        }
        if let Some(s) = self.status {
            thread.status = s;
        }
        if let Some(e) = self.error {
            thread.error = e;
        }
        if let Some(g) = self.graph_id {
            thread.graph_id = Some(g);
        }
        thread.updated_at = now;
        if self.state_changed {
            thread.state_updated_at = now;
        }
    }
}

/// What [`RunStore::create_thread`] does when the id is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IfExists {
    /// Fail with [`StoreError::ThreadExists`].
    #[default]
    Raise,
    /// Return the existing thread unchanged.
    DoNothing,
}

/// How threads are ordered by [`RunStore::search_threads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ThreadSort {
    /// By creation time (the default).
    #[default]
    CreatedAt,
    /// By last change.
    UpdatedAt,
    /// By id.
    ThreadId,
    /// By status.
    Status,
}

/// A thread search.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ThreadQuery {
    /// Only threads whose metadata contains all these entries.
    pub metadata: Map<String, Value>,
    /// Only threads with this status.
    pub status: Option<ThreadStatus>,
    /// Only these ids.
    pub ids: Option<Vec<String>>,
    /// The order.
    pub sort_by: ThreadSort,
    /// Newest (largest) first.
    pub descending: bool,
    /// At most this many.
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
}

impl Default for ThreadQuery {
    fn default() -> Self {
        ThreadQuery {
            metadata: Map::new(),
            status: None,
            ids: None,
            sort_by: ThreadSort::CreatedAt,
            descending: true,
            limit: 10,
            offset: 0,
        }
    }
}

/// Whether `target` contains `filter`, as JSONB containment: objects by their
/// entries, arrays by their elements, scalars by equality.
pub(crate) fn json_contains(target: &Value, filter: &Value) -> bool {
    match (target, filter) {
        (Value::Object(t), Value::Object(f)) => f
            .iter()
            .all(|(k, fv)| t.get(k).is_some_and(|tv| json_contains(tv, fv))),
        (Value::Array(t), Value::Array(f)) => {
            f.iter().all(|fv| t.iter().any(|tv| json_contains(tv, fv)))
        }
        (t, f) => t == f,
    }
}

impl ThreadQuery {
    /// The page this query selects from `threads` (in the query's order, already
    /// filtered by status): ids and metadata filter, then offset and limit; `total`
    /// counts every match.
    pub(crate) fn page(
        &self,
        threads: impl IntoIterator<Item = Result<ThreadRecord, StoreError>>,
    ) -> Result<ThreadPage, StoreError> {
        let mut total = 0;
        let mut page = Vec::new();
        for thread in threads {
            let thread = thread?;
            if self
                .ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(&thread.thread_id))
            {
                continue;
            }
            let matches = self.metadata.iter().all(|(k, filter)| {
                thread
                    .metadata
                    .get(k)
                    .is_some_and(|value| json_contains(value, filter))
            });
            if !matches {
                continue;
            }
            if total >= self.offset && page.len() < self.limit {
                page.push(thread);
            }
            total += 1;
        }
        Ok(ThreadPage {
            threads: page,
            total,
        })
    }
}

/// A page of a thread search.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadPage {
    /// The threads of the page.
    pub threads: Vec<ThreadRecord>,
    /// How many threads match in all.
    pub total: usize,
}

/// A run as recorded by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Its id (a UUIDv7).
    pub run_id: String,
    /// Its thread.
    pub thread_id: String,
    /// The assistant it runs.
    pub assistant_id: String,
    /// The graph of that assistant.
    pub graph_id: String,
    /// The client's metadata plus `graph_id`, `assistant_id` and `identity`.
    pub metadata: Map<String, Value>,
    /// Its status.
    pub status: RunStatus,
    /// What the client asked for (input, command, stream modes, ...), as the API shows it.
    pub kwargs: Value,
    /// How it treats other runs of its thread.
    pub multitask_strategy: MultitaskStrategy,
    /// Who asked for it.
    pub identity: Option<Identity>,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at: i64,
    /// Last status change.
    pub updated_at: i64,
}

/// What [`RunStore::insert_run`] does when the thread already has an active run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IfBusy {
    /// Store nothing: [`Admission::Busy`].
    Reject,
    /// Store the run as pending: [`Admission::Queued`].
    Enqueue,
}

/// The outcome of [`RunStore::insert_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// The thread was free: the run is stored as running and starts now.
    Started,
    /// The thread is busy: the run is stored as pending.
    Queued,
    /// The thread is busy and the run was not stored.
    Busy,
}

/// What [`RunStore::recover`] found left over by a server that stopped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// Runs that were running; now recorded as failed.
    pub failed: Vec<RunRecord>,
    /// Threads with pending runs, to wake.
    pub pending_threads: Vec<String>,
}

/// The records of threads and runs. Each method is atomic.
#[async_trait::async_trait]
pub trait RunStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a new thread; with [`IfExists::DoNothing`], returns the existing one.
    async fn create_thread(
        &self,
        thread: ThreadRecord,
        if_exists: IfExists,
    ) -> Result<ThreadRecord, StoreError>;

    /// A thread.
    async fn get_thread(&self, thread_id: &str) -> Result<Option<ThreadRecord>, StoreError>;

    /// Applies changes to a thread; `None` if it does not exist.
    async fn update_thread(
        &self,
        thread_id: &str,
        update: ThreadUpdate,
    ) -> Result<Option<ThreadRecord>, StoreError>;

    /// Deletes a thread and its runs; whether it existed.
    async fn delete_thread(&self, thread_id: &str) -> Result<bool, StoreError>;

    /// Threads matching a query.
    async fn search_threads(&self, query: &ThreadQuery) -> Result<ThreadPage, StoreError>;

    /// Stores a run: as running if its thread has no pending or running run, else as
    /// pending or not at all (see [`IfBusy`]). The run's own `status` is ignored.
    async fn insert_run(&self, run: &RunRecord, if_busy: IfBusy) -> Result<Admission, StoreError>;

    /// A run of a thread.
    async fn get_run(&self, thread_id: &str, run_id: &str)
    -> Result<Option<RunRecord>, StoreError>;

    /// Runs of a thread, newest first.
    async fn list_runs(
        &self,
        thread_id: &str,
        limit: usize,
        offset: usize,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// The pending and running runs of a thread, oldest first.
    async fn active_runs(&self, thread_id: &str) -> Result<Vec<RunRecord>, StoreError>;

    /// Records a run's new status.
    async fn set_run_status(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError>;

    /// Deletes a run (a rolled-back run leaves no trace).
    async fn delete_run(&self, run_id: &str) -> Result<(), StoreError>;

    /// Marks the oldest pending run of a thread as running and returns it, unless a
    /// run of the thread is already running.
    async fn claim_next(&self, thread_id: &str) -> Result<Option<RunRecord>, StoreError>;

    /// At startup: runs left running by a server that stopped are recorded as failed
    /// (their threads get status `error`); threads with pending runs are listed. A
    /// store shared by several processes fails nothing here: it takes over the runs of
    /// dead processes with [`claim_orphans`](Self::claim_orphans) instead.
    async fn recover(&self) -> Result<Recovery, StoreError>;

    /// How long a run stays claimed by a process that stopped renewing it, for a store
    /// shared by several processes; `None` (the default) for a store one process owns.
    /// The server then renews its runs every third of it and takes over the runs of
    /// processes that stopped.
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }

    /// Extends the lease of every run this process is running.
    async fn renew_leases(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes over the running runs whose lease ran out (their process stopped) and
    /// returns them, to be continued from their thread's last checkpoint.
    async fn claim_orphans(&self) -> Result<Vec<RunRecord>, StoreError> {
        Ok(Vec::new())
    }
}

/// Wakes workers when a thread may have a run to start.
#[async_trait::async_trait]
pub trait RunQueue: Send + Sync + fmt::Debug + 'static {
    /// A run of `thread_id` was queued, or one ended: its next pending run may start.
    async fn wake(&self, thread_id: &str) -> Result<(), StoreError>;

    /// Waits for the next wake-up; `None` when the queue is closed.
    async fn next_wake(&self) -> Option<String>;
}

/// The in-process [`RunQueue`]: a channel from the handlers to the server's worker.
pub struct LocalQueue {
    tx: mpsc::UnboundedSender<String>,
    rx: AsyncMutex<mpsc::UnboundedReceiver<String>>,
}

impl LocalQueue {
    /// An empty queue.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        LocalQueue {
            tx,
            rx: AsyncMutex::new(rx),
        }
    }
}

impl Default for LocalQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalQueue").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl RunQueue for LocalQueue {
    async fn wake(&self, thread_id: &str) -> Result<(), StoreError> {
        // The receiver lives as long as the queue.
        let _ = self.tx.send(thread_id.to_owned());
        Ok(())
    }

    async fn next_wake(&self) -> Option<String> {
        self.rx.lock().await.recv().await
    }
}

/// Where the server keeps its records: pass it to
/// [`ServerBuilder::store`](crate::ServerBuilder::store).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) kind: StoreKind,
}

#[derive(Debug, Clone)]
pub(crate) enum StoreKind {
    Sqlite(PathBuf),
    Memory,
    Custom(Arc<dyn RunStore>, Arc<dyn RunQueue>),
}

impl Store {
    /// A SQLite file (created if missing), with an in-process queue. The default is
    /// `hitl-server.db` in the current directory.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Store {
            kind: StoreKind::Sqlite(path.into()),
        }
    }

    /// An in-memory SQLite database: records are lost when the server stops (tests,
    /// demos).
    pub fn in_memory() -> Self {
        Store {
            kind: StoreKind::Memory,
        }
    }

    /// Your own record store and queue.
    pub fn custom(store: Arc<dyn RunStore>, queue: Arc<dyn RunQueue>) -> Self {
        Store {
            kind: StoreKind::Custom(store, queue),
        }
    }

    pub(crate) fn open(self) -> Result<Opened, StoreError> {
        let local = || -> Arc<dyn RunQueue> { Arc::new(LocalQueue::new()) };
        Ok(match self.kind {
            StoreKind::Sqlite(path) => Opened {
                store: Arc::new(SqliteRunStore::open(path)?),
                queue: local(),
            },
            StoreKind::Memory => Opened {
                store: Arc::new(SqliteRunStore::open_in_memory()?),
                queue: local(),
            },
            StoreKind::Custom(store, queue) => Opened { store, queue },
        })
    }
}

/// An opened store and its queue.
pub(crate) struct Opened {
    pub(crate) store: Arc<dyn RunStore>,
    pub(crate) queue: Arc<dyn RunQueue>,
}

impl Default for Store {
    fn default() -> Self {
        Store::sqlite("hitl-server.db")
    }
}
