//! Storing pending writes (answers only on the head) and appending decision records.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::rows::write_columns;
use super::{PostgresSaver, backend};
use crate::checkpoint::decisions::seal_all;
use crate::checkpoint::rows::parse_id;
use crate::checkpoint::{DecisionRecord, PendingWrite, WriteMode};
use crate::error::CheckpointError;
use crate::ids::CheckpointId;

impl PostgresSaver {
    /// Stores pending writes (answers only on the head), on a connection or in a
    /// transaction.
    pub(super) async fn store_writes<C: GenericClient>(
        &self,
        client: &C,
        thread: &str,
        ns: &str,
        checkpoint: CheckpointId,
        writes: &[PendingWrite],
    ) -> Result<(), CheckpointError> {
        let cp = checkpoint.to_string();
        let Some(answer) = writes
            .iter()
            .find(|w| w.kind.mode() == WriteMode::InsertOrConflict)
        else {
            let stmt = client
                .prepare_cached(&self.sql.writes)
                .await
                .map_err(backend)?;
            let c = write_columns(thread, ns, &cp, &writes.iter().collect::<Vec<_>>());
            client
                .execute(
                    &stmt,
                    &[
                        &thread, &ns, &cp, &c.tasks, &c.idx, &c.kinds, &c.values, &c.upsert,
                        &c.sums,
                    ],
                )
                .await
                .map_err(backend)?;
            return Ok(());
        };
        let stmt = client
            .prepare_cached(&self.sql.answer)
            .await
            .map_err(backend)?;
        let c = write_columns(thread, ns, &cp, &writes.iter().collect::<Vec<_>>());
        let modes: Vec<&str> = writes
            .iter()
            .map(|w| match w.kind.mode() {
                WriteMode::InsertOrConflict => "answer",
                WriteMode::InsertIfAbsent => "insert",
                WriteMode::Upsert => "upsert",
            })
            .collect();
        let row = match client
            .query_one(
                &stmt,
                &[
                    &thread, &ns, &cp, &c.tasks, &c.idx, &c.kinds, &c.values, &modes, &c.sums,
                ],
            )
            .await
        {
            Ok(row) => row,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(CheckpointError::WriteConflict {
                    thread: thread.to_owned(),
                    task: answer.task_id,
                    idx: answer.idx,
                });
            }
            Err(e) => return Err(backend(e)),
        };
        let head: Option<String> = row.try_get(0).map_err(backend)?;
        if head.as_deref() != Some(cp.as_str()) {
            return Err(CheckpointError::Conflict {
                thread: thread.to_owned(),
                ns: ns.to_owned(),
                expected: Some(checkpoint),
                actual: head.map(|h| parse_id(thread, "the head", &h)).transpose()?,
            });
        }
        Ok(())
    }

    /// Appends decision records after the thread's last one, inside `tx` (appends to
    /// one thread are serialized by a transaction-scoped advisory lock).
    pub(super) async fn append_decisions(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        thread: &str,
        records: &[DecisionRecord],
    ) -> Result<(), CheckpointError> {
        let s = &self.schema;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('hitl-decisions:' || $1))",
            &[&thread],
        )
        .await
        .map_err(backend)?;
        let last = tx
            .query_opt(
                &format!(
                    "SELECT seq, hash FROM {s}.hitl_decisions WHERE thread = $1 ORDER BY seq DESC LIMIT 1"
                ),
                &[&thread],
            )
            .await
            .map_err(backend)?
            .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?)))
            .transpose()
            .map_err(backend)?;
        let sealed = seal_all(last, records);
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO {s}.hitl_decisions (thread, seq, reviewer, body, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ))
            .await
            .map_err(backend)?;
        for (entry, record) in sealed.iter().zip(records) {
            tx.execute(
                &insert,
                &[
                    &thread,
                    &(entry.seq as i64),
                    &record.reviewer_id(),
                    &entry.body,
                    &entry.prev_hash,
                    &entry.hash,
                ],
            )
            .await
            .map_err(backend)?;
        }
        Ok(())
    }
}
