//! The SQLite saver's schema: versioned migrations, and the checksums filled in for
//! rows stored before checksums existed.

use rusqlite::{Connection, TransactionBehavior, params};

use super::backend;
use crate::checkpoint::rows::{blob_sum, record_sum, write_sum};
use crate::error::CheckpointError;

/// Versioned schema migrations, applied in order; the index + 1 is the version.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the storage model.
    "CREATE TABLE hitl_checkpoints (
         thread TEXT NOT NULL,
         ns TEXT NOT NULL,
         id TEXT NOT NULL,
         parent TEXT,
         record TEXT NOT NULL,
         PRIMARY KEY (thread, ns, id)
     ) WITHOUT ROWID;
     CREATE TABLE hitl_blobs (
         thread TEXT NOT NULL,
         ns TEXT NOT NULL,
         channel TEXT NOT NULL,
         version TEXT NOT NULL,
         kind TEXT NOT NULL,
         base TEXT,
         data TEXT NOT NULL,
         PRIMARY KEY (thread, ns, channel, version)
     ) WITHOUT ROWID;
     CREATE TABLE hitl_writes (
         thread TEXT NOT NULL,
         ns TEXT NOT NULL,
         checkpoint TEXT NOT NULL,
         task TEXT NOT NULL,
         idx INTEGER NOT NULL,
         kind TEXT NOT NULL,
         value TEXT NOT NULL,
         PRIMARY KEY (thread, ns, checkpoint, task, idx)
     ) WITHOUT ROWID;
     CREATE TABLE hitl_heads (
         thread TEXT NOT NULL,
         ns TEXT NOT NULL,
         head TEXT NOT NULL,
         PRIMARY KEY (thread, ns)
     ) WITHOUT ROWID;",
    // 2: the row a run-end flush writes, so that its commit waits for the disk.
    "CREATE TABLE hitl_flush (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);",
    // 3: run leases, one runner per thread.
    "CREATE TABLE hitl_leases (
         thread TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         expires_ms INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 4: a checksum on every record, blob and pending write (filled in for the rows
    // already there by `backfill_checksums`).
    "ALTER TABLE hitl_checkpoints ADD COLUMN sum INTEGER;
     ALTER TABLE hitl_blobs ADD COLUMN sum INTEGER;
     ALTER TABLE hitl_writes ADD COLUMN sum INTEGER;",
    // 5: decision records, append-only and hash-chained per thread.
    "CREATE TABLE hitl_decisions (
         thread TEXT NOT NULL,
         seq INTEGER NOT NULL,
         reviewer TEXT,
         body TEXT NOT NULL,
         prev_hash TEXT,
         hash TEXT NOT NULL,
         PRIMARY KEY (thread, seq)
     ) WITHOUT ROWID;
     CREATE INDEX hitl_decisions_reviewer ON hitl_decisions (reviewer);
     CREATE TRIGGER hitl_decisions_no_update BEFORE UPDATE ON hitl_decisions
     BEGIN SELECT RAISE(ABORT, 'decision records are append-only'); END;
     CREATE TRIGGER hitl_decisions_no_delete BEFORE DELETE ON hitl_decisions
     BEGIN SELECT RAISE(ABORT, 'decision records are append-only'); END;",
];

/// The migration that adds checksums (its 1-based version).
pub(super) const CHECKSUMS: usize = 4;

/// Applies missing migrations in one immediate transaction (safe when several
/// processes open the file at once).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), CheckpointError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS hitl_schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TEXT NOT NULL DEFAULT (datetime('now'))
         )",
    )
    .map_err(backend)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM hitl_schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let supported = MIGRATIONS.len() as i64;
    if current > supported {
        return Err(CheckpointError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(backend)?;
        if i + 1 == CHECKSUMS {
            backfill_checksums(&tx)?;
        }
        tx.execute(
            "INSERT INTO hitl_schema_migrations (version) VALUES (?1)",
            [i as i64 + 1],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// Computes the checksum of every row stored before checksums existed.
pub(super) fn backfill_checksums(tx: &rusqlite::Transaction<'_>) -> Result<(), CheckpointError> {
    let records: Vec<(String, String, String, String)> =
        all_rows(tx, "SELECT thread, ns, id, record FROM hitl_checkpoints")?;
    for (thread, ns, id, record) in records {
        tx.execute(
            "UPDATE hitl_checkpoints SET sum = ?4 WHERE thread = ?1 AND ns = ?2 AND id = ?3",
            params![thread, ns, id, record_sum(&thread, &ns, &record)],
        )
        .map_err(backend)?;
    }
    type BlobKey = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
    );
    let blobs: Vec<BlobKey> = all_rows(
        tx,
        "SELECT thread, ns, channel, version, kind, base, data FROM hitl_blobs",
    )?;
    for (thread, ns, channel, version, kind, base, data) in blobs {
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
            "UPDATE hitl_blobs SET sum = ?5 WHERE thread = ?1 AND ns = ?2 AND channel = ?3 AND version = ?4",
            params![thread, ns, channel, version, sum],
        )
        .map_err(backend)?;
    }
    type WriteKey = (String, String, String, String, i32, String, String);
    let writes: Vec<WriteKey> = all_rows(
        tx,
        "SELECT thread, ns, checkpoint, task, idx, kind, value FROM hitl_writes",
    )?;
    for (thread, ns, checkpoint, task, idx, kind, value) in writes {
        let sum = write_sum(&thread, &ns, &checkpoint, &task, idx, &kind, &value);
        tx.execute(
            "UPDATE hitl_writes SET sum = ?6 WHERE thread = ?1 AND ns = ?2 AND checkpoint = ?3 AND task = ?4 AND idx = ?5",
            params![thread, ns, checkpoint, task, idx, sum],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Every row of a query, each read as a tuple of its columns.
fn all_rows<T>(tx: &rusqlite::Transaction<'_>, sql: &str) -> Result<Vec<T>, CheckpointError>
where
    T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
{
    tx.prepare(sql)
        .map_err(backend)?
        .query_map([], |r| T::try_from(r))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)
}
