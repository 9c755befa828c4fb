//! Reading and writing the SQLite saver's rows.

use rusqlite::{Connection, OptionalExtension, params};

use super::backend;
use crate::checkpoint::decisions::seal_all;
use crate::checkpoint::rows::{blob_row, parse_id, write_row, write_sum};
use crate::checkpoint::{
    Blob, Checkpoint, DecisionEntry, DecisionRecord, PendingWrite, RecordQuery, WriteMode,
};
use crate::error::CheckpointError;
use crate::ids::CheckpointId;

pub(super) fn head_of(
    conn: &Connection,
    thread: &str,
    ns: &str,
) -> Result<Option<CheckpointId>, CheckpointError> {
    let head: Option<String> = conn
        .prepare_cached("SELECT head FROM hitl_heads WHERE thread = ?1 AND ns = ?2")
        .map_err(backend)?
        .query_row(params![thread, ns], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    head.map(|h| parse_id(thread, "the head", &h)).transpose()
}

pub(super) fn writes_of(
    conn: &Connection,
    thread: &str,
    ns: &str,
    checkpoint: &str,
) -> Result<Vec<PendingWrite>, CheckpointError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT task, idx, kind, value, sum FROM hitl_writes
             WHERE thread = ?1 AND ns = ?2 AND checkpoint = ?3 ORDER BY task, idx",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![thread, ns, checkpoint], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (task, idx, kind, value, sum) = row.map_err(backend)?;
        out.push(write_row(
            thread, ns, checkpoint, &task, idx, &kind, value, sum,
        )?);
    }
    Ok(out)
}

pub(super) fn blobs_of(
    conn: &Connection,
    thread: &str,
    ns: &str,
    checkpoint: &Checkpoint,
) -> Result<Vec<Blob>, CheckpointError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT channel, version, kind, base, data, sum FROM hitl_blobs
             WHERE thread = ?1 AND ns = ?2 AND channel = ?3 AND version BETWEEN ?4 AND ?5",
        )
        .map_err(backend)?;
    let mut out = Vec::new();
    for cv in &checkpoint.channels {
        let from = cv.delta.map_or(cv.version, |d| d.snapshot).to_string();
        let to = cv.version.to_string();
        let rows = stmt
            .query_map(params![thread, ns, cv.channel, from, to], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .map_err(backend)?;
        for row in rows {
            let (channel, version, kind, base, data, sum) = row.map_err(backend)?;
            out.push(blob_row(
                thread,
                ns,
                channel,
                &version,
                &kind,
                base.as_deref(),
                data,
                sum,
            )?);
        }
    }
    Ok(out)
}

/// Inserts pending writes, each by its mode, in the caller's transaction.
pub(super) fn insert_writes(
    tx: &Connection,
    thread: &str,
    ns: &str,
    checkpoint: CheckpointId,
    writes: &[PendingWrite],
) -> Result<(), CheckpointError> {
    let cp = checkpoint.to_string();
    for w in writes {
        let sql = match w.kind.mode() {
            WriteMode::InsertIfAbsent => {
                "INSERT OR IGNORE INTO hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            }
            WriteMode::Upsert => {
                "INSERT OR REPLACE INTO hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            }
            WriteMode::InsertOrConflict => {
                "INSERT INTO hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            }
        };
        let task = w.task_id.to_string();
        let sum = write_sum(
            thread,
            ns,
            &cp,
            &task,
            w.idx,
            w.kind.as_str(),
            w.value.get(),
        );
        let result = tx.prepare_cached(sql).map_err(backend)?.execute(params![
            thread,
            ns,
            cp,
            task,
            w.idx,
            w.kind.as_str(),
            w.value.get(),
            sum
        ]);
        match result {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(CheckpointError::WriteConflict {
                    thread: thread.to_owned(),
                    task: w.task_id,
                    idx: w.idx,
                });
            }
            Err(e) => return Err(backend(e)),
        }
    }
    Ok(())
}

/// Appends decision records after the thread's last one (inside the caller's
/// transaction).
pub(super) fn append_decisions(
    conn: &Connection,
    thread: &str,
    records: &[DecisionRecord],
) -> Result<(), CheckpointError> {
    let last: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, hash FROM hitl_decisions WHERE thread = ?1 ORDER BY seq DESC LIMIT 1",
        )
        .map_err(backend)?
        .query_row(params![thread], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    let sealed = seal_all(last.map(|(seq, hash)| (seq as u64, hash)), records);
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO hitl_decisions (thread, seq, reviewer, body, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(backend)?;
    for (entry, record) in sealed.iter().zip(records) {
        insert
            .execute(params![
                thread,
                entry.seq as i64,
                record.reviewer_id(),
                entry.body,
                entry.prev_hash,
                entry.hash
            ])
            .map_err(backend)?;
    }
    Ok(())
}

/// The decision records a query selects, in chain order per thread.
pub(super) fn decision_records(
    conn: &Connection,
    query: &RecordQuery,
) -> Result<Vec<DecisionEntry>, CheckpointError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, body, prev_hash, hash FROM hitl_decisions
             WHERE (?1 IS NULL OR thread = ?1) AND (?2 IS NULL OR reviewer = ?2)
             ORDER BY thread, seq LIMIT ?3",
        )
        .map_err(backend)?;
    let limit = query.limit.map_or(-1, |l| l as i64);
    let rows = stmt
        .query_map(params![query.thread, query.reviewer, limit], |r| {
            Ok(DecisionEntry {
                seq: r.get::<_, i64>(0)? as u64,
                body: r.get(1)?,
                prev_hash: r.get(2)?,
                hash: r.get(3)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// An immediate write transaction, rolled back when dropped uncommitted. Its `BEGIN
/// IMMEDIATE` and `COMMIT` are cached statements: `rusqlite::Transaction` parses both
/// on every write.
pub(super) struct WriteTx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> WriteTx<'c> {
    /// Begins one, waiting for the write lock (up to the busy timeout).
    pub(super) fn begin(conn: &'c Connection) -> Result<Self, CheckpointError> {
        conn.prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut begin| begin.execute([]))
            .map_err(backend)?;
        Ok(WriteTx { conn, open: true })
    }

    /// Commits it; on failure it is rolled back.
    pub(super) fn commit(mut self) -> Result<(), CheckpointError> {
        self.conn
            .prepare_cached("COMMIT")
            .and_then(|mut commit| commit.execute([]))
            .map_err(backend)?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            // Nothing to report to: the error that ended the transaction early is the
            // caller's, and a failed rollback leaves SQLite to roll back on its own.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
