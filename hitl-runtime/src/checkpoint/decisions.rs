//! Decision records: who answered which interrupt, with what, and when; append-only and
//! hash-chained per thread.
//!
//! Every answer a resume stores (a person's, or a timeout's) appends one
//! [`DecisionRecord`], in the same transaction as the answer. The saver numbers a
//! thread's records 1, 2, 3, … and seals each with the SHA-256 of the previous
//! record's hash and its own JSON ([`DecisionEntry`]); [`verify_chain`] recomputes the
//! chain, so a record changed, deleted or reordered in the store is detected.
//! No saver offers a way to change or delete a record (deleting a thread keeps its
//! records; the SQL savers refuse `UPDATE` and `DELETE` on the table with a trigger).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::governance::DecidedBy;
use crate::ids::{CheckpointId, InterruptId};

/// What an answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It answered the interrupt.
    Decided,
    /// One approval of several needed; the interrupt stays pending.
    Approval {
        /// Distinct approvals so far, this one included.
        count: u32,
        /// Approvals needed.
        required: u32,
    },
}

/// One decision, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The thread.
    pub thread: String,
    /// The namespace of the task that raised the interrupt ("" at the root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ns: String,
    /// The run that applied it, if the caller named one
    /// (the `run_id` entry of the run config's metadata, as hitl-server sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The checkpoint the interrupt is pending on.
    pub checkpoint: CheckpointId,
    /// The interrupt.
    pub interrupt: InterruptId,
    /// The node that raised it.
    pub node: String,
    /// What raised it: the payload's type name ([`crate::PendingInterrupt::type_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    /// The tools reviewed, for a tool review.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// The answer as stored (for a tool review: the decisions, with edited arguments
    /// and messages).
    pub answer: Value,
    /// What it did.
    pub outcome: Outcome,
    /// Who decided.
    pub decided_by: Option<DecidedBy>,
    /// When the interrupt was raised (ms since the Unix epoch), if it was governed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised_at: Option<u64>,
    /// When it was decided.
    pub decided_at: u64,
    /// When it was due to expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<u64>,
    /// SHA-256 of the payload the reviewer was shown, as stored.
    pub payload_digest: String,
    /// The digest of the reviewed tools' policies and schemas when it was raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
}

impl DecisionRecord {
    /// The identity that decided (`None` for a timeout or an anonymous answer).
    pub fn reviewer_id(&self) -> Option<&str> {
        match &self.decided_by {
            Some(DecidedBy::Reviewer(r)) => Some(&r.id),
            _ => None,
        }
    }
}

/// A stored record: its place in the thread's chain and its seal.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionEntry {
    /// Its number in the thread (1, 2, …).
    pub seq: u64,
    /// The record's JSON, exactly as sealed.
    pub body: String,
    /// The previous record's hash (`None` for the first).
    pub prev_hash: Option<String>,
    /// SHA-256 (hex) of `prev_hash` (or nothing), a newline, and `body`.
    pub hash: String,
}

impl DecisionEntry {
    /// Seals a record as record `seq` of its thread, after `prev_hash`.
    pub fn seal(seq: u64, prev_hash: Option<String>, record: &DecisionRecord) -> Self {
        let body = serde_json::to_string(record).expect("decision records serialize");
        let hash = chain_hash(prev_hash.as_deref(), &body);
        DecisionEntry {
            seq,
            body,
            prev_hash,
            hash,
        }
    }

    /// The record.
    pub fn record(&self) -> Result<DecisionRecord, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// Seals records after the thread's last entry (`(seq, hash)`, `None` for none).
pub(crate) fn seal_all(
    last: Option<(u64, String)>,
    records: &[DecisionRecord],
) -> Vec<DecisionEntry> {
    let (mut seq, mut prev) = match last {
        Some((seq, hash)) => (seq, Some(hash)),
        None => (0, None),
    };
    records
        .iter()
        .map(|r| {
            seq += 1;
            let entry = DecisionEntry::seal(seq, prev.take(), r);
            prev = Some(entry.hash.clone());
            entry
        })
        .collect()
}

/// The hash sealing a record.
fn chain_hash(prev: Option<&str>, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.unwrap_or("").as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex(&h.finalize())
}

/// SHA-256 of bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Which records [`Checkpointer::decision_records`](super::Checkpointer::decision_records)
/// returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// Only this thread's (in chain order).
    pub thread: Option<String>,
    /// Only those decided by this identity.
    pub reviewer: Option<String>,
    /// At most this many (the oldest first).
    pub limit: Option<usize>,
}

impl RecordQuery {
    /// Every record of a thread, in chain order.
    pub fn thread(thread: impl Into<String>) -> Self {
        RecordQuery {
            thread: Some(thread.into()),
            ..RecordQuery::default()
        }
    }

    /// Every record decided by `reviewer`.
    pub fn reviewer(reviewer: impl Into<String>) -> Self {
        RecordQuery {
            reviewer: Some(reviewer.into()),
            ..RecordQuery::default()
        }
    }
}

/// A verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// How many records it has.
    pub records: u64,
    /// The last record's hash (`None` for no records): keep it elsewhere to detect a
    /// truncated tail later.
    pub head: Option<String>,
}

/// A chain that does not verify: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the decision records of thread `{thread}` do not verify at record {seq}: {problem}")]
pub struct ChainError {
    /// The thread.
    pub thread: String,
    /// The first record that does not verify.
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// Verifies a thread's records, in chain order: numbered 1, 2, … without gaps, each
/// linked to the previous one's hash, each hash recomputed from its body, each body a
/// record of this thread.
pub fn verify_chain(thread: &str, entries: &[DecisionEntry]) -> Result<ChainReport, ChainError> {
    let fail = |seq: u64, problem: String| ChainError {
        thread: thread.to_owned(),
        seq,
        problem,
    };
    let mut prev: Option<&str> = None;
    for (i, e) in entries.iter().enumerate() {
        let expected = i as u64 + 1;
        if e.seq != expected {
            return Err(fail(
                expected,
                format!(
                    "record {expected} is missing (the next one stored is {})",
                    e.seq
                ),
            ));
        }
        if e.prev_hash.as_deref() != prev {
            return Err(fail(
                e.seq,
                "it does not link to the previous record's hash (a record before it was changed or removed)".into(),
            ));
        }
        if chain_hash(prev, &e.body) != e.hash {
            return Err(fail(
                e.seq,
                "its content does not match its hash (it was changed after it was sealed)".into(),
            ));
        }
        match e.record() {
            Ok(r) if r.thread == thread => {}
            Ok(r) => {
                return Err(fail(
                    e.seq,
                    format!("it is a record of thread `{}`", r.thread),
                ));
            }
            Err(err) => return Err(fail(e.seq, format!("it does not decode: {err}"))),
        }
        prev = Some(&e.hash);
    }
    Ok(ChainReport {
        records: entries.len() as u64,
        head: prev.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(thread: &str, n: u64) -> DecisionRecord {
        DecisionRecord {
            thread: thread.into(),
            ns: String::new(),
            run_id: None,
            checkpoint: CheckpointId::from_u128(7),
            interrupt: InterruptId::derive("", crate::TaskId::NULL, n as usize),
            node: "tools".into(),
            payload_type: None,
            tools: vec!["pay".into()],
            answer: json!({"type": "approve"}),
            outcome: Outcome::Decided,
            decided_by: None,
            raised_at: None,
            decided_at: n,
            due_at: None,
            payload_digest: sha256_hex(b"{}"),
            policy_digest: None,
        }
    }

    fn chain(n: u64) -> Vec<DecisionEntry> {
        let mut out: Vec<DecisionEntry> = Vec::new();
        for i in 1..=n {
            let prev = out.last().map(|e| e.hash.clone());
            out.push(DecisionEntry::seal(i, prev, &record("t", i)));
        }
        out
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(3);
        let report = verify_chain("t", &c).unwrap();
        assert_eq!(report.records, 3);
        assert_eq!(report.head.as_deref(), Some(c[2].hash.as_str()));
        assert_eq!(verify_chain("t", &[]).unwrap().records, 0);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn changes_removals_and_foreign_records_are_detected() {
        let mut changed = chain(3);
        changed[1].body = changed[1].body.replace("approve", "reject");
        assert_eq!(verify_chain("t", &changed).unwrap_err().seq, 2);

        let mut resealed = chain(3);
        // Re-sealing a changed record breaks the next record's link.
        let mut r = resealed[1].record().unwrap();
        r.answer = json!({"type": "reject"});
        resealed[1] = DecisionEntry::seal(2, resealed[1].prev_hash.clone(), &r);
        let e = verify_chain("t", &resealed).unwrap_err();
        assert_eq!(e.seq, 3);
        assert!(e.problem.contains("does not link"), "{e}");

        let mut removed = chain(3);
        removed.remove(1);
        let e = verify_chain("t", &removed).unwrap_err();
        assert_eq!(e.seq, 2);
        assert!(e.problem.contains("missing"), "{e}");

        let e = verify_chain("other", &chain(1)).unwrap_err();
        assert!(e.to_string().contains("a record of thread `t`"), "{e}");
    }
}
