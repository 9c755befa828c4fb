//! The JSON payloads of pending writes, and reading them back.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::checkpoint::{PendingWrite, TaskSpec, WriteKind};
use crate::governance::Governance;
use crate::ids::{InterruptId, TaskId};
use crate::interrupt::PendingInterrupt;
use crate::interrupt::ResumeValidator;

/// A finished task: its update (the state's update type, as JSON) and where it routed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ResultPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) update: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) goto: Vec<TaskSpec>,
}

/// A [`ResultPayload`] as it is written, borrowing its parts: the update is written
/// straight from its encoded pieces, with no intermediate JSON copy.
#[derive(Serialize)]
pub(crate) struct ResultOut<'a, U> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) update: Option<U>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(crate) goto: &'a [TaskSpec],
}

/// A failed task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorPayload {
    pub(crate) message: String,
}

/// One resume answer (written from a borrowed value, read as an owned one).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ResumePayload<V = Value> {
    pub(crate) interrupt: InterruptId,
    pub(crate) value: V,
}

/// One reviewer's approval of an interrupt that needs several.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ApprovalPayload {
    pub(crate) interrupt: InterruptId,
    pub(crate) reviewer: String,
}

/// The slot of a reviewer's approval of an interrupt: the same reviewer approving twice
/// lands on the same slot (and is counted once).
pub(crate) fn approval_idx(interrupt: InterruptId, reviewer: &str) -> i32 {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{interrupt}\n{reviewer}").as_bytes());
    // Below every other slot: -1 000 000 and further down.
    -1_000_000 - (h % 1_000_000_000) as i32
}

/// A `Command`'s update and goto, on the null task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CommandPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) update: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) goto: Vec<TaskSpec>,
}

/// A stored interrupt: its id, and its record still as JSON (payloads and schemas can
/// be large; they are decoded only when needed).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) id: InterruptId,
    raw: Box<RawValue>,
}

#[derive(Deserialize)]
struct Header {
    id: InterruptId,
}

/// The parts of a stored interrupt a resume is checked with, borrowed from its JSON.
#[derive(Deserialize)]
pub(crate) struct RecordView<'a> {
    #[serde(borrow)]
    pub(crate) value: &'a RawValue,
    #[serde(default, borrow)]
    pub(crate) resume_schema: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) node: String,
    #[serde(default)]
    pub(crate) ns: String,
    #[serde(default)]
    pub(crate) payload_type: Option<String>,
    #[serde(default)]
    pub(crate) governance: Option<Governance>,
}

/// The registered interrupt kinds of a graph, by name.
pub(crate) type Kinds = HashMap<String, ResumeValidator>;

/// An interrupt as stored: without its schema when its kind derives it.
#[derive(Serialize)]
struct StoredInterrupt<'a> {
    id: InterruptId,
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume_schema: Option<&'a Value>,
    node: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    ns: &'a str,
    task_id: TaskId,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    governance: Option<&'a Governance>,
}

/// The kind of an interrupt, if it is registered and derives the schema.
fn deriving(kinds: &Kinds, kind: Option<&str>, payload: &Value) -> Option<Arc<Value>> {
    kinds.get(kind?).and_then(|k| k.schema(payload))
}

/// The write holding the interrupts a task raised.
pub(crate) fn interrupts_write(
    task_id: TaskId,
    list: &[PendingInterrupt],
    kinds: &Kinds,
) -> PendingWrite {
    let stored: Vec<StoredInterrupt<'_>> = list
        .iter()
        .map(|i| StoredInterrupt {
            id: i.id,
            value: &i.value,
            resume_schema: match deriving(kinds, i.kind.as_deref(), &i.value) {
                Some(_) => None,
                None => i.resume_schema.as_deref(),
            },
            node: &i.node,
            ns: &i.ns,
            task_id: i.task_id,
            kind: i.kind.as_deref(),
            payload_type: i.payload_type.as_deref(),
            governance: i.governance.as_ref(),
        })
        .collect();
    write(
        task_id,
        WriteKind::INTERRUPT_IDX,
        WriteKind::Interrupt,
        &stored,
    )
}

impl Record {
    /// The interrupt, with its schema (derived again if its kind derives it).
    pub(crate) fn decode(&self, kinds: &Kinds) -> Result<PendingInterrupt, serde_json::Error> {
        let mut interrupt: PendingInterrupt = serde_json::from_str(self.raw.get())?;
        if interrupt.resume_schema.is_none() {
            interrupt.resume_schema = deriving(kinds, interrupt.kind.as_deref(), &interrupt.value);
        }
        Ok(interrupt)
    }

    pub(crate) fn view(&self) -> Result<RecordView<'_>, serde_json::Error> {
        serde_json::from_str(self.raw.get())
    }
}

/// The pending writes of one checkpoint, decoded.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) results: HashMap<TaskId, ResultPayload>,
    pub(crate) errors: HashMap<TaskId, String>,
    /// Interrupts raised per task (the last write of each task).
    pub(crate) interrupts: Vec<(TaskId, Vec<Record>)>,
    /// Shared with the run's tasks (see `RunShared`).
    pub(crate) answers: Arc<HashMap<InterruptId, Value>>,
    /// Who approved interrupts that need several approvals, in the order stored.
    pub(crate) approvals: HashMap<InterruptId, Vec<String>>,
    pub(crate) resume_counts: HashMap<TaskId, usize>,
    pub(crate) commands: Vec<CommandPayload>,
    /// Unanswered interrupts of tasks that have not finished, with the task whose
    /// write holds them.
    pub(crate) pending: Vec<(TaskId, InterruptId)>,
}

impl Collected {
    /// The stored record of an interrupt.
    pub(crate) fn record(&self, id: InterruptId) -> Option<&Record> {
        self.interrupts
            .iter()
            .flat_map(|(_, list)| list)
            .find(|r| r.id == id)
    }

    /// An interrupt as stored, with the approvals it has so far.
    fn decode(
        &self,
        record: &Record,
        kinds: &Kinds,
    ) -> Result<PendingInterrupt, serde_json::Error> {
        let mut interrupt = record.decode(kinds)?;
        if let Some(who) = self.approvals.get(&record.id) {
            interrupt.approved_by = who.clone();
        }
        Ok(interrupt)
    }

    /// The decoded records of a task's interrupts that are still pending.
    pub(crate) fn pending_of(
        &self,
        task: TaskId,
        kinds: &Kinds,
    ) -> Result<Vec<PendingInterrupt>, serde_json::Error> {
        self.pending
            .iter()
            .filter(|(owner, _)| *owner == task)
            .filter_map(|(_, id)| self.record(*id))
            .map(|r| self.decode(r, kinds))
            .collect()
    }

    /// Every interrupt still waiting for an answer, as stored (undecodable ones are left
    /// out: a task raising them again stores them again).
    pub(crate) fn waiting(&self, kinds: &Kinds) -> HashMap<InterruptId, PendingInterrupt> {
        self.pending
            .iter()
            .filter_map(|(_, id)| self.record(*id))
            .filter_map(|r| Some((r.id, self.decode(r, kinds).ok()?)))
            .collect()
    }

    /// The decoded records of every interrupt a task raised.
    pub(crate) fn raised_by(
        &self,
        task: TaskId,
        kinds: &Kinds,
    ) -> Result<Vec<PendingInterrupt>, serde_json::Error> {
        self.interrupts
            .iter()
            .filter(|(owner, _)| *owner == task)
            .flat_map(|(_, list)| list)
            .map(|r| self.decode(r, kinds))
            .collect()
    }
}

/// Decodes a checkpoint's pending writes.
pub(crate) fn collect(writes: &[PendingWrite]) -> Result<Collected, serde_json::Error> {
    let mut c = Collected::default();
    let mut answers = HashMap::new();
    let mut commands: Vec<(i32, CommandPayload)> = Vec::new();
    for w in writes {
        let raw = w.value.get();
        match w.kind {
            WriteKind::Result => {
                c.results.insert(w.task_id, serde_json::from_str(raw)?);
            }
            WriteKind::Error => {
                let e: ErrorPayload = serde_json::from_str(raw)?;
                c.errors.insert(w.task_id, e.message);
            }
            WriteKind::Interrupt => {
                let list: Vec<Box<RawValue>> = serde_json::from_str(raw)?;
                let records = list
                    .into_iter()
                    .map(|raw| {
                        let header: Header = serde_json::from_str(raw.get())?;
                        Ok(Record { id: header.id, raw })
                    })
                    .collect::<Result<Vec<_>, serde_json::Error>>()?;
                c.interrupts.retain(|(t, _)| *t != w.task_id);
                c.interrupts.push((w.task_id, records));
            }
            WriteKind::Resume => {
                let r: ResumePayload = serde_json::from_str(raw)?;
                answers.insert(r.interrupt, r.value);
                *c.resume_counts.entry(w.task_id).or_default() += 1;
            }
            WriteKind::Command => commands.push((w.idx, serde_json::from_str(raw)?)),
            WriteKind::Approval => {
                let a: ApprovalPayload = serde_json::from_str(raw)?;
                c.approvals.entry(a.interrupt).or_default().push(a.reviewer);
            }
        }
    }
    c.answers = Arc::new(answers);
    commands.sort_by_key(|(idx, _)| *idx);
    c.commands = commands.into_iter().map(|(_, p)| p).collect();
    for (task, list) in &c.interrupts {
        if c.results.contains_key(task) {
            continue;
        }
        for r in list {
            if !c.answers.contains_key(&r.id) {
                c.pending.push((*task, r.id));
            }
        }
    }
    Ok(c)
}

pub(crate) fn raw(value: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("internal payloads serialize")
}

pub(crate) fn write(
    task_id: TaskId,
    idx: i32,
    kind: WriteKind,
    value: &impl Serialize,
) -> PendingWrite {
    PendingWrite {
        task_id,
        idx,
        kind,
        value: raw(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(node: &str, input: Option<&str>) -> TaskSpec {
        TaskSpec {
            node: node.into(),
            input: input.map(|i| RawValue::from_string(i.to_owned()).unwrap()),
        }
    }

    /// What a task's result is written as reads back as the payload, byte for byte.
    #[test]
    fn result_out_writes_what_result_payload_writes() {
        let update = RawValue::from_string(r#"{"messages":[{"type":"ai"}]}"#.into()).unwrap();
        let cases = [
            (Some(&*update), vec![]),
            (None, vec![spec("tools", None)]),
            (
                Some(&*update),
                vec![spec("a", Some(r#"{"x":1}"#)), spec("b", None)],
            ),
            (None, vec![]),
        ];
        for (update, goto) in cases {
            let out = serde_json::to_string(&ResultOut {
                update,
                goto: &goto,
            })
            .unwrap();
            let owned = ResultPayload {
                update: update.map(ToOwned::to_owned),
                goto: goto.clone(),
            };
            assert_eq!(out, serde_json::to_string(&owned).unwrap());
            let back: ResultPayload = serde_json::from_str(&out).unwrap();
            assert_eq!(
                back.update.as_deref().map(RawValue::get),
                update.map(RawValue::get)
            );
            assert_eq!(back.goto, goto);
        }
    }
}
