//! Setting the schema up: migrations under an advisory lock, checksums for rows stored
//! before them, and the test hooks that damage stored rows.

use super::sql::{self, MIGRATIONS};
use super::{PostgresSaver, backend};
use crate::checkpoint::rows::{blob_sum, record_sum, write_sum};
use crate::error::CheckpointError;

impl PostgresSaver {
    /// Creates the schema and tables, applying any missing migration. Idempotent,
    /// and safe when several processes run it at once (an advisory lock serializes
    /// them).
    pub async fn setup(&self) -> Result<(), CheckpointError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('hitl-migrations:' || $1))",
            &[&&*self.schema],
        )
        .await
        .map_err(backend)?;
        let s = &self.schema;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.hitl_schema_migrations (
                 version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(backend)?;
        let current: i64 = tx
            .query_one(
                &format!("SELECT COALESCE(MAX(version), 0) FROM {s}.hitl_schema_migrations"),
                &[],
            )
            .await
            .map_err(backend)?
            .try_get(0)
            .map_err(backend)?;
        let supported = MIGRATIONS.len() as i64;
        if current > supported {
            // Release the advisory lock now, not whenever the pool drops the connection.
            tx.rollback().await.map_err(backend)?;
            return Err(CheckpointError::SchemaTooNew {
                found: current,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.batch_execute(&sql.replace("{s}", s))
                .await
                .map_err(backend)?;
            if i + 1 == sql::CHECKSUMS {
                backfill_checksums(&tx, s).await?;
            }
            tx.execute(
                &format!("INSERT INTO {s}.hitl_schema_migrations (version) VALUES ($1)"),
                &[&(i as i64 + 1)],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// Test hook (feature `test-util`): runs `sql` (`{s}` is the schema) behind the
    /// saver's back, as damage would; returns the rows changed.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, sql: &str) -> u64 {
        let client = self.client().await.expect("a connection");
        client
            .execute(&sql.replace("{s}", &self.schema), &[])
            .await
            .expect("the statement runs")
    }

    /// Overwrites every blob of `channel` in `thread` with bytes that are not JSON, to
    /// test that corrupt data fails loudly.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub async fn corrupt_blobs(&self, thread: &str, channel: &str) -> u64 {
        let client = self.client().await.expect("a connection");
        client
            .execute(
                &format!(
                    "UPDATE {}.hitl_blobs SET data = '{{\"corrupt\": tru' WHERE thread = $1 AND channel = $2",
                    self.schema
                ),
                &[&thread, &channel],
            )
            .await
            .expect("the update runs")
    }
}

/// Computes the checksum of every row stored before checksums existed.
pub(super) async fn backfill_checksums(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
) -> Result<(), CheckpointError> {
    for row in tx
        .query(
            &format!("SELECT thread, ns, id, record FROM {s}.hitl_checkpoints"),
            &[],
        )
        .await
        .map_err(backend)?
    {
        let (thread, ns, id, record): (String, String, String, String) = (
            row.try_get(0).map_err(backend)?,
            row.try_get(1).map_err(backend)?,
            row.try_get(2).map_err(backend)?,
            row.try_get(3).map_err(backend)?,
        );
        tx.execute(
            &format!(
                "UPDATE {s}.hitl_checkpoints SET sum = $4 WHERE thread = $1 AND ns = $2 AND id = $3"
            ),
            &[&thread, &ns, &id, &record_sum(&thread, &ns, &record)],
        )
        .await
        .map_err(backend)?;
    }
    for row in tx
        .query(
            &format!("SELECT thread, ns, channel, version, kind, base, data FROM {s}.hitl_blobs"),
            &[],
        )
        .await
        .map_err(backend)?
    {
        let (thread, ns, channel, version, kind): (String, String, String, String, String) = (
            row.try_get(0).map_err(backend)?,
            row.try_get(1).map_err(backend)?,
            row.try_get(2).map_err(backend)?,
            row.try_get(3).map_err(backend)?,
            row.try_get(4).map_err(backend)?,
        );
        let base: Option<String> = row.try_get(5).map_err(backend)?;
        let data: String = row.try_get(6).map_err(backend)?;
        let sum = blob_sum(
            &thread,
            &ns,
            &channel,
            &version,
            &kind,
            base.as_deref(),
            &data,
        );
        tx.execute(
            &format!("UPDATE {s}.hitl_blobs SET sum = $5 WHERE thread = $1 AND ns = $2 AND channel = $3 AND version = $4"),
            &[&thread, &ns, &channel, &version, &sum],
        )
        .await
        .map_err(backend)?;
    }
    for row in tx
        .query(
            &format!("SELECT thread, ns, checkpoint, task, idx, kind, value FROM {s}.hitl_writes"),
            &[],
        )
        .await
        .map_err(backend)?
    {
        let (thread, ns, checkpoint, task): (String, String, String, String) = (
            row.try_get(0).map_err(backend)?,
            row.try_get(1).map_err(backend)?,
            row.try_get(2).map_err(backend)?,
            row.try_get(3).map_err(backend)?,
        );
        let idx: i32 = row.try_get(4).map_err(backend)?;
        let kind: String = row.try_get(5).map_err(backend)?;
        let value: String = row.try_get(6).map_err(backend)?;
        let sum = write_sum(&thread, &ns, &checkpoint, &task, idx, &kind, &value);
        tx.execute(
            &format!("UPDATE {s}.hitl_writes SET sum = $6 WHERE thread = $1 AND ns = $2 AND checkpoint = $3 AND task = $4 AND idx = $5"),
            &[&thread, &ns, &checkpoint, &task, &idx, &sum],
        )
        .await
        .map_err(backend)?;
    }
    Ok(())
}
