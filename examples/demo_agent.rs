//! The scripted demo agent shared by the `approval_cli` and `server` examples: three
//! tools on a pretend workspace, and a model that reads the notes, then proposes a
//! reviewed deletion and a reviewed email, then reports what happened.

use hitl_runtime::agent::{Agent, ChatModel, HumanInTheLoop, create_agent};
use hitl_runtime::message::AssistantMessage;
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{Checkpointer, Message, ToolCall, ToolError, tool, tools};
use serde_json::json;

/// Read a file of the workspace.
#[tool]
async fn read_file(
    /// Path relative to the workspace.
    path: String,
) -> Result<String, ToolError> {
    Ok(match path.as_str() {
        "notes.txt" => "TODO: remove old-report.txt, tell Bob when the cleanup is done.".into(),
        other => format!("(contents of {other})"),
    })
}

/// Delete a file of the workspace. This cannot be undone.
#[tool(interrupt(allowed = [approve, reject], description = "Delete {path}? This cannot be undone."))]
async fn delete_file(
    /// Path relative to the workspace.
    path: String,
) -> Result<String, ToolError> {
    Ok(format!(
        "Deleted {path} (pretend: the demo workspace is not real)."
    ))
}

/// Send an email.
#[tool(interrupt(allowed = [approve, edit, reject, respond], description = "Send an email to {to}?"))]
async fn send_email(
    /// Recipient address.
    to: String,
    /// Subject line.
    subject: String,
    /// Text of the email.
    body: String,
) -> Result<String, ToolError> {
    Ok(format!("Sent \"{subject}\" to {to} (pretend): {body}"))
}

/// The demo's model: reads the notes, then proposes the two risky calls, then
/// reports what happened (its answer depends only on the conversation).
pub(crate) fn scripted_model() -> ScriptedModel {
    ScriptedModel::from_fn(|messages| {
        let turn = messages
            .iter()
            .filter(|m| m.as_assistant().is_some())
            .count();
        let calls = match turn {
            0 => vec![ToolCall::new(
                "read_file",
                json!({"path": "notes.txt"}),
                "call_read",
            )],
            1 => vec![
                ToolCall::new(
                    "delete_file",
                    json!({"path": "old-report.txt"}),
                    "call_delete",
                ),
                ToolCall::new(
                    "send_email",
                    json!({"to": "bob@example.com", "subject": "Cleanup", "body": "The workspace is clean."}),
                    "call_email",
                ),
            ],
            _ => {
                let report: Vec<String> = messages
                    .iter()
                    .rev()
                    .take_while(|m| m.as_assistant().is_none())
                    .filter_map(Message::as_tool)
                    .map(|t| format!("- {}: {}", t.name.as_deref().unwrap_or("?"), t.content))
                    .collect();
                let text = format!(
                    "Here is what happened:\n{}",
                    report.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
                return Ok(AssistantMessage {
                    content: text.into(),
                    ..Default::default()
                });
            }
        };
        Ok(AssistantMessage {
            tool_calls: calls,
            ..Default::default()
        })
    })
}

/// The demo agent around `model`, with its threads in `saver`.
pub(crate) fn agent_with(
    model: impl ChatModel,
    saver: impl Checkpointer,
) -> Result<Agent, Box<dyn std::error::Error>> {
    Ok(create_agent(model)
        .system_prompt("You manage a small file workspace. Use the tools; risky actions are reviewed by a human.")
        .tools(tools![read_file, delete_file, send_email])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(saver)
        .build()?)
}

/// Pay an invoice.
#[tool(interrupt(
    allowed = [approve, edit, reject],
    description = "Pay {amount} EUR to {to}",
    expires = "4h",
    on_timeout = reject("No answer within 4 hours"),
    reviewers = ["finance"],
))]
async fn pay(
    /// Whole euros.
    amount: u64,
    /// Who is paid.
    to: String,
) -> Result<String, ToolError> {
    Ok(format!("Paid {amount} EUR to {to} (pretend)."))
}

/// The `payments` agent of the server example: it proposes one payment, which only
/// someone with the role `finance` may decide within four hours, then reports.
#[allow(dead_code)] // used by the server example only
pub(crate) fn payments_with(saver: impl Checkpointer) -> Result<Agent, Box<dyn std::error::Error>> {
    let model = ScriptedModel::from_fn(|messages| {
        if let Some(result) = messages.last().and_then(Message::as_tool) {
            return Ok(AssistantMessage {
                content: format!("Payment outcome: {}", result.content).into(),
                ..Default::default()
            });
        }
        Ok(AssistantMessage {
            tool_calls: vec![ToolCall::new(
                "pay",
                json!({"amount": 1200, "to": "ACME GmbH"}),
                format!("call_pay_{}", messages.len()),
            )],
            ..Default::default()
        })
    });
    Ok(create_agent(model)
        .tools(tools![pay])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(saver)
        .build()?)
}
