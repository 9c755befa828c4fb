//! Turning a graph's events into the server's SSE events, mode by mode.

use super::*;

/// Turns graph events into the SSE events the client asked for.
pub(crate) struct Translator<'a> {
    pub(crate) live: &'a Live,
    pub(crate) exec: &'a Exec,
    pub(crate) interrupts: Vec<PendingInterrupt>,
    /// Whether a task wrote since the last `values`: a step whose tasks wrote
    /// nothing sends no `values` (as the reference server).
    pub(crate) wrote: bool,
}

impl Translator<'_> {
    pub(crate) fn on(&mut self, ev: JsonEvent) {
        let m = self.exec.spec.modes;
        let live = self.live;
        match ev {
            JsonEvent::Values(v) => self.values(v),
            JsonEvent::Update { node, update, .. } => {
                self.wrote |= update.is_some();
                if m.updates {
                    let mut o = Map::new();
                    o.insert(node, update.unwrap_or(Value::Null));
                    live.push("updates", &Value::Object(o));
                }
            }
            JsonEvent::Message { ns, node, chunk } => {
                if m.messages {
                    let meta = json!({
                        "run_id": self.exec.run_id,
                        "thread_id": self.exec.thread_id,
                        "graph_id": self.exec.graph_id,
                        "assistant_id": self.exec.assistant_id,
                        "langgraph_node": node,
                        "langgraph_checkpoint_ns": ns,
                        "checkpoint_ns": ns,
                    });
                    live.push("messages", &json!([wire::message_chunk(&chunk), meta]));
                }
            }
            JsonEvent::Custom { value, .. } => {
                if m.custom {
                    live.push("custom", &value);
                }
            }
            JsonEvent::TaskStart {
                task_id,
                node,
                step,
            } => {
                let payload = wire::task_start(&task_id.to_string(), &node);
                if m.tasks {
                    live.push("tasks", &payload);
                }
                if m.debug {
                    live.push("debug", &debug_event(step, "task", payload));
                }
            }
            JsonEvent::TaskEnd {
                task_id,
                node,
                step,
                outcome,
            } => {
                let payload = wire::task_end(&task_id.to_string(), &node, &outcome);
                if m.tasks {
                    live.push("tasks", &payload);
                }
                if m.debug {
                    live.push("debug", &debug_event(step, "task_result", payload));
                }
            }
            JsonEvent::Checkpoint(s) => {
                if s.source == hitl_runtime::checkpoint::CheckpointSource::Input {
                    self.values(s.values.clone());
                }
                if m.checkpoints {
                    live.push(
                        "checkpoints",
                        &Value::Object(wire::checkpoint_event(&self.exec.thread_id, &s)),
                    );
                }
                if m.debug {
                    live.push(
                        "debug",
                        &wire::debug_checkpoint_event(&self.exec.thread_id, &s),
                    );
                }
            }
            JsonEvent::Interrupt(list) => self.interrupts = list,
        }
    }

    pub(crate) fn values(&mut self, v: Value) {
        if self.exec.spec.modes.values && self.wrote {
            self.live.push("values", &v);
        }
        self.wrote = false;
    }

    /// At a pause: `updates {"__interrupt__": [..]}`, then `values {.., "__interrupt__": [..]}`.
    pub(crate) fn paused(&self, values: &Value) {
        if self.interrupts.is_empty() {
            return;
        }
        let list: Vec<Value> = self.interrupts.iter().map(wire::interrupt_out).collect();
        if self.exec.spec.modes.updates {
            self.live.push("updates", &json!({ "__interrupt__": list }));
        }
        if self.exec.spec.modes.values {
            self.live.push(
                "values",
                &wire::values_with_interrupts(values, &self.interrupts),
            );
        }
    }
}

pub(crate) fn debug_event(step: i64, kind: &str, payload: Value) -> Value {
    json!({
        "step": step,
        "timestamp": crate::time::iso(crate::time::now_us()),
        "type": kind,
        "payload": payload,
    })
}
