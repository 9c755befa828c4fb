//! Decoding stored rows, shared by the SQL savers: ids, checkpoint records, pending
//! writes, blobs, and the inbox of threads waiting for a human. Anything that does
//! not decode is an error naming the thread and what is corrupt, never a default.
//!
//! Every stored record, blob and pending write carries a checksum of its fields
//! (xxh3-64, each field length-prefixed), verified when it is read: bytes changed
//! behind the saver's back (a disk fault, a hand edit) are an error naming what is
//! damaged, even when they still decode.

use serde_json::value::RawValue;

use super::{Blob, BlobKind, Checkpoint, PendingThread, PendingWrite, WriteKind};
use crate::error::CheckpointError;
use crate::ids::{CheckpointId, TaskId};

fn corrupt(thread: &str, message: String) -> CheckpointError {
    CheckpointError::corrupt(thread, message)
}

/// The checksum of a stored row's fields.
pub(crate) fn checksum(fields: &[&[u8]]) -> i64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for field in fields {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field);
    }
    h.digest() as i64
}

/// The checksum of a checkpoint record.
pub(crate) fn record_sum(thread: &str, ns: &str, record: &str) -> i64 {
    checksum(&[thread.as_bytes(), ns.as_bytes(), record.as_bytes()])
}

/// The checksum of a blob.
pub(crate) fn blob_sum(
    thread: &str,
    ns: &str,
    channel: &str,
    version: &str,
    kind: &str,
    base: Option<&str>,
    data: &str,
) -> i64 {
    checksum(&[
        thread.as_bytes(),
        ns.as_bytes(),
        channel.as_bytes(),
        version.as_bytes(),
        kind.as_bytes(),
        base.unwrap_or("").as_bytes(),
        data.as_bytes(),
    ])
}

/// The checksum of a pending write.
pub(crate) fn write_sum(
    thread: &str,
    ns: &str,
    checkpoint: &str,
    task: &str,
    idx: i32,
    kind: &str,
    value: &str,
) -> i64 {
    checksum(&[
        thread.as_bytes(),
        ns.as_bytes(),
        checkpoint.as_bytes(),
        task.as_bytes(),
        &idx.to_le_bytes(),
        kind.as_bytes(),
        value.as_bytes(),
    ])
}

/// Fails when a row's stored checksum is missing or does not match its fields.
fn verify(
    thread: &str,
    what: impl FnOnce() -> String,
    stored: Option<i64>,
    actual: i64,
) -> Result<(), CheckpointError> {
    match stored {
        Some(sum) if sum == actual => Ok(()),
        Some(_) => Err(corrupt(
            thread,
            format!(
                "{} does not match its checksum: it was changed outside hitl (a disk \
                 fault, or a hand edit); restore it from a backup",
                what()
            ),
        )),
        None => Err(corrupt(thread, format!("{} has no checksum", what()))),
    }
}

/// A stored checkpoint id.
pub(crate) fn parse_id(thread: &str, what: &str, s: &str) -> Result<CheckpointId, CheckpointError> {
    s.parse()
        .map_err(|_| corrupt(thread, format!("{what} `{s}` is not a checkpoint id")))
}

/// A stored checkpoint record, verified against its checksum.
pub(crate) fn decode_checkpoint(
    thread: &str,
    ns: &str,
    record: &str,
    sum: Option<i64>,
) -> Result<Checkpoint, CheckpointError> {
    verify(
        thread,
        || "a checkpoint record".to_owned(),
        sum,
        record_sum(thread, ns, record),
    )?;
    serde_json::from_str(record).map_err(CheckpointError::decoding(thread, "a checkpoint record"))
}

/// A stored pending write of `checkpoint`: (task, idx, kind, value, checksum).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_row(
    thread: &str,
    ns: &str,
    checkpoint: &str,
    task: &str,
    idx: i32,
    kind: &str,
    value: String,
    sum: Option<i64>,
) -> Result<PendingWrite, CheckpointError> {
    verify(
        thread,
        || format!("the pending write {idx} of task {task} on checkpoint {checkpoint}"),
        sum,
        write_sum(thread, ns, checkpoint, task, idx, kind, &value),
    )?;
    let task_id: TaskId = task
        .parse()
        .map_err(|_| corrupt(thread, format!("pending write with task id `{task}`")))?;
    let kind = WriteKind::parse(kind)
        .ok_or_else(|| corrupt(thread, format!("pending write of unknown kind `{kind}`")))?;
    let value = RawValue::from_string(value)
        .map_err(CheckpointError::decoding_with(thread, || {
            format!("a pending write of task {task_id}")
        }))?;
    Ok(PendingWrite {
        task_id,
        idx,
        kind,
        value,
    })
}

/// A stored blob: (channel, version, kind, base, data, checksum).
#[allow(clippy::too_many_arguments)]
pub(crate) fn blob_row(
    thread: &str,
    ns: &str,
    channel: String,
    version: &str,
    kind: &str,
    base: Option<&str>,
    data: String,
    sum: Option<i64>,
) -> Result<Blob, CheckpointError> {
    verify(
        thread,
        || format!("the blob of channel `{channel}` at version {version}"),
        sum,
        blob_sum(thread, ns, &channel, version, kind, base, &data),
    )?;
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
    let data = RawValue::from_string(data)
        .map_err(CheckpointError::decoding_with(thread, || {
            format!("channel `{channel}` at version {version}")
        }))?;
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
