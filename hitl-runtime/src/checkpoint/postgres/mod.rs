//! The Postgres checkpointer (feature `postgres`): for production, many workers.

mod builder;
mod failure;
mod rows;
mod schema;
mod sql;
mod writes;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::NoTls;

use super::rows::{blob_sum, decode_checkpoint, inbox, parse_id, record_sum};
use super::{
    BlobKind, Checkpoint, CheckpointWrite, Checkpointer, DecisionEntry, DecisionRecord, ListFilter,
    PendingThread, PendingWrite, Prune, RecordQuery, StoredCheckpoint, WriteMode, needed_blobs,
    prune_keep_set,
};
use crate::error::CheckpointError;
use crate::ids::CheckpointId;
pub use builder::PostgresSaverBuilder;
use failure::backend;
use rows::{decode_blobs, decode_writes, write_columns};
use sql::{MIGRATIONS, Sql};

/// When writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PgDurability {
    /// Each write is committed without waiting for the WAL to reach the disk, and a
    /// run waits for the disk before it returns (the default). Committed writes are
    /// visible to every worker at once and survive a crash of this process; if the
    /// database server itself crashes mid-run, that run's newest steps may be lost,
    /// never a run that has returned.
    #[default]
    RunEnd,
    /// Each write waits for the disk before it returns (Postgres' default for every
    /// commit).
    EveryWrite,
}

/// Stores threads in Postgres. Several worker processes can share one database: a
/// thread paused by one worker can be resumed by another, and the head of each thread
/// moves by compare-and-set, so two workers never fork it silently.
///
/// ```no_run
/// # use hitl_runtime::{tool, tools, Command, Message, RunConfig, ToolError};
/// # use hitl_runtime::agent::{create_agent, HumanInTheLoop, ChatModel};
/// # /// Delete a file.
/// # #[tool(interrupt(allowed = [approve, reject]))]
/// # async fn delete_file(path: String) -> Result<String, ToolError> { Ok(path) }
/// # async fn worker(model: impl ChatModel) -> Result<(), Box<dyn std::error::Error>> {
/// use hitl_runtime::checkpoint::{PgDurability, PostgresSaver};
///
/// // Connects and runs the migrations.
/// let saver = PostgresSaver::builder("postgres://app@db/app")
///     .schema("agents")                      // default `public`
///     .pool_size(16)                         // default 8
///     .durability(PgDurability::RunEnd)      // the default
///     .connect()
///     .await?;
/// let agent = create_agent(model)
///     .tools(tools![delete_file])
///     .middleware(HumanInTheLoop::from_tools())
///     .checkpointer(saver)
///     .build()?;
///
/// // Worker A pauses the thread; worker B, another process on the same database,
/// // resumes it. A second runner of a busy thread gets `RunError::ThreadBusy`.
/// let cfg = RunConfig::thread("ticket-7");
/// agent.invoke(Message::user("Delete old.txt"), &cfg).await?;
/// agent.invoke(Command::resume(serde_json::json!({"decisions": [{"type": "approve"}]})), &cfg).await?;
/// # Ok(()) }
/// ```
///
/// Or simply `PostgresSaver::connect(url).await?` with the defaults.
#[derive(Clone)]
pub struct PostgresSaver {
    pool: Pool,
    schema: Arc<str>,
    sql: Arc<Sql>,
    durability: PgDurability,
    dirty: Arc<AtomicBool>,
}

impl fmt::Debug for PostgresSaver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSaver")
            .field("schema", &self.schema)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl PostgresSaver {
    /// Connects to `url` (`postgres://user@host/db`) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, CheckpointError> {
        Self::builder(url).connect().await
    }

    /// Settings for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> PostgresSaverBuilder {
        PostgresSaverBuilder {
            url: url.into(),
            schema: "public".into(),
            pool_size: 8,
            durability: PgDurability::RunEnd,
        }
    }

    /// A saver on your own pool (for TLS, custom settings). Call [`setup`](Self::setup)
    /// once before using it. With [`PgDurability::RunEnd`], the pool's connections
    /// should set `synchronous_commit = off`, or every write waits for the disk.
    pub fn from_pool(
        pool: Pool,
        schema: &str,
        durability: PgDurability,
    ) -> Result<Self, CheckpointError> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(CheckpointError::Backend(
                format!(
                    "`{schema}` is not a usable schema name: use lowercase letters, digits and `_`"
                )
                .into(),
            ));
        }
        let instance = uuid::Uuid::now_v7().simple().to_string();
        let quoted = format!("\"{schema}\"");
        let mut sql = Sql::new(&quoted);
        sql.flush = sql.flush.replace("{i}", &instance);
        Ok(PostgresSaver {
            pool,
            schema: quoted.into(),
            sql: Arc::new(sql),
            durability,
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The schema version this build writes.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        self.schema.trim_matches('"')
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, CheckpointError> {
        self.pool.get().await.map_err(backend)
    }

    fn wrote(&self) {
        if self.durability == PgDurability::RunEnd {
            self.dirty.store(true, Ordering::Release);
        }
    }
}

#[async_trait::async_trait]
impl Checkpointer for PostgresSaver {
    async fn get(
        &self,
        thread: &str,
        ns: &str,
        id: Option<CheckpointId>,
        have: Option<CheckpointId>,
    ) -> Result<Option<StoredCheckpoint>, CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.get)
            .await
            .map_err(backend)?;
        let asked = id.map(|i| i.to_string());
        let have = have.map(|i| i.to_string());
        let Some(row) = client
            .query_opt(&stmt, &[&thread, &ns, &asked, &have])
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let Some(id): Option<String> = row.try_get(0).map_err(backend)? else {
            // No such checkpoint. Asked for the head: a head that names a checkpoint
            // that is not there is damage, not a missing thread.
            let target: Option<String> = row.try_get(5).map_err(backend)?;
            return match (asked.is_none(), target) {
                (true, Some(head)) => Err(CheckpointError::corrupt(
                    thread,
                    format!(
                        "the head of namespace `{ns}` names checkpoint `{head}`, which is not stored"
                    ),
                )),
                _ => Ok(None),
            };
        };
        let record: String = row.try_get(1).map_err(backend)?;
        let blobs: String = row.try_get(2).map_err(backend)?;
        let writes: String = row.try_get(3).map_err(backend)?;
        let sum: Option<i64> = row.try_get(4).map_err(backend)?;
        Ok(Some(StoredCheckpoint {
            checkpoint: Arc::new(decode_checkpoint(thread, ns, &record, sum)?),
            blobs: decode_blobs(thread, ns, &blobs)?,
            writes: decode_writes(thread, ns, &id, &writes)?,
        }))
    }

    async fn head(&self, thread: &str, ns: &str) -> Result<Option<CheckpointId>, CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.head)
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&stmt, &[&thread, &ns])
            .await
            .map_err(backend)?;
        row.map(|r| {
            parse_id(
                thread,
                "the head",
                &r.try_get::<_, String>(0).map_err(backend)?,
            )
        })
        .transpose()
    }

    async fn put(&self, write: CheckpointWrite) -> Result<(), CheckpointError> {
        let record = serde_json::to_string(&*write.checkpoint).map_err(
            CheckpointError::decoding(&write.thread, "a checkpoint record"),
        )?;
        let mut cols: (
            Vec<&str>,
            Vec<String>,
            Vec<&str>,
            Vec<Option<String>>,
            Vec<&str>,
            Vec<i64>,
        ) = Default::default();
        for b in &write.blobs {
            let version = b.version.to_string();
            let (kind, base) = match b.kind {
                BlobKind::Full => ("full", None),
                BlobKind::Delta { base } => ("delta", Some(base.to_string())),
            };
            cols.5.push(blob_sum(
                &write.thread,
                &write.ns,
                &b.channel,
                &version,
                kind,
                base.as_deref(),
                b.data.get(),
            ));
            cols.0.push(&b.channel);
            cols.1.push(version);
            cols.2.push(kind);
            cols.3.push(base);
            cols.4.push(b.data.get());
        }
        let record_sum = record_sum(&write.thread, &write.ns, &record);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.put)
            .await
            .map_err(backend)?;
        let id = write.checkpoint.id.to_string();
        let expected = write.expected_head.map(|h| h.to_string());
        let parent = write.checkpoint.parent_id.map(|p| p.to_string());
        debug_assert!(
            write
                .head_writes
                .iter()
                .all(|w| w.kind.mode() != WriteMode::InsertOrConflict),
            "answers are stored with put_writes"
        );
        let head_text = expected.clone().unwrap_or_default();
        let w = write_columns(
            &write.thread,
            &write.ns,
            &head_text,
            &write.head_writes.iter().collect::<Vec<_>>(),
        );
        let row = client
            .query_one(
                &stmt,
                &[
                    &write.thread,
                    &write.ns,
                    &id,
                    &expected,
                    &parent,
                    &record,
                    &cols.0,
                    &cols.1,
                    &cols.2,
                    &cols.3,
                    &cols.4,
                    &w.tasks,
                    &w.idx,
                    &w.kinds,
                    &w.values,
                    &w.upsert,
                    &record_sum,
                    &cols.5,
                    &w.sums,
                ],
            )
            .await
            .map_err(backend)?;
        self.wrote();
        let ok: i64 = row.try_get(0).map_err(backend)?;
        if ok == 1 {
            return Ok(());
        }
        let actual: Option<String> = row.try_get(1).map_err(backend)?;
        Err(CheckpointError::Conflict {
            actual: actual
                .map(|a| parse_id(&write.thread, "the head", &a))
                .transpose()?,
            thread: write.thread,
            ns: write.ns,
            expected: write.expected_head,
        })
    }

    async fn put_decisions(
        &self,
        thread: &str,
        ns: &str,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
        records: Vec<DecisionRecord>,
    ) -> Result<(), CheckpointError> {
        let mut client = self.client().await?;
        if records.is_empty() {
            self.store_writes(&client, thread, ns, checkpoint, &writes)
                .await?;
            self.wrote();
            return Ok(());
        }
        let tx = client.transaction().await.map_err(backend)?;
        self.store_writes(&tx, thread, ns, checkpoint, &writes)
            .await?;
        self.append_decisions(&tx, thread, &records).await?;
        tx.commit().await.map_err(backend)?;
        self.wrote();
        Ok(())
    }

    async fn decision_records(
        &self,
        query: &RecordQuery,
    ) -> Result<Vec<DecisionEntry>, CheckpointError> {
        let client = self.client().await?;
        let s = &self.schema;
        let limit = query.limit.map_or(i64::MAX, |l| l as i64);
        let rows = client
            .query(
                &format!(
                    "SELECT seq, body, prev_hash, hash FROM {s}.hitl_decisions
                     WHERE ($1::text IS NULL OR thread = $1) AND ($2::text IS NULL OR reviewer = $2)
                     ORDER BY thread, seq LIMIT $3"
                ),
                &[&query.thread, &query.reviewer, &limit],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(DecisionEntry {
                    seq: r.try_get::<_, i64>(0)? as u64,
                    body: r.try_get(1)?,
                    prev_hash: r.try_get(2)?,
                    hash: r.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(backend)
    }

    async fn list(
        &self,
        thread: &str,
        ns: &str,
        filter: &ListFilter,
    ) -> Result<Vec<Checkpoint>, CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.list)
            .await
            .map_err(backend)?;
        let before = filter.before.map(|b| b.to_string());
        let metadata = Value::Object(filter.metadata.clone()).to_string();
        let limit = filter.limit.map_or(i64::MAX, |l| l as i64);
        let rows = client
            .query(&stmt, &[&thread, &ns, &before, &metadata, &limit])
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let c = decode_checkpoint(
                thread,
                ns,
                &row.try_get::<_, String>(0).map_err(backend)?,
                row.try_get(1).map_err(backend)?,
            )?;
            if filter.matches(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn delete_thread(&self, thread: &str) -> Result<(), CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.delete)
            .await
            .map_err(backend)?;
        client.execute(&stmt, &[&thread]).await.map_err(backend)?;
        self.wrote();
        Ok(())
    }

    async fn prune(&self, thread: &str, keep: Prune) -> Result<usize, CheckpointError> {
        let s = &self.schema;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let head: Option<String> = tx
            .query_opt(
                &format!(
                    "SELECT head FROM {s}.hitl_heads WHERE thread = $1 AND ns = '' FOR UPDATE"
                ),
                &[&thread],
            )
            .await
            .map_err(backend)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(backend)?;
        let head = head.map(|h| parse_id(thread, "the head", &h)).transpose()?;
        let rows = tx
            .query(
                &format!(
                    "SELECT record, sum FROM {s}.hitl_checkpoints WHERE thread = $1 AND ns = ''"
                ),
                &[&thread],
            )
            .await
            .map_err(backend)?;
        let all = rows
            .iter()
            .map(|r| {
                decode_checkpoint(
                    thread,
                    "",
                    &r.try_get::<_, String>(0).map_err(backend)?,
                    r.try_get(1).map_err(backend)?,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kept = prune_keep_set(&all, head, keep);
        let rows = tx
            .query(
                &format!("SELECT channel, version, kind, base FROM {s}.hitl_blobs WHERE thread = $1 AND ns = ''"),
                &[&thread],
            )
            .await
            .map_err(backend)?;
        let mut kinds: HashMap<(Arc<str>, CheckpointId), BlobKind> = HashMap::new();
        for r in rows {
            let version = parse_id(
                thread,
                "a blob version",
                &r.try_get::<_, String>(1).map_err(backend)?,
            )?;
            let kind = match (
                r.try_get::<_, String>(2).map_err(backend)?.as_str(),
                r.try_get::<_, Option<String>>(3).map_err(backend)?,
            ) {
                ("delta", Some(b)) => BlobKind::Delta {
                    base: parse_id(thread, "a delta base", &b)?,
                },
                _ => BlobKind::Full,
            };
            kinds.insert(
                (
                    Arc::from(r.try_get::<_, &str>(0).map_err(backend)?),
                    version,
                ),
                kind,
            );
        }
        let needed: HashSet<(Arc<str>, CheckpointId)> =
            needed_blobs(all.iter().filter(|c| kept.contains(&c.id)), |ch, v| {
                kinds.get(&(Arc::from(ch), v)).copied()
            });
        let removed: Vec<String> = all
            .iter()
            .filter(|c| !kept.contains(&c.id))
            .map(|c| c.id.to_string())
            .collect();
        let (channels, versions): (Vec<String>, Vec<String>) = kinds
            .keys()
            .filter(|k| !needed.contains(*k))
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .unzip();
        tx.execute(
            &format!(
                "DELETE FROM {s}.hitl_checkpoints WHERE thread = $1 AND ns = '' AND id = ANY($2)"
            ),
            &[&thread, &removed],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            &format!(
                "DELETE FROM {s}.hitl_writes WHERE thread = $1 AND ns = '' AND checkpoint = ANY($2)"
            ),
            &[&thread, &removed],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            &format!(
                "DELETE FROM {s}.hitl_blobs b USING unnest($2::text[], $3::text[]) AS u(channel, version)
                 WHERE b.thread = $1 AND b.ns = '' AND b.channel = u.channel AND b.version = u.version"
            ),
            &[&thread, &channels, &versions],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.wrote();
        Ok(removed.len())
    }

    async fn threads_with_pending_interrupts(
        &self,
        limit: usize,
    ) -> Result<Vec<PendingThread>, CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.inbox)
            .await
            .map_err(backend)?;
        let rows = client.query(&stmt, &[]).await.map_err(backend)?;
        inbox(
            rows.into_iter().map(|row| {
                let thread: String = row.try_get(0).map_err(backend)?;
                let head: String = row.try_get(1).map_err(backend)?;
                let writes = decode_writes(
                    &thread,
                    "",
                    &head,
                    &row.try_get::<_, Option<String>>(2)
                        .map_err(backend)?
                        .unwrap_or_else(|| "[]".into()),
                )?;
                Ok((thread, head, writes))
            }),
            limit,
        )
    }

    async fn acquire_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<String>, CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.acquire)
            .await
            .map_err(backend)?;
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let row = client
            .query_one(&stmt, &[&thread, &holder, &ms])
            .await
            .map_err(backend)?;
        let granted: Option<String> = row.try_get(0).map_err(backend)?;
        if granted.is_some() {
            return Ok(None);
        }
        // Not granted: the row exists and another holder's lease has not expired (the
        // statement's snapshot may not show a row inserted concurrently: say so).
        let current: Option<String> = row.try_get(1).map_err(backend)?;
        Ok(Some(current.unwrap_or_else(|| "another runner".to_owned())))
    }

    async fn renew_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.renew)
            .await
            .map_err(backend)?;
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let n = client
            .execute(&stmt, &[&thread, &holder, &ms])
            .await
            .map_err(backend)?;
        Ok(n == 1)
    }

    async fn release_lease(&self, thread: &str, holder: &str) -> Result<(), CheckpointError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.release)
            .await
            .map_err(backend)?;
        client
            .execute(&stmt, &[&thread, &holder])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), CheckpointError> {
        if self.durability != PgDurability::RunEnd || !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let client = self.client().await?;
        if let Err(e) = client.batch_execute(&self.sql.flush).await {
            self.dirty.store(true, Ordering::Release);
            return Err(backend(e));
        }
        Ok(())
    }
}
