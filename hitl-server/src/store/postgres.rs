//! Records and queue on Postgres, shared by many server processes.
//!
//! Each process has an owner id. A run it starts carries that id and a lease in the
//! database clock, renewed while the process lives; a run whose lease ran out (its
//! process died) is taken over by another process and continued from its thread's last
//! checkpoint. Queued runs are claimed with `FOR UPDATE SKIP LOCKED`; `NOTIFY` wakes
//! the processes when a run is queued or ends, so a queued run starts in milliseconds.
//! Admission on a thread is serialized by a transaction-scoped advisory lock.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Row};

use super::postgres_queue::PostgresQueue;
use super::{
    Admission, IfBusy, IfExists, Recovery, RunRecord, RunStatus, RunStore, Store, ThreadPage,
    ThreadQuery, ThreadRecord, ThreadSort, ThreadUpdate,
};
use crate::error::StoreError;

pub(super) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn corrupt(what: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: message.to_string(),
    }
}

/// The database clock in microseconds since the Unix epoch.
const NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

const THREAD_COLUMNS: &str =
    "thread_id, created_at, updated_at, state_updated_at, metadata, status, error, graph_id";
const RUN_COLUMNS: &str = "run_id, thread_id, assistant_id, graph_id, metadata, status, kwargs, \
     multitask_strategy, identity, created_at, updated_at";

/// How to reach the Postgres store: [`Store::postgres`].
#[derive(Debug, Clone)]
#[must_use = "call `.connect().await` to open the store"]
pub struct PostgresStoreBuilder {
    url: String,
    schema: Option<String>,
    lease: Duration,
}

impl PostgresStoreBuilder {
    /// The schema the tables live in (created if missing; default: the connection's
    /// `search_path`, usually `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// How long a run stays claimed by a process that stopped renewing it (it renews
    /// every third of it) before another process takes it over. Default 30 s. Keep it
    /// at least as long as the graphs' run lease
    /// ([`CompileBuilder::run_lease`](hitl_runtime::CompileBuilder::run_lease)), so the
    /// thread is free when the run is taken over.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Connects, creates the tables if needed, and starts listening for wake-ups.
    ///
    /// # Errors
    /// If the database cannot be reached or the schema cannot be created.
    pub async fn connect(self) -> Result<Store, StoreError> {
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(backend)?;
        if let Some(schema) = &self.schema {
            config.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(backend)?;
        let client = pool.get().await.map_err(backend)?;
        let create_schema = self
            .schema
            .as_ref()
            .map(|s| {
                format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{}\";",
                    s.replace('"', "\"\"")
                )
            })
            .unwrap_or_default();
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_lock(726147); {create_schema} {SCHEMA} SELECT pg_advisory_unlock(726147);"
            ))
            .await
            .map_err(backend)?;
        drop(client);
        let queue = PostgresQueue::listen(config, pool.clone()).await?;
        let lease_us = i64::try_from(self.lease.as_micros()).unwrap_or(i64::MAX);
        let store = PostgresRunStore {
            pool,
            owner: uuid::Uuid::now_v7().to_string(),
            lease: self.lease,
            lease_us,
        };
        Ok(Store::custom(
            std::sync::Arc::new(store),
            std::sync::Arc::new(queue),
        ))
    }
}

impl Store {
    /// Postgres, for many server processes sharing one database: records, a run queue
    /// (`FOR UPDATE SKIP LOCKED`, `LISTEN`/`NOTIFY`) and run leases, so a run whose
    /// process died is continued by another. Use the same database for the graphs'
    /// checkpoints (`PostgresSaver`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = hitl_server::Store::postgres("postgres://localhost/app").connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn postgres(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: None,
            lease: Duration::from_secs(30),
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hitl_server_threads (
    thread_id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    state_updated_at BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    graph_id TEXT
);
CREATE TABLE IF NOT EXISTS hitl_server_runs (
    seq BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    thread_id TEXT NOT NULL,
    assistant_id TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    multitask_strategy TEXT NOT NULL,
    identity TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    owner TEXT,
    lease_until BIGINT
);
CREATE INDEX IF NOT EXISTS hitl_server_runs_by_thread ON hitl_server_runs (thread_id, status);
CREATE INDEX IF NOT EXISTS hitl_server_runs_by_status ON hitl_server_runs (status, lease_until);
";

/// Threads and runs in Postgres ([`Store::postgres`]).
pub struct PostgresRunStore {
    pool: Pool,
    owner: String,
    lease: Duration,
    lease_us: i64,
}

impl std::fmt::Debug for PostgresRunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRunStore")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

fn json_text(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt("a record to store", e))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    what: &str,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| corrupt(what, e))
}

fn thread_of(row: &Row) -> Result<ThreadRecord, StoreError> {
    let thread_id: String = get(row, 0, "a thread")?;
    let what = format!("thread {thread_id}");
    let metadata: String = get(row, 4, &what)?;
    let status: String = get(row, 5, &what)?;
    let error: Option<String> = get(row, 6, &what)?;
    Ok(ThreadRecord {
        created_at: get(row, 1, &what)?,
        updated_at: get(row, 2, &what)?,
        state_updated_at: get(row, 3, &what)?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt(&what, e))?,
        status: status.parse().map_err(|e| corrupt(&what, e))?,
        error: error
            .map(|e| serde_json::from_str(&e))
            .transpose()
            .map_err(|e| corrupt(&what, e))?,
        graph_id: get(row, 7, &what)?,
        thread_id,
    })
}

fn run_of(row: &Row) -> Result<RunRecord, StoreError> {
    let run_id: String = get(row, 0, "a run")?;
    let what = format!("run {run_id}");
    let bad = |e: &dyn std::fmt::Display| corrupt(&what, e);
    let metadata: String = get(row, 4, &what)?;
    let status: String = get(row, 5, &what)?;
    let kwargs: String = get(row, 6, &what)?;
    let strategy: String = get(row, 7, &what)?;
    let identity: Option<String> = get(row, 8, &what)?;
    Ok(RunRecord {
        thread_id: get(row, 1, &what)?,
        assistant_id: get(row, 2, &what)?,
        graph_id: get(row, 3, &what)?,
        metadata: serde_json::from_str(&metadata).map_err(|e| bad(&e))?,
        status: status.parse().map_err(|e: String| bad(&e))?,
        kwargs: serde_json::from_str(&kwargs).map_err(|e| bad(&e))?,
        multitask_strategy: strategy.parse().map_err(|e: String| bad(&e))?,
        identity: identity
            .map(|i| serde_json::from_str(&i))
            .transpose()
            .map_err(|e| bad(&e))?,
        created_at: get(row, 9, &what)?,
        updated_at: get(row, 10, &what)?,
        run_id,
    })
}

async fn get_thread(
    client: &impl GenericClient,
    thread_id: &str,
) -> Result<Option<ThreadRecord>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {THREAD_COLUMNS} FROM hitl_server_threads WHERE thread_id = $1"),
            &[&thread_id],
        )
        .await
        .map_err(backend)?;
    row.as_ref().map(thread_of).transpose()
}

async fn put_thread(client: &impl GenericClient, t: &ThreadRecord) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "INSERT INTO hitl_server_threads ({THREAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (thread_id) DO UPDATE SET created_at = $2, updated_at = $3, \
                 state_updated_at = $4, metadata = $5, status = $6, error = $7, graph_id = $8"
            ),
            &[
                &t.thread_id,
                &t.created_at,
                &t.updated_at,
                &t.state_updated_at,
                &json_text(&t.metadata)?,
                &t.status.as_str(),
                &t.error.as_ref().map(json_text).transpose()?,
                &t.graph_id,
            ],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

async fn runs_where(
    client: &impl GenericClient,
    clause: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<RunRecord>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {RUN_COLUMNS} FROM hitl_server_runs WHERE {clause}"),
            args,
        )
        .await
        .map_err(backend)?;
    rows.iter().map(run_of).collect()
}

/// Serializes admission on one thread across processes, until the transaction ends.
async fn lock_thread(client: &impl GenericClient, thread_id: &str) -> Result<(), StoreError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(726148, hashtext($1))",
            &[&thread_id],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

impl PostgresRunStore {
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(backend)
    }
}

#[async_trait::async_trait]
impl RunStore for PostgresRunStore {
    async fn create_thread(
        &self,
        thread: ThreadRecord,
        if_exists: IfExists,
    ) -> Result<ThreadRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        lock_thread(&tx, &thread.thread_id).await?;
        if let Some(existing) = get_thread(&tx, &thread.thread_id).await? {
            return match if_exists {
                IfExists::DoNothing => Ok(existing),
                IfExists::Raise => Err(StoreError::ThreadExists {
                    thread: thread.thread_id,
                }),
            };
        }
        put_thread(&tx, &thread).await?;
        tx.commit().await.map_err(backend)?;
        Ok(thread)
    }

    async fn get_thread(&self, thread_id: &str) -> Result<Option<ThreadRecord>, StoreError> {
        get_thread(&self.client().await?, thread_id).await
    }

    async fn update_thread(
        &self,
        thread_id: &str,
        update: ThreadUpdate,
    ) -> Result<Option<ThreadRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {THREAD_COLUMNS} FROM hitl_server_threads WHERE thread_id = $1 FOR UPDATE"
                ),
                &[&thread_id],
            )
            .await
            .map_err(backend)?;
        let Some(mut thread) = row.as_ref().map(thread_of).transpose()? else {
            return Ok(None);
        };
        update.apply(&mut thread, crate::time::now_us());
        put_thread(&tx, &thread).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(thread))
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute(
            "DELETE FROM hitl_server_runs WHERE thread_id = $1",
            &[&thread_id],
        )
        .await
        .map_err(backend)?;
        let n = tx
            .execute(
                "DELETE FROM hitl_server_threads WHERE thread_id = $1",
                &[&thread_id],
            )
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn search_threads(&self, query: &ThreadQuery) -> Result<ThreadPage, StoreError> {
        let column = match query.sort_by {
            ThreadSort::CreatedAt => "created_at",
            ThreadSort::UpdatedAt => "updated_at",
            ThreadSort::ThreadId => "thread_id",
            ThreadSort::Status => "status",
        };
        let order = if query.descending { "DESC" } else { "ASC" };
        let status = query.status.map(super::ThreadStatus::as_str);
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {THREAD_COLUMNS} FROM hitl_server_threads \
                     WHERE ($1::text IS NULL OR status = $1) \
                     ORDER BY {column} {order}, thread_id {order}"
                ),
                &[&status],
            )
            .await
            .map_err(backend)?;
        query.page(rows.iter().map(thread_of))
    }

    async fn insert_run(&self, run: &RunRecord, if_busy: IfBusy) -> Result<Admission, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        lock_thread(&tx, &run.thread_id).await?;
        let busy: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM hitl_server_runs WHERE thread_id = $1 \
                 AND status IN ('pending', 'running'))",
                &[&run.thread_id],
            )
            .await
            .map_err(backend)?
            .get(0);
        let (admission, status) = match (busy, if_busy) {
            (false, _) => (Admission::Started, RunStatus::Running),
            (true, IfBusy::Enqueue) => (Admission::Queued, RunStatus::Pending),
            (true, IfBusy::Reject) => return Ok(Admission::Busy),
        };
        let owned = (status == RunStatus::Running).then_some(self.owner.as_str());
        tx.execute(
            &format!(
                "INSERT INTO hitl_server_runs ({RUN_COLUMNS}, owner, lease_until) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 CASE WHEN $12::text IS NULL THEN NULL ELSE {NOW_US} + $13 END)"
            ),
            &[
                &run.run_id,
                &run.thread_id,
                &run.assistant_id,
                &run.graph_id,
                &json_text(&run.metadata)?,
                &status.as_str(),
                &json_text(&run.kwargs)?,
                &run.multitask_strategy.as_str(),
                &run.identity.as_ref().map(json_text).transpose()?,
                &run.created_at,
                &run.updated_at,
                &owned,
                &self.lease_us,
            ],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(admission)
    }

    async fn get_run(
        &self,
        thread_id: &str,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        Ok(runs_where(
            &self.client().await?,
            "thread_id = $1 AND run_id = $2",
            &[&thread_id, &run_id],
        )
        .await?
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
            &self.client().await?,
            "thread_id = $1 AND ($4::text IS NULL OR status = $4) ORDER BY seq DESC LIMIT $2 OFFSET $3",
            &[&thread_id, &limit, &offset, &status],
        )
        .await
    }

    async fn active_runs(&self, thread_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        runs_where(
            &self.client().await?,
            "thread_id = $1 AND status IN ('pending', 'running') ORDER BY seq",
            &[&thread_id],
        )
        .await
    }

    async fn set_run_status(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE hitl_server_runs SET status = $2, updated_at = $3 WHERE run_id = $1",
                &[&run_id, &status.as_str(), &crate::time::now_us()],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete_run(&self, run_id: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("DELETE FROM hitl_server_runs WHERE run_id = $1", &[&run_id])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn claim_next(&self, thread_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        lock_thread(&tx, thread_id).await?;
        let rows = tx
            .query(
                &format!(
                    "UPDATE hitl_server_runs SET status = 'running', owner = $2, \
                     lease_until = {NOW_US} + $3, updated_at = $4 \
                     WHERE seq = (SELECT seq FROM hitl_server_runs WHERE thread_id = $1 \
                                  AND status = 'pending' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     AND NOT EXISTS (SELECT 1 FROM hitl_server_runs WHERE thread_id = $1 \
                                     AND status = 'running') \
                     RETURNING {RUN_COLUMNS}"
                ),
                &[
                    &thread_id,
                    &self.owner,
                    &self.lease_us,
                    &crate::time::now_us(),
                ],
            )
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        rows.first().map(run_of).transpose()
    }

    /// Runs left running belong to other processes (alive, or to be taken over when
    /// their lease runs out): nothing fails here. Threads with queued runs and no
    /// running one are listed, to wake.
    async fn recover(&self) -> Result<Recovery, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT p.thread_id FROM hitl_server_runs p WHERE p.status = 'pending' \
                 AND NOT EXISTS (SELECT 1 FROM hitl_server_runs r WHERE r.thread_id = p.thread_id \
                                 AND r.status = 'running') ORDER BY p.thread_id",
                &[],
            )
            .await
            .map_err(backend)?;
        Ok(Recovery {
            failed: Vec::new(),
            pending_threads: rows.iter().map(|r| r.get(0)).collect(),
        })
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    async fn renew_leases(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                &format!(
                    "UPDATE hitl_server_runs SET lease_until = {NOW_US} + $2 \
                     WHERE owner = $1 AND status = 'running'"
                ),
                &[&self.owner, &self.lease_us],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn claim_orphans(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "UPDATE hitl_server_runs SET owner = $1, lease_until = {NOW_US} + $2 \
                     WHERE seq IN (SELECT seq FROM hitl_server_runs WHERE status = 'running' \
                                   AND lease_until < {NOW_US} ORDER BY seq FOR UPDATE SKIP LOCKED) \
                     RETURNING {RUN_COLUMNS}"
                ),
                &[&self.owner, &self.lease_us],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(run_of).collect()
    }
}
