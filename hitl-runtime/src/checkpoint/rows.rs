//! Decoding stored rows, shared by the SQL savers: ids, checkpoint records, pending
//! writes, blobs, and the inbox of threads waiting for a human. Anything that does
//! not decode is an error naming the thread and what is corrupt, never a default.

use serde_json::value::RawValue;

use super::{Blob, BlobKind, Checkpoint, PendingThread, PendingWrite, WriteKind};
use crate::error::CheckpointError;
use crate::ids::{CheckpointId, TaskId};

fn corrupt(thread: &str, message: String) -> CheckpointError {
    CheckpointError::corrupt(thread, message)
}

/// A stored checkpoint id.
pub(crate) fn parse_id(thread: &str, what: &str, s: &str) -> Result<CheckpointId, CheckpointError> {
    s.parse()
        .map_err(|_| corrupt(thread, format!("{what} `{s}` is not a checkpoint id")))
}

/// A stored checkpoint record.
pub(crate) fn decode_checkpoint(thread: &str, record: &str) -> Result<Checkpoint, CheckpointError> {
    serde_json::from_str(record).map_err(CheckpointError::decoding(thread, "a checkpoint record"))
}

/// A stored pending write: (task, idx, kind, value).
pub(crate) fn write_row(
    thread: &str,
    task: &str,
    idx: i32,
    kind: &str,
    value: String,
) -> Result<PendingWrite, CheckpointError> {
    let task_id: TaskId = task
        .parse()
        .map_err(|_| corrupt(thread, format!("pending write with task id `{task}`")))?;
    let kind = WriteKind::parse(kind)
        .ok_or_else(|| corrupt(thread, format!("pending write of unknown kind `{kind}`")))?;
    let value = RawValue::from_string(value).map_err(CheckpointError::decoding(
        thread,
        format!("a pending write of task {task_id}"),
    ))?;
    Ok(PendingWrite {
        task_id,
        idx,
        kind,
        value,
    })
}

/// A stored blob: (channel, version, kind, base, data).
pub(crate) fn blob_row(
    thread: &str,
    channel: String,
    version: &str,
    kind: &str,
    base: Option<&str>,
    data: String,
) -> Result<Blob, CheckpointError> {
    let version = parse_id(thread, "a blob version", version)?;
    let kind = match (kind, base) {
        ("full", _) => BlobKind::Full,
        ("delta", Some(base)) => BlobKind::Delta {
            base: parse_id(thread, "a delta base", base)?,
        },
        (other, _) => {
            return Err(corrupt(
                thread,
                format!("blob of channel `{channel}` has kind `{other}`"),
            ));
        }
    };
    let data = RawValue::from_string(data).map_err(CheckpointError::decoding(
        thread,
        format!("channel `{channel}` at version {version}"),
    ))?;
    Ok(Blob {
        channel: channel.into(),
        version,
        kind,
        data,
    })
}

/// The threads whose head has unanswered interrupts, from candidate (thread, head,
/// head's writes) rows in the order to list them, at most `limit`.
pub(crate) fn inbox(
    candidates: impl IntoIterator<Item = Result<(String, String, Vec<PendingWrite>), CheckpointError>>,
    limit: usize,
) -> Result<Vec<PendingThread>, CheckpointError> {
    let mut out = Vec::new();
    for candidate in candidates {
        if out.len() >= limit {
            break;
        }
        let (thread, head, writes) = candidate?;
        let pending = super::unanswered_interrupts(&thread, &head, &writes)?;
        if !pending.is_empty() {
            out.push(PendingThread {
                checkpoint: parse_id(&thread, "the head", &head)?,
                thread,
                interrupts: pending,
            });
        }
    }
    Ok(out)
}
