//! A tool that asks a human only when it must: transfers over 1000 pause with a typed
//! payload and take a typed answer.
//!
//! Run with `cargo run -p hitl-examples --example transfer_threshold`.

use hitl_runtime::agent::create_agent;
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    Command, InMemorySaver, Interrupt, Message, RunConfig, ToolCall, ToolContext, ToolError, tool,
    tools,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The reviewer's answer.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct TransferDecision {
    /// Whether the transfer may go ahead.
    approved: bool,
}

/// What the reviewer is shown.
#[derive(Serialize, Interrupt)]
#[interrupt(resume = TransferDecision)]
struct LargeTransfer {
    amount: f64,
    to: String,
}

/// Transfer money between accounts.
#[tool]
async fn transfer_money(cx: ToolContext, amount: f64, to: String) -> Result<String, ToolError> {
    if amount > 1000.0 {
        let decision = cx
            .interrupt(LargeTransfer {
                amount,
                to: to.clone(),
            })
            .await?;
        if !decision.approved {
            return Ok("Transaction cancelled by user".into());
        }
    }
    Ok(format!("Transferred ${amount} to {to}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = ScriptedModel::turns([
        Message::assistant_with_tools(
            "",
            vec![
                ToolCall::new(
                    "transfer_money",
                    json!({"amount": 250.0, "to": "alice"}),
                    "t1",
                ),
                ToolCall::new(
                    "transfer_money",
                    json!({"amount": 5000.0, "to": "bob"}),
                    "t2",
                ),
            ],
        ),
        Message::assistant("Both transfers are handled."),
    ]);
    let agent = create_agent(model)
        .tools(tools![transfer_money])
        .checkpointer(InMemorySaver::new())
        .build()?;
    let cfg = RunConfig::thread("payments");

    let out = agent
        .invoke(Message::user("Pay alice 250 and bob 5000."), &cfg)
        .await?;
    println!(
        "Small transfer, no question asked: {}",
        out.values.messages[2].text()
    );
    let pending = &out.interrupts[0];
    println!("Paused: {}", pending.value);
    println!(
        "Answer schema: {}",
        serde_json::to_string(pending.resume_schema.as_deref().unwrap())?
    );

    let err = agent
        .invoke(Command::resume(json!({"approved": "sure"})), &cfg)
        .await
        .unwrap_err();
    println!("A bad answer is refused and changes nothing: {err}");

    let out = agent
        .invoke(Command::resume(TransferDecision { approved: true }), &cfg)
        .await?;
    for m in &out.values.messages[2..] {
        println!("{}: {}", m.kind(), m.text());
    }
    Ok(())
}
