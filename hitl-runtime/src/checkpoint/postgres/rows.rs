//! Decoding the rows the Postgres saver's statements aggregate, and the column arrays
//! its statements `unnest`.

use crate::checkpoint::rows::{blob_row, write_row, write_sum};
use crate::checkpoint::{Blob, PendingWrite, WriteMode};
use crate::error::CheckpointError;

/// Rows aggregated as `[[task, idx, kind, value], ..]`.
pub(super) fn decode_writes(
    thread: &str,
    ns: &str,
    checkpoint: &str,
    json: &str,
) -> Result<Vec<PendingWrite>, CheckpointError> {
    let rows: Vec<(String, i32, String, String, Option<i64>)> =
        serde_json::from_str(json).map_err(CheckpointError::decoding(thread, "pending writes"))?;
    rows.into_iter()
        .map(|(task, idx, kind, value, sum)| {
            write_row(thread, ns, checkpoint, &task, idx, &kind, value, sum)
        })
        .collect()
}

/// Rows aggregated as `[[channel, version, kind, base, data], ..]`.
pub(super) fn decode_blobs(
    thread: &str,
    ns: &str,
    json: &str,
) -> Result<Vec<Blob>, CheckpointError> {
    type Row = (String, String, String, Option<String>, String, Option<i64>);
    let rows: Vec<Row> =
        serde_json::from_str(json).map_err(CheckpointError::decoding(thread, "blobs"))?;
    rows.into_iter()
        .map(|(channel, version, kind, base, data, sum)| {
            blob_row(
                thread,
                ns,
                channel,
                &version,
                &kind,
                base.as_deref(),
                data,
                sum,
            )
        })
        .collect()
}

/// Pending writes as one array per column, for `unnest`.
#[derive(Default)]
pub(super) struct WriteColumns<'a> {
    pub(super) tasks: Vec<String>,
    pub(super) idx: Vec<i32>,
    pub(super) kinds: Vec<&'static str>,
    pub(super) values: Vec<&'a str>,
    pub(super) upsert: Vec<bool>,
    pub(super) sums: Vec<i64>,
}

pub(super) fn write_columns<'a>(
    thread: &str,
    ns: &str,
    checkpoint: &str,
    writes: &[&'a PendingWrite],
) -> WriteColumns<'a> {
    let mut c = WriteColumns::default();
    for w in writes {
        let task = w.task_id.to_string();
        c.sums.push(write_sum(
            thread,
            ns,
            checkpoint,
            &task,
            w.idx,
            w.kind.as_str(),
            w.value.get(),
        ));
        c.tasks.push(task);
        c.idx.push(w.idx);
        c.kinds.push(w.kind.as_str());
        c.values.push(w.value.get());
        c.upsert.push(w.kind.mode() == WriteMode::Upsert);
    }
    c
}
