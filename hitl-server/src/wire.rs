//! The JSON shapes of the API, in the reference server's key order.

use hitl_runtime::checkpoint::CheckpointSource;
use hitl_runtime::message::MessageChunk;
use hitl_runtime::{CheckpointId, Governance, PendingInterrupt, TaskInfo, TaskOutcome};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::graph::JsonSnapshot;
use crate::store::{RunRecord, ThreadRecord};
use crate::time::{iso, micros};

/// An interrupt in a thread, a state or a join fallback: `{id, value}`.
#[derive(Serialize)]
pub(crate) struct InterruptRef<'a> {
    id: String,
    value: &'a Value,
    /// hitl's addition, only on interrupts with rules (a deadline, roles, several
    /// approvals): the rules, when it was raised, the policy digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    governance: Option<&'a Governance>,
    /// hitl's addition: who approved so far, when several approvals are needed.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    approved_by: &'a [String],
}

pub(crate) fn interrupt_ref(i: &PendingInterrupt) -> InterruptRef<'_> {
    InterruptRef {
        id: i.id.to_string(),
        value: &i.value,
        governance: i.governance.as_ref().filter(|g| g.has_rules()),
        approved_by: &i.approved_by,
    }
}

/// An interrupt in stream and wait output: `{value, id, response_schema}`.
pub(crate) fn interrupt_out(i: &PendingInterrupt) -> Value {
    #[derive(Serialize)]
    struct Out<'a> {
        value: &'a Value,
        id: String,
        response_schema: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        governance: Option<&'a Governance>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        approved_by: &'a [String],
    }
    serde_json::to_value(Out {
        value: &i.value,
        id: i.id.to_string(),
        response_schema: i.resume_schema.as_deref(),
        governance: i.governance.as_ref().filter(|g| g.has_rules()),
        approved_by: &i.approved_by,
    })
    .unwrap_or(Value::Null)
}

/// `thread.interrupts`: task id → its pending interrupts.
pub(crate) fn interrupts_by_task(list: &[PendingInterrupt]) -> Map<String, Value> {
    let mut out = Map::new();
    for i in list {
        let entry = out
            .entry(i.task_id.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            a.push(serde_json::to_value(interrupt_ref(i)).unwrap_or(Value::Null));
        }
    }
    out
}

/// The values of a paused run with its interrupts added under `__interrupt__`.
pub(crate) fn values_with_interrupts(values: &Value, interrupts: &[PendingInterrupt]) -> Value {
    let list = Value::Array(interrupts.iter().map(interrupt_out).collect());
    match values {
        Value::Object(m) => {
            let mut m = m.clone();
            m.insert("__interrupt__".into(), list);
            Value::Object(m)
        }
        _ => json!({ "__interrupt__": list }),
    }
}

#[derive(Serialize)]
pub(crate) struct AssistantJson<'a> {
    pub(crate) assistant_id: String,
    pub(crate) graph_id: &'a str,
    pub(crate) config: Value,
    pub(crate) context: Value,
    pub(crate) metadata: Value,
    pub(crate) name: &'a str,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) version: u32,
    pub(crate) description: Option<String>,
}

/// A thread: the fresh shape (8 keys) until it is bound to a graph, then with
/// `error` and `interrupts`.
#[derive(Serialize)]
pub(crate) struct ThreadJson {
    thread_id: String,
    created_at: String,
    updated_at: String,
    state_updated_at: String,
    metadata: Map<String, Value>,
    status: &'static str,
    config: Value,
    values: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupts: Option<Map<String, Value>>,
}

/// The API form of a thread record, with its state if it has one.
pub(crate) fn thread_json(
    t: &ThreadRecord,
    status: &'static str,
    state: Option<&JsonSnapshot>,
) -> ThreadJson {
    let bound = t.graph_id.is_some();
    ThreadJson {
        thread_id: t.thread_id.clone(),
        created_at: iso(t.created_at),
        updated_at: iso(t.updated_at),
        state_updated_at: iso(t.state_updated_at),
        metadata: t.metadata.clone(),
        status,
        config: if bound {
            json!({"configurable": {}})
        } else {
            json!({})
        },
        values: state.map_or(Value::Null, |s| s.values.clone()),
        error: bound.then(|| t.error.clone().unwrap_or(Value::Null)),
        interrupts: bound.then(|| {
            state
                .map(|s| interrupts_by_task(&s.interrupts))
                .unwrap_or_default()
        }),
    }
}

#[derive(Serialize)]
pub(crate) struct RunJson<'a> {
    run_id: &'a str,
    thread_id: &'a str,
    assistant_id: &'a str,
    metadata: &'a Map<String, Value>,
    status: &'static str,
    kwargs: &'a Value,
    multitask_strategy: &'static str,
    created_at: String,
    updated_at: String,
    langsmith_session_name: Option<()>,
}

pub(crate) fn run_json(r: &RunRecord) -> RunJson<'_> {
    RunJson {
        run_id: &r.run_id,
        thread_id: &r.thread_id,
        assistant_id: &r.assistant_id,
        metadata: &r.metadata,
        status: r.status.as_str(),
        kwargs: &r.kwargs,
        multitask_strategy: r.multitask_strategy.as_str(),
        created_at: iso(r.created_at),
        updated_at: iso(r.updated_at),
        langsmith_session_name: None,
    }
}

#[derive(Serialize)]
pub(crate) struct CheckpointRef<'a> {
    checkpoint_id: String,
    thread_id: &'a str,
    checkpoint_ns: &'static str,
}

fn checkpoint_ref(thread_id: &str, id: CheckpointId) -> CheckpointRef<'_> {
    CheckpointRef {
        checkpoint_id: id.to_string(),
        thread_id,
        checkpoint_ns: "",
    }
}

#[derive(Serialize)]
struct TaskJson<'a> {
    id: String,
    name: &'a str,
    path: [&'a str; 2],
    error: Option<&'a str>,
    interrupts: Vec<InterruptRef<'a>>,
    checkpoint: Option<()>,
    state: Option<()>,
    result: Option<&'a Value>,
}

fn task_json(t: &TaskInfo) -> TaskJson<'_> {
    TaskJson {
        id: t.id.to_string(),
        name: &t.name,
        path: ["__pregel_pull", &t.name],
        error: t.error.as_deref(),
        interrupts: t.interrupts.iter().map(interrupt_ref).collect(),
        checkpoint: None,
        state: None,
        result: t.result.as_ref(),
    }
}

/// A checkpoint's metadata as the API shows it: the run's metadata plus `source`,
/// `step` and `parents`.
fn metadata_json(s: &JsonSnapshot) -> Map<String, Value> {
    let mut m = s.metadata.clone();
    m.insert("source".into(), json!(source_name(s.source)));
    m.insert("step".into(), json!(s.step));
    m.insert("parents".into(), json!({}));
    m
}

fn source_name(s: CheckpointSource) -> &'static str {
    match s {
        CheckpointSource::Input => "input",
        CheckpointSource::Loop => "loop",
        CheckpointSource::Update => "update",
        CheckpointSource::Fork => "fork",
    }
}

#[derive(Serialize)]
pub(crate) struct StateJson<'a> {
    values: Value,
    next: &'a [String],
    tasks: Vec<TaskJson<'a>>,
    metadata: Option<Map<String, Value>>,
    created_at: Option<String>,
    checkpoint: Option<CheckpointRef<'a>>,
    parent_checkpoint: Option<CheckpointRef<'a>>,
    interrupts: Vec<InterruptRef<'a>>,
    checkpoint_id: Option<String>,
    parent_checkpoint_id: Option<String>,
}

/// A thread state (`GET /threads/{id}/state`, history entries).
pub(crate) fn state_json<'a>(thread_id: &'a str, s: &'a JsonSnapshot) -> StateJson<'a> {
    StateJson {
        values: s.values.clone(),
        next: &s.next,
        tasks: s.tasks.iter().map(task_json).collect(),
        metadata: Some(metadata_json(s)),
        created_at: Some(iso(micros(s.created_at))),
        checkpoint: Some(checkpoint_ref(thread_id, s.checkpoint_id)),
        parent_checkpoint: s.parent_checkpoint_id.map(|p| checkpoint_ref(thread_id, p)),
        interrupts: s.interrupts.iter().map(interrupt_ref).collect(),
        checkpoint_id: Some(s.checkpoint_id.to_string()),
        parent_checkpoint_id: s.parent_checkpoint_id.map(|p| p.to_string()),
    }
}

/// The state of a thread that has no checkpoint.
pub(crate) fn empty_state_json() -> StateJson<'static> {
    StateJson {
        values: json!({}),
        next: &[],
        tasks: Vec::new(),
        metadata: None,
        created_at: None,
        checkpoint: None,
        parent_checkpoint: None,
        interrupts: Vec::new(),
        checkpoint_id: None,
        parent_checkpoint_id: None,
    }
}

/// The answer to `POST /threads/{id}/state`.
pub(crate) fn update_state_json(thread_id: &str, id: CheckpointId) -> Value {
    #[derive(Serialize)]
    struct Conf<'a> {
        thread_id: &'a str,
        checkpoint_ns: &'static str,
        checkpoint_id: String,
    }
    let conf = || Conf {
        thread_id,
        checkpoint_ns: "",
        checkpoint_id: id.to_string(),
    };
    #[derive(Serialize)]
    struct Out<'a> {
        checkpoint: Conf<'a>,
        configurable: Conf<'a>,
        checkpoint_id: String,
    }
    serde_json::to_value(Out {
        checkpoint: conf(),
        configurable: conf(),
        checkpoint_id: id.to_string(),
    })
    .unwrap_or(Value::Null)
}

fn config_of(thread_id: &str, id: CheckpointId) -> Value {
    json!({"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": id.to_string()}})
}

/// The data of a `checkpoints` event.
pub(crate) fn checkpoint_event(thread_id: &str, s: &JsonSnapshot) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("config".into(), config_of(thread_id, s.checkpoint_id));
    m.insert(
        "parent_config".into(),
        s.parent_checkpoint_id
            .map_or(Value::Null, |p| config_of(thread_id, p)),
    );
    m.insert("values".into(), s.values.clone());
    m.insert("metadata".into(), Value::Object(metadata_json(s)));
    m.insert("next".into(), json!(s.next));
    m.insert(
        "tasks".into(),
        Value::Array(
            s.tasks
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id.to_string(),
                        "name": t.name,
                        "interrupts": t.interrupts.iter().map(interrupt_out).collect::<Vec<_>>(),
                        "state": null,
                    })
                })
                .collect(),
        ),
    );
    m
}

/// The data of a `debug` event of type `checkpoint`.
pub(crate) fn debug_checkpoint_event(thread_id: &str, s: &JsonSnapshot) -> Value {
    let mut payload = checkpoint_event(thread_id, s);
    payload.insert(
        "checkpoint".into(),
        serde_json::to_value(checkpoint_ref(thread_id, s.checkpoint_id)).unwrap_or(Value::Null),
    );
    payload.insert(
        "parent_checkpoint".into(),
        s.parent_checkpoint_id.map_or(Value::Null, |p| {
            serde_json::to_value(checkpoint_ref(thread_id, p)).unwrap_or(Value::Null)
        }),
    );
    json!({
        "step": s.step,
        "timestamp": iso(micros(s.created_at)),
        "type": "checkpoint",
        "payload": payload,
    })
}

/// The payload of a task start (`tasks` mode, `debug` type `task`).
pub(crate) fn task_start(task_id: &str, node: &str) -> Value {
    json!({"id": task_id, "name": node, "input": null, "triggers": [], "metadata": {}})
}

/// The payload of a task end (`tasks` mode, `debug` type `task_result`).
pub(crate) fn task_end(task_id: &str, node: &str, outcome: &TaskOutcome) -> Value {
    let (error, result, interrupts) = match outcome {
        TaskOutcome::Finished(update) => (
            Value::Null,
            update.clone().unwrap_or(Value::Null),
            Vec::new(),
        ),
        TaskOutcome::Failed(message) => (json!(message), Value::Null, Vec::new()),
        TaskOutcome::Interrupted(list) => (
            Value::Null,
            json!({}),
            list.iter().map(interrupt_out).collect(),
        ),
        _ => (Value::Null, Value::Null, Vec::new()),
    };
    json!({"id": task_id, "name": node, "error": error, "result": result, "interrupts": interrupts})
}

/// A model token chunk as LangChain's `AIMessageChunk` dict.
pub(crate) fn message_chunk(chunk: &MessageChunk) -> Value {
    json!({
        "content": chunk.content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": "AIMessageChunk",
        "name": null,
        "id": chunk.id,
        "tool_calls": [],
        "invalid_tool_calls": [],
        "usage_metadata": null,
        "tool_call_chunks": chunk.tool_call_chunks.iter().map(|c| json!({
            "name": c.name,
            "args": c.args,
            "id": c.id,
            "index": c.index,
            "type": "tool_call_chunk",
        })).collect::<Vec<_>>(),
    })
}
