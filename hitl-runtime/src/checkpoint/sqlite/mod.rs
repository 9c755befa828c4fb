//! The SQLite checkpointer (feature `sqlite`): the embedded default.

mod rows;
mod schema;

use rows::{WriteTx, blobs_of, head_of, insert_writes, writes_of};
use schema::{MIGRATIONS, migrate};

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{blob_sum, decode_checkpoint, inbox, parse_id, record_sum};
use super::{
    BlobKind, Checkpoint, CheckpointWrite, Checkpointer, DecisionEntry, DecisionRecord, ListFilter,
    PendingThread, PendingWrite, Prune, RecordQuery, StoredCheckpoint, WriteMode, needed_blobs,
    prune_keep_set,
};
use crate::error::CheckpointError;
use crate::ids::CheckpointId;

/// When commits reach the disk. Every setting survives a crash of the process (WAL);
/// they differ on a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SqliteDurability {
    /// The default: commits during a run do not wait for the disk; before `invoke`
    /// returns, one synchronous commit makes all of them durable. What a run reports
    /// (an interrupt, a stored answer, a result) survives a power loss; one fsync per
    /// run.
    #[default]
    RunEnd,
    /// `synchronous = NORMAL` only: the newest commits may be lost if the machine
    /// loses power, even after `invoke` returned.
    Normal,
    /// `synchronous = FULL`: every commit is on disk before it returns (an fsync each).
    Full,
}

/// Stores threads in a SQLite database: a file, or `:memory:`.
///
/// Same storage model as every saver (blobs per channel version, deltas for append
/// channels, pending writes per task, compare-and-set on the head inside a
/// transaction). Several processes may open the same file; writes are serialized by
/// SQLite's lock, and the head check makes concurrent writers conflict instead of
/// forking a thread.
///
/// Calls run on the calling task while holding the connection (SQLite calls take
/// microseconds). Cloning shares the connection.
///
/// A thread paused in one process, resumed in another:
///
/// ```
/// # use hitl_runtime::{StateGraph, START, END, State, NodeContext, RunConfig, Command, SqliteSaver};
/// # use serde::{Serialize, Deserialize};
/// # #[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
/// # struct Flow { #[state(reducer = append)] log: Vec<String> }
/// use serde_json::json;
///
/// fn graph() -> StateGraph<Flow> {
///     let mut g = StateGraph::<Flow>::new();
///     let ship = g.add_node("ship", |_, cx: NodeContext| async move {
///         let answer = cx.interrupt(json!("Ship order 42?")).await?;
///         Ok(FlowUpdate::default().log(vec![format!("ship: {}", answer["ok"])]))
///     });
///     g.add_edge(START, ship);
///     g.add_edge(ship, END);
///     g
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("hitl-doc-{}.db", std::process::id()));
/// let cfg = RunConfig::thread("order-42");
/// {
///     let app = graph().compile().checkpointer(SqliteSaver::open(&path).await?).build()?;
///     assert!(app.invoke(Flow::default(), &cfg).await?.is_interrupted());
/// } // the process may stop here: the pause is on disk
///
/// // Later, maybe in another process: the same file, the same thread.
/// let app = graph().compile().checkpointer(SqliteSaver::open(&path).await?).build()?;
/// let out = app.invoke(Command::resume(json!({"ok": true})), &cfg).await?;
/// assert_eq!(out.values.log, ["ship: true"]);
/// # drop(app);
/// # for ext in ["", "-wal", "-shm"] {
/// #     let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
/// # }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteSaver {
    conn: Arc<Mutex<Connection>>,
    location: Arc<str>,
    durability: SqliteDurability,
    /// Whether something was committed since the last run-end flush.
    dirty: Arc<AtomicBool>,
}

impl std::fmt::Debug for SqliteSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSaver")
            .field("location", &self.location)
            .finish()
    }
}

pub(super) fn backend(e: rusqlite::Error) -> CheckpointError {
    CheckpointError::Backend(Box::new(e))
}

impl SqliteSaver {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    /// `":memory:"` opens a private in-memory database.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        Self::open_with(path, SqliteDurability::default())
    }

    /// Opens with a durability setting.
    pub fn open_with(
        path: impl AsRef<Path>,
        durability: SqliteDurability,
    ) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let memory = path.as_os_str() == ":memory:";
        let unusable = |reason: String| CheckpointError::Unusable {
            path: path.display().to_string(),
            reason,
        };
        if !memory && std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            // SQLite would take an empty file for a new database: a truncated one
            // would read as "no threads", silently.
            return Err(unusable(
                "the file is empty (0 bytes), so it holds no database; if it was \
                 truncated, restore it from a backup, else delete it to start afresh"
                    .into(),
            ));
        }
        let conn = Connection::open(path).map_err(|e| unusable(e.to_string()))?;
        if !memory {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| unusable(format!("{e} (is it an SQLite database?)")))?;
        }
        let sync = match durability {
            SqliteDurability::RunEnd | SqliteDurability::Normal => "NORMAL",
            SqliteDurability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(backend)?;
        // Plans that do not depend on bound values: without this, SQLite re-prepares a
        // statement whose plan looked at a parameter every time its cached copy is
        // reused (the cache clears its bindings), which cost a parse per write.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(backend)?;
        // Room for every statement the saver runs (rusqlite keeps 16 by default, fewer
        // than a run uses, so they would evict each other and be parsed again).
        conn.set_prepared_statement_cache_capacity(64);
        let mut conn = conn;
        migrate(&mut conn)?;
        Ok(SqliteSaver {
            conn: Arc::new(Mutex::new(conn)),
            location: path.display().to_string().into(),
            durability: if memory {
                SqliteDurability::Normal
            } else {
                durability
            },
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Where the database is: its path, or `:memory:`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The schema version this build writes.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// How durable commits are.
    pub fn durability(&self) -> SqliteDurability {
        self.durability
    }

    fn wrote(&self) {
        if self.durability == SqliteDurability::RunEnd {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// With [`SqliteDurability::RunEnd`], makes every commit so far durable: one commit
    /// with `synchronous = FULL` syncs the write-ahead log, and with it every frame
    /// committed before.
    fn sync(&self, conn: &Connection) -> Result<(), CheckpointError> {
        self.sync_with(conn, |conn| count_sync(conn).map_err(backend))
            .map(drop)
    }

    /// Runs `write` (one commit, which must count itself with [`count_sync`]) as the
    /// commit that makes every commit so far durable (see [`sync`](Self::sync)).
    /// Returns `None` when nothing is waiting for the disk and `write` did not run.
    fn sync_with<T>(
        &self,
        conn: &Connection,
        write: impl FnOnce(&Connection) -> Result<T, CheckpointError>,
    ) -> Result<Option<T>, CheckpointError> {
        if self.durability != SqliteDurability::RunEnd || !self.dirty.swap(false, Ordering::AcqRel)
        {
            return Ok(None);
        }
        let pragma = |sql: &str| {
            conn.prepare_cached(sql)
                .and_then(|mut stmt| stmt.execute([]))
                .map_err(backend)
        };
        let synced = pragma("PRAGMA synchronous = FULL").and_then(|_| {
            let written = write(conn);
            pragma("PRAGMA synchronous = NORMAL")?;
            written
        });
        if synced.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        synced.map(Some)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Test hook (feature `test-util`): runs `sql` behind the saver's back, as damage
    /// would; returns the rows changed.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn execute_unchecked(&self, sql: &str) -> usize {
        self.lock().execute(sql, []).unwrap_or(0)
    }

    /// Overwrites every blob of `channel` in `thread` with bytes that are not JSON, to
    /// test that corrupt data fails loudly.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn corrupt_blobs(&self, thread: &str, channel: &str) -> usize {
        self.lock()
            .execute(
                "UPDATE hitl_blobs SET data = '{\"corrupt\": tru' WHERE thread = ?1 AND channel = ?2",
                params![thread, channel],
            )
            .unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Checkpointer for SqliteSaver {
    async fn get(
        &self,
        thread: &str,
        ns: &str,
        id: Option<CheckpointId>,
        have: Option<CheckpointId>,
    ) -> Result<Option<StoredCheckpoint>, CheckpointError> {
        let conn = self.lock();
        let asked_head = id.is_none();
        let Some(id) = (match id {
            Some(id) => Some(id),
            None => head_of(&conn, thread, ns)?,
        }) else {
            return Ok(None);
        };
        let id_text = id.to_string();
        let record: Option<(String, Option<i64>)> = conn
            .prepare_cached(
                "SELECT record, sum FROM hitl_checkpoints WHERE thread = ?1 AND ns = ?2 AND id = ?3",
            )
            .map_err(backend)?
            .query_row(params![thread, ns, id_text], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        let Some((record, sum)) = record else {
            if asked_head {
                return Err(CheckpointError::corrupt(
                    thread,
                    format!(
                        "the head of namespace `{ns}` names checkpoint {id}, which is not stored"
                    ),
                ));
            }
            return Ok(None);
        };
        let checkpoint = decode_checkpoint(thread, ns, &record, sum)?;
        let blobs = if have == Some(id) {
            Vec::new()
        } else {
            blobs_of(&conn, thread, ns, &checkpoint)?
        };
        let writes = writes_of(&conn, thread, ns, &id_text)?;
        Ok(Some(StoredCheckpoint {
            checkpoint: Arc::new(checkpoint),
            blobs,
            writes,
        }))
    }

    async fn head(&self, thread: &str, ns: &str) -> Result<Option<CheckpointId>, CheckpointError> {
        head_of(&self.lock(), thread, ns)
    }

    async fn put(&self, write: CheckpointWrite) -> Result<(), CheckpointError> {
        let record = serde_json::to_string(&*write.checkpoint).map_err(|source| {
            CheckpointError::Decode {
                thread: write.thread.clone(),
                what: "a checkpoint record".into(),
                source,
            }
        })?;
        let conn = self.lock();
        let tx = WriteTx::begin(&conn)?;
        let head = head_of(&tx, &write.thread, &write.ns)?;
        if head != write.expected_head {
            return Err(CheckpointError::Conflict {
                thread: write.thread,
                ns: write.ns,
                expected: write.expected_head,
                actual: head,
            });
        }
        let id = write.checkpoint.id.to_string();
        tx.prepare_cached(
            "INSERT INTO hitl_checkpoints (thread, ns, id, parent, record, sum) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(backend)?
        .execute(params![
            write.thread,
            write.ns,
            id,
            write.checkpoint.parent_id.map(|p| p.to_string()),
            record,
            record_sum(&write.thread, &write.ns, &record)
        ])
        .map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO hitl_blobs (thread, ns, channel, version, kind, base, data, sum)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(backend)?;
            for blob in &write.blobs {
                let (kind, base) = match blob.kind {
                    BlobKind::Full => ("full", None),
                    BlobKind::Delta { base } => ("delta", Some(base.to_string())),
                };
                let version = blob.version.to_string();
                let sum = blob_sum(
                    &write.thread,
                    &write.ns,
                    &blob.channel,
                    &version,
                    kind,
                    base.as_deref(),
                    blob.data.get(),
                );
                stmt.execute(params![
                    write.thread,
                    write.ns,
                    blob.channel,
                    version,
                    kind,
                    base,
                    blob.data.get(),
                    sum
                ])
                .map_err(backend)?;
            }
        }
        if let Some(head) = write.expected_head {
            insert_writes(&tx, &write.thread, &write.ns, head, &write.head_writes)?;
        }
        tx.prepare_cached(
            "INSERT INTO hitl_heads (thread, ns, head) VALUES (?1, ?2, ?3)
             ON CONFLICT (thread, ns) DO UPDATE SET head = excluded.head",
        )
        .map_err(backend)?
        .execute(params![write.thread, write.ns, id])
        .map_err(backend)?;
        tx.commit()?;
        self.wrote();
        Ok(())
    }

    async fn put_decisions(
        &self,
        thread: &str,
        ns: &str,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
        records: Vec<DecisionRecord>,
    ) -> Result<(), CheckpointError> {
        let conn = self.lock();
        let tx = WriteTx::begin(&conn)?;
        if writes
            .iter()
            .any(|w| w.kind.mode() == WriteMode::InsertOrConflict)
        {
            let head = head_of(&tx, thread, ns)?;
            if head != Some(checkpoint) {
                return Err(CheckpointError::Conflict {
                    thread: thread.to_owned(),
                    ns: ns.to_owned(),
                    expected: Some(checkpoint),
                    actual: head,
                });
            }
        }
        insert_writes(&tx, thread, ns, checkpoint, &writes)?;
        if !records.is_empty() {
            rows::append_decisions(&tx, thread, &records)?;
        }
        tx.commit()?;
        self.wrote();
        Ok(())
    }

    async fn decision_records(
        &self,
        query: &RecordQuery,
    ) -> Result<Vec<DecisionEntry>, CheckpointError> {
        rows::decision_records(&self.lock(), query)
    }

    async fn list(
        &self,
        thread: &str,
        ns: &str,
        filter: &ListFilter,
    ) -> Result<Vec<Checkpoint>, CheckpointError> {
        let conn = self.lock();
        let before = filter
            .before
            .map_or_else(|| "~".to_owned(), |b| b.to_string());
        let mut stmt = conn
            .prepare_cached(
                "SELECT record, sum FROM hitl_checkpoints WHERE thread = ?1 AND ns = ?2 AND id < ?3 ORDER BY id DESC",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![thread, ns, before], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (record, sum) = row.map_err(backend)?;
            let checkpoint = decode_checkpoint(thread, ns, &record, sum)?;
            if filter.matches(&checkpoint) {
                out.push(checkpoint);
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn delete_thread(&self, thread: &str) -> Result<(), CheckpointError> {
        let conn = self.lock();
        let tx = WriteTx::begin(&conn)?;
        for table in [
            "hitl_checkpoints",
            "hitl_blobs",
            "hitl_writes",
            "hitl_heads",
            "hitl_leases",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE thread = ?1"), [thread])
                .map_err(backend)?;
        }
        tx.commit()?;
        self.wrote();
        self.sync(&conn)
    }

    async fn prune(&self, thread: &str, keep: Prune) -> Result<usize, CheckpointError> {
        let conn = self.lock();
        let tx = WriteTx::begin(&conn)?;
        let head = head_of(&tx, thread, "")?;
        let mut all = Vec::new();
        {
            let mut stmt = tx
                .prepare("SELECT record, sum FROM hitl_checkpoints WHERE thread = ?1 AND ns = ''")
                .map_err(backend)?;
            let rows = stmt
                .query_map([thread], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
                })
                .map_err(backend)?;
            for row in rows {
                let (record, sum) = row.map_err(backend)?;
                all.push(decode_checkpoint(thread, "", &record, sum)?);
            }
        }
        let kept = prune_keep_set(&all, head, keep);
        let mut kinds: HashMap<(Arc<str>, CheckpointId), BlobKind> = HashMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT channel, version, kind, base FROM hitl_blobs WHERE thread = ?1 AND ns = ''")
                .map_err(backend)?;
            let rows = stmt
                .query_map([thread], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(backend)?;
            for row in rows {
                let (channel, version, kind, base) = row.map_err(backend)?;
                let version = parse_id(thread, "a blob version", &version)?;
                let kind = match (kind.as_str(), base) {
                    ("delta", Some(b)) => BlobKind::Delta {
                        base: parse_id(thread, "a delta base", &b)?,
                    },
                    _ => BlobKind::Full,
                };
                kinds.insert((channel.into(), version), kind);
            }
        }
        let needed: HashSet<(Arc<str>, CheckpointId)> =
            needed_blobs(all.iter().filter(|c| kept.contains(&c.id)), |ch, v| {
                kinds.get(&(Arc::from(ch), v)).copied()
            });
        let mut removed = 0;
        for c in all.iter().filter(|c| !kept.contains(&c.id)) {
            let id = c.id.to_string();
            tx.execute(
                "DELETE FROM hitl_checkpoints WHERE thread = ?1 AND ns = '' AND id = ?2",
                params![thread, id],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM hitl_writes WHERE thread = ?1 AND ns = '' AND checkpoint = ?2",
                params![thread, id],
            )
            .map_err(backend)?;
            removed += 1;
        }
        for (channel, version) in kinds.keys().filter(|k| !needed.contains(*k)) {
            tx.execute(
                "DELETE FROM hitl_blobs WHERE thread = ?1 AND ns = '' AND channel = ?2 AND version = ?3",
                params![thread, channel, version.to_string()],
            )
            .map_err(backend)?;
        }
        tx.commit()?;
        self.wrote();
        self.sync(&conn)?;
        Ok(removed)
    }

    async fn acquire_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<String>, CheckpointError> {
        let conn = self.lock();
        let now = crate::ids::now_ms() as i64;
        let expires = now.saturating_add(ttl.as_millis() as i64);
        let granted = conn
            .prepare_cached(
                "INSERT INTO hitl_leases (thread, holder, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (thread) DO UPDATE SET holder = excluded.holder,
                     expires_ms = excluded.expires_ms
                 WHERE hitl_leases.expires_ms <= ?4 OR hitl_leases.holder = excluded.holder",
            )
            .map_err(backend)?
            .execute(params![thread, holder, expires, now])
            .map_err(backend)?;
        self.wrote();
        if granted == 1 {
            return Ok(None);
        }
        let current: String = conn
            .prepare_cached("SELECT holder FROM hitl_leases WHERE thread = ?1")
            .map_err(backend)?
            .query_row([thread], |r| r.get(0))
            .map_err(backend)?;
        Ok(Some(current))
    }

    async fn renew_lease(
        &self,
        thread: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        let conn = self.lock();
        let expires = (crate::ids::now_ms() as i64).saturating_add(ttl.as_millis() as i64);
        let renewed = conn
            .prepare_cached(
                "UPDATE hitl_leases SET expires_ms = ?3 WHERE thread = ?1 AND holder = ?2",
            )
            .map_err(backend)?
            .execute(params![thread, holder, expires])
            .map_err(backend)?;
        self.wrote();
        Ok(renewed == 1)
    }

    async fn release_lease(&self, thread: &str, holder: &str) -> Result<(), CheckpointError> {
        let conn = self.lock();
        release(&conn, thread, holder).map_err(backend)?;
        self.wrote();
        Ok(())
    }

    /// The lease's release is the commit that makes the run durable: one commit at the
    /// end of a run, not two.
    async fn end_run(&self, thread: &str, holder: &str) -> Result<(), CheckpointError> {
        let conn = self.lock();
        let synced = self.sync_with(&conn, |conn| {
            let tx = WriteTx::begin(conn)?;
            release(&tx, thread, holder).map_err(backend)?;
            count_sync(&tx).map_err(backend)?;
            tx.commit()
        });
        match synced {
            Ok(Some(())) => Ok(()),
            Ok(None) => {
                release(&conn, thread, holder).map_err(backend)?;
                self.wrote();
                Ok(())
            }
            Err(e) => {
                // Not durable; the lease is given up all the same.
                let _ = release(&conn, thread, holder);
                Err(e)
            }
        }
    }

    async fn threads_with_pending_interrupts(
        &self,
        limit: usize,
    ) -> Result<Vec<PendingThread>, CheckpointError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT h.thread, h.head FROM hitl_heads h
                 WHERE h.ns = '' AND EXISTS (
                     SELECT 1 FROM hitl_writes w
                     WHERE w.thread = h.thread AND w.ns = '' AND w.checkpoint = h.head AND w.kind = 'interrupt')
                 ORDER BY h.head DESC",
            )
            .map_err(backend)?;
        let candidates: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        inbox(
            candidates.into_iter().map(|(thread, head)| {
                let writes = writes_of(&conn, &thread, "", &head)?;
                Ok((thread, head, writes))
            }),
            limit,
        )
    }

    async fn flush(&self) -> Result<(), CheckpointError> {
        let conn = self.lock();
        self.sync(&conn)
    }
}

/// Deletes `holder`'s lease of `thread`, if it holds it.
fn release(conn: &Connection, thread: &str, holder: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM hitl_leases WHERE thread = ?1 AND holder = ?2")?
        .execute(params![thread, holder])
}

/// Counts one run-end sync in `hitl_flush` (how a test, or an operator, sees that runs
/// reached the disk).
fn count_sync(conn: &Connection) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO hitl_flush (id, n) VALUES (1, 1)
         ON CONFLICT (id) DO UPDATE SET n = n + 1",
    )?
    .execute([])
}
