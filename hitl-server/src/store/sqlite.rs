//! The default [`RunStore`]: SQLite, one connection, its own tables.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{
    Admission, IfBusy, IfExists, Recovery, RunRecord, RunStatus, RunStore, ThreadPage, ThreadQuery,
    ThreadRecord, ThreadSort, ThreadStatus, ThreadUpdate,
};
use crate::error::StoreError;

/// The schema version this build writes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hitl_server_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hitl_server_threads (
    thread_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    state_updated_at INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    graph_id TEXT
);
CREATE TABLE IF NOT EXISTS hitl_server_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    thread_id TEXT NOT NULL,
    assistant_id TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    multitask_strategy TEXT NOT NULL,
    identity TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS hitl_server_runs_by_thread ON hitl_server_runs (thread_id, status);
";

const THREAD_COLUMNS: &str =
    "thread_id, created_at, updated_at, state_updated_at, metadata, status, error, graph_id";
const RUN_COLUMNS: &str = "run_id, thread_id, assistant_id, graph_id, metadata, status, kwargs, \
     multitask_strategy, identity, created_at, updated_at";

/// Threads and runs in a SQLite database (a file, or in memory).
pub struct SqliteRunStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRunStore").finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn corrupt(what: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: message.to_string(),
    }
}

impl SqliteRunStore {
    /// Opens (creating if needed) a database file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        // Commits survive a crash of the process (WAL) without waiting for the disk;
        // a run's final status is written with `synchronous = FULL`, which also makes
        // every earlier commit durable (one fsync per run, as the SQLite saver).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        Self::init(conn)
    }

    /// An in-memory database.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        let found: Option<i64> = conn
            .query_row(
                "SELECT value FROM hitl_server_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT INTO hitl_server_meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(backend)?;
            }
        }
        Ok(SqliteRunStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction behind
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn json_text(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt("a record to store", e))
}

fn thread_of(r: &Row<'_>) -> rusqlite::Result<RawThread> {
    Ok(RawThread {
        thread_id: r.get(0)?,
        created_at: r.get(1)?,
        updated_at: r.get(2)?,
        state_updated_at: r.get(3)?,
        metadata: r.get(4)?,
        status: r.get(5)?,
        error: r.get(6)?,
        graph_id: r.get(7)?,
    })
}

struct RawThread {
    thread_id: String,
    created_at: i64,
    updated_at: i64,
    state_updated_at: i64,
    metadata: String,
    status: String,
    error: Option<String>,
    graph_id: Option<String>,
}

impl RawThread {
    fn decode(self) -> Result<ThreadRecord, StoreError> {
        let what = format!("thread {}", self.thread_id);
        Ok(ThreadRecord {
            metadata: serde_json::from_str(&self.metadata).map_err(|e| corrupt(&what, e))?,
            status: self.status.parse().map_err(|e| corrupt(&what, e))?,
            error: self
                .error
                .map(|e| serde_json::from_str(&e))
                .transpose()
                .map_err(|e| corrupt(&what, e))?,
            thread_id: self.thread_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            state_updated_at: self.state_updated_at,
            graph_id: self.graph_id,
        })
    }
}

struct RawRun {
    run_id: String,
    thread_id: String,
    assistant_id: String,
    graph_id: String,
    metadata: String,
    status: String,
    kwargs: String,
    multitask_strategy: String,
    identity: Option<String>,
    created_at: i64,
    updated_at: i64,
}

fn run_of(r: &Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        run_id: r.get(0)?,
        thread_id: r.get(1)?,
        assistant_id: r.get(2)?,
        graph_id: r.get(3)?,
        metadata: r.get(4)?,
        status: r.get(5)?,
        kwargs: r.get(6)?,
        multitask_strategy: r.get(7)?,
        identity: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

impl RawRun {
    fn decode(self) -> Result<RunRecord, StoreError> {
        let what = format!("run {}", self.run_id);
        let bad = |e: &dyn std::fmt::Display| corrupt(&what, e);
        Ok(RunRecord {
            metadata: serde_json::from_str(&self.metadata).map_err(|e| bad(&e))?,
            status: self.status.parse().map_err(|e: String| bad(&e))?,
            kwargs: serde_json::from_str(&self.kwargs).map_err(|e| bad(&e))?,
            multitask_strategy: self
                .multitask_strategy
                .parse()
                .map_err(|e: String| bad(&e))?,
            identity: self
                .identity
                .map(|i| serde_json::from_str(&i))
                .transpose()
                .map_err(|e| bad(&e))?,
            run_id: self.run_id,
            thread_id: self.thread_id,
            assistant_id: self.assistant_id,
            graph_id: self.graph_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn get_thread(conn: &Connection, thread_id: &str) -> Result<Option<ThreadRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {THREAD_COLUMNS} FROM hitl_server_threads WHERE thread_id = ?1"),
        [thread_id],
        thread_of,
    )
    .optional()
    .map_err(backend)?
    .map(RawThread::decode)
    .transpose()
}

fn put_thread(conn: &Connection, t: &ThreadRecord) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO hitl_server_threads ({THREAD_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            t.thread_id,
            t.created_at,
            t.updated_at,
            t.state_updated_at,
            json_text(&t.metadata)?,
            t.status.as_str(),
            t.error.as_ref().map(json_text).transpose()?,
            t.graph_id,
        ],
    )
    .map_err(backend)?;
    Ok(())
}

fn runs_where(
    conn: &Connection,
    clause: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<RunRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM hitl_server_runs WHERE {clause}"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map(args, run_of).map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(backend)?.decode()?);
    }
    Ok(out)
}

fn set_status(conn: &Connection, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE hitl_server_runs SET status = ?2, updated_at = ?3 WHERE run_id = ?1",
        params![run_id, status.as_str(), crate::time::now_us()],
    )
    .map_err(backend)?;
    Ok(())
}

#[async_trait::async_trait]
impl RunStore for SqliteRunStore {
    async fn create_thread(
        &self,
        thread: ThreadRecord,
        if_exists: IfExists,
    ) -> Result<ThreadRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        if let Some(existing) = get_thread(&tx, &thread.thread_id)? {
            return match if_exists {
                IfExists::DoNothing => Ok(existing),
                IfExists::Raise => Err(StoreError::ThreadExists {
                    thread: thread.thread_id,
                }),
            };
        }
        put_thread(&tx, &thread)?;
        tx.commit().map_err(backend)?;
        Ok(thread)
    }

    async fn get_thread(&self, thread_id: &str) -> Result<Option<ThreadRecord>, StoreError> {
        get_thread(&self.lock(), thread_id)
    }

    async fn update_thread(
        &self,
        thread_id: &str,
        update: ThreadUpdate,
    ) -> Result<Option<ThreadRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let Some(mut thread) = get_thread(&tx, thread_id)? else {
            return Ok(None);
        };
        update.apply(&mut thread, crate::time::now_us());
        put_thread(&tx, &thread)?;
        tx.commit().map_err(backend)?;
        Ok(Some(thread))
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute(
            "DELETE FROM hitl_server_runs WHERE thread_id = ?1",
            [thread_id],
        )
        .map_err(backend)?;
        let n = tx
            .execute(
                "DELETE FROM hitl_server_threads WHERE thread_id = ?1",
                [thread_id],
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(n > 0)
    }

    async fn search_threads(&self, query: &ThreadQuery) -> Result<ThreadPage, StoreError> {
        let conn = self.lock();
        let column = match query.sort_by {
            ThreadSort::CreatedAt => "created_at",
            ThreadSort::UpdatedAt => "updated_at",
            ThreadSort::ThreadId => "thread_id",
            ThreadSort::Status => "status",
        };
        let order = if query.descending { "DESC" } else { "ASC" };
        let mut sql = format!("SELECT {THREAD_COLUMNS} FROM hitl_server_threads");
        let mut args: Vec<String> = Vec::new();
        if let Some(status) = query.status {
            sql.push_str(" WHERE status = ?1");
            args.push(status.as_str().to_owned());
        }
        sql.push_str(&format!(" ORDER BY {column} {order}, thread_id {order}"));
        let mut stmt = conn.prepare(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), thread_of)
            .map_err(backend)?;
        let threads = rows.map(|row| row.map_err(backend)?.decode());
        query.page(threads)
    }

    async fn insert_run(&self, run: &RunRecord, if_busy: IfBusy) -> Result<Admission, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let busy: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM hitl_server_runs WHERE thread_id = ?1 \
                 AND status IN ('pending', 'running'))",
                [&run.thread_id],
                |r| r.get(0),
            )
            .map_err(backend)?;
        let (admission, status) = match (busy, if_busy) {
            (false, _) => (Admission::Started, RunStatus::Running),
            (true, IfBusy::Enqueue) => (Admission::Queued, RunStatus::Pending),
            (true, IfBusy::Reject) => return Ok(Admission::Busy),
        };
        tx.execute(
            &format!(
                "INSERT INTO hitl_server_runs ({RUN_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                run.run_id,
                run.thread_id,
                run.assistant_id,
                run.graph_id,
                json_text(&run.metadata)?,
                status.as_str(),
                json_text(&run.kwargs)?,
                run.multitask_strategy.as_str(),
                run.identity.as_ref().map(json_text).transpose()?,
                run.created_at,
                run.updated_at,
            ],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(admission)
    }

    async fn get_run(
        &self,
        thread_id: &str,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        Ok(runs_where(
            &self.lock(),
            "thread_id = ?1 AND run_id = ?2",
            &[&thread_id, &run_id],
        )?
        .pop())
    }

    async fn list_runs(
        &self,
        thread_id: &str,
        limit: usize,
        offset: usize,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let status = status.map(RunStatus::as_str);
        runs_where(
            &self.lock(),
            "thread_id = ?1 AND (?4 IS NULL OR status = ?4) ORDER BY seq DESC LIMIT ?2 OFFSET ?3",
            &[&thread_id, &limit, &offset, &status],
        )
    }

    async fn active_runs(&self, thread_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        runs_where(
            &self.lock(),
            "thread_id = ?1 AND status IN ('pending', 'running') ORDER BY seq",
            &[&thread_id],
        )
    }

    async fn set_run_status(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
        let conn = self.lock();
        if status.is_active() {
            return set_status(&conn, run_id, status);
        }
        // A run's end is durable when this returns, and with it what came before.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        let result = set_status(&conn, run_id, status);
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        result
    }

    async fn delete_run(&self, run_id: &str) -> Result<(), StoreError> {
        self.lock()
            .execute("DELETE FROM hitl_server_runs WHERE run_id = ?1", [run_id])
            .map_err(backend)?;
        Ok(())
    }

    async fn claim_next(&self, thread_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let running: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM hitl_server_runs WHERE thread_id = ?1 \
                 AND status = 'running')",
                [thread_id],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if running {
            return Ok(None);
        }
        let Some(mut run) = runs_where(
            &tx,
            "thread_id = ?1 AND status = 'pending' ORDER BY seq LIMIT 1",
            &[&thread_id],
        )?
        .pop() else {
            return Ok(None);
        };
        set_status(&tx, &run.run_id, RunStatus::Running)?;
        tx.commit().map_err(backend)?;
        run.status = RunStatus::Running;
        Ok(Some(run))
    }

    async fn recover(&self) -> Result<Recovery, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let failed = runs_where(&tx, "status = 'running' ORDER BY seq", &[])?;
        let now = crate::time::now_us();
        for run in &failed {
            set_status(&tx, &run.run_id, RunStatus::Error)?;
            if let Some(mut thread) = get_thread(&tx, &run.thread_id)? {
                let error = serde_json::json!({
                    "error": "ServerStopped",
                    "message": format!(
                        "the server stopped while run {} was running; continue the thread with a run whose input is null",
                        run.run_id
                    ),
                });
                ThreadUpdate::default()
                    .status(ThreadStatus::Error)
                    .error(Some(error))
                    .apply(&mut thread, now);
                put_thread(&tx, &thread)?;
            }
        }
        let mut stmt = tx
            .prepare(
                "SELECT DISTINCT thread_id FROM hitl_server_runs WHERE status = 'pending' ORDER BY thread_id",
            )
            .map_err(backend)?;
        let pending_threads = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        drop(stmt);
        tx.commit().map_err(backend)?;
        Ok(Recovery {
            failed,
            pending_threads,
        })
    }
}
