//! Helpers shared by the integration tests: event logs and id redaction.

use std::collections::HashMap;
use std::fmt::Write;

use futures_util::StreamExt;
use hitl_runtime::{RunError, RunStream, State, StreamEvent, TaskOutcome};

/// Replaces run-to-run values with stable placeholders: 32-hex ids become `<id1>`,
/// `<id2>`, ... and UUIDs become `<cp1>`, ... (numbered by first appearance).
#[derive(Default)]
pub(crate) struct Redactor {
    ids: HashMap<String, String>,
    hex: usize,
    uuid: usize,
}

impl Redactor {
    pub(crate) fn redact(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_hexdigit() || chars[i] == '-') {
                i += 1;
            }
            if i == start {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let token: String = chars[start..i].iter().collect();
            let boundary_ok = (start == 0 || !chars[start - 1].is_ascii_alphanumeric())
                && (i == chars.len() || !chars[i].is_ascii_alphanumeric());
            let is_hex32 = token.len() == 32 && !token.contains('-');
            let is_uuid =
                token.len() == 36 && token.split('-').map(str::len).eq([8usize, 4, 4, 4, 12]);
            if boundary_ok && (is_hex32 || is_uuid) {
                let next = if is_hex32 {
                    &mut self.hex
                } else {
                    &mut self.uuid
                };
                let prefix = if is_hex32 { "id" } else { "cp" };
                let label = self
                    .ids
                    .entry(token)
                    .or_insert_with(|| {
                        *next += 1;
                        format!("<{prefix}{next}>")
                    })
                    .clone();
                out.push_str(&label);
            } else {
                out.push_str(&token);
            }
        }
        out
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

/// Renders one stream event as one line.
pub(crate) fn render<S: State>(event: &StreamEvent<S>) -> String {
    match event {
        StreamEvent::Values { values } => format!("values {}", json(&**values)),
        StreamEvent::Update { node, update, .. } => format!("update {node}: {}", json(update)),
        StreamEvent::Message { node, chunk, .. } => format!("message {node}: {}", json(chunk)),
        StreamEvent::Custom { node, value, .. } => format!("custom {node}: {value}"),
        StreamEvent::TaskStart { node, step, .. } => format!("task start {node} (step {step})"),
        StreamEvent::TaskEnd { node, outcome, .. } => match outcome {
            TaskOutcome::Finished(u) => format!("task end {node}: finished {}", json(u)),
            TaskOutcome::Failed(m) => format!("task end {node}: failed: {m}"),
            TaskOutcome::Interrupted(list) => format!(
                "task end {node}: interrupted {}",
                list.iter()
                    .map(|i| i.id.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => format!("task end {node}: {other:?}"),
        },
        StreamEvent::Checkpoint(s) => format!(
            "checkpoint step {} {:?} next={:?}",
            s.step, s.source, s.next
        ),
        StreamEvent::Interrupt { interrupts } => {
            let mut line = String::from("interrupt [");
            for (k, i) in interrupts.iter().enumerate() {
                if k > 0 {
                    line.push_str(", ");
                }
                write!(line, "{} {} {}", i.id, i.node, i.value).unwrap();
            }
            line.push(']');
            line
        }
        other => format!("{other:?}"),
    }
}

/// Drains a stream into a log, one line per event; a run error ends it as `error: ..`.
pub(crate) async fn log_stream<S: State>(
    mut stream: RunStream<S>,
    redactor: &mut Redactor,
) -> String {
    let mut lines = Vec::new();
    while let Some(item) = stream.next().await {
        lines.push(match item {
            Ok(e) => render(&e),
            Err(e) => format!("error: {e}"),
        });
    }
    redactor.redact(&lines.join("\n"))
}

/// The events of a stream, and the error that ended it, if any.
pub(crate) async fn collect_stream<S: State>(
    mut stream: RunStream<S>,
) -> (Vec<StreamEvent<S>>, Option<RunError>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

#[test]
fn redactor_numbers_ids_by_first_appearance() {
    let mut r = Redactor::default();
    let a = "0123456789abcdef0123456789abcdef";
    let u = "01890a5d-ac96-774b-bcce-b302099a8057";
    assert_eq!(
        r.redact(&format!("{a} {u} {a} x{a}")),
        format!("<id1> <cp1> <id1> x{a}")
    );
}
