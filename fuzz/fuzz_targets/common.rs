//! What the targets share: a runtime and a small reviewed agent.

use std::sync::OnceLock;

use hitl_runtime::agent::{Agent, HumanInTheLoop, create_agent};
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{InMemorySaver, Message, ToolCall, ToolError, tool, tools};
use serde_json::json;

/// Move money.
#[tool(interrupt(allowed = [approve, edit, reject, respond], description = "Pay {amount} to {to}"))]
pub async fn transfer(amount: u32, to: String, memo: Option<String>) -> Result<String, ToolError> {
    Ok(format!("paid {amount} to {to} ({memo:?})"))
}

/// Read a file.
#[tool]
pub async fn read_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// An agent whose model asks to pay and read once, then answers.
pub fn agent() -> Agent {
    create_agent(ScriptedModel::turns([
        Message::assistant_with_tools(
            "",
            vec![
                ToolCall::new("transfer", json!({"amount": 10, "to": "bob"}), "t1"),
                ToolCall::new("read_file", json!({"path": "a"}), "r1"),
            ],
        ),
        Message::assistant("done"),
    ]))
    .tools(tools![transfer, read_file])
    .middleware(HumanInTheLoop::from_tools())
    .checkpointer(InMemorySaver::new())
    .build()
    .unwrap()
}
