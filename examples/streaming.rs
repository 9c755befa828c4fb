//! Streaming an agent: updates and model tokens until the review, then the rest.
//!
//! Run with `cargo run -p hitl-examples --example streaming`.

use std::io::Write;

use futures_util::StreamExt;
use hitl_runtime::agent::{HumanInTheLoop, create_agent};
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    Command, InMemorySaver, Message, RunConfig, StreamEvent, StreamMode, ToolCall, ToolError, tool,
    tools,
};
use serde_json::json;

/// Run a risky operation.
#[tool(interrupt(allowed = [approve, reject]))]
async fn risky_tool(target: String) -> Result<String, ToolError> {
    Ok(format!("operation on {target} complete"))
}

async fn show(
    mut stream: hitl_runtime::RunStream<hitl_runtime::AgentState>,
) -> Result<bool, hitl_runtime::RunError> {
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Message { chunk, .. } => {
                print!("{}", chunk.content);
                for piece in &chunk.tool_call_chunks {
                    print!(
                        "{}{}",
                        piece
                            .name
                            .as_deref()
                            .map(|n| format!("\n[tool call {n}] "))
                            .unwrap_or_default(),
                        piece.args
                    );
                }
                std::io::stdout().flush().ok();
            }
            StreamEvent::Update { node, .. } => println!("\n<update from {node}>"),
            StreamEvent::Interrupt { interrupts } => {
                println!("\n<interrupt> {}", interrupts[0].value["action_requests"]);
                return Ok(true);
            }
            _ => {}
        }
    }
    Ok(false)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = ScriptedModel::turns([
        Message::assistant_with_tools(
            "I will run the risky operation now.",
            vec![ToolCall::new(
                "risky_tool",
                json!({"target": "production"}),
                "r1",
            )],
        ),
        Message::assistant("The operation finished without trouble."),
    ]);
    let agent = create_agent(model)
        .tools(tools![risky_tool])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()?;
    let cfg = RunConfig::thread("thread-1");
    let modes = StreamMode::Updates | StreamMode::Messages;

    let paused = show(agent.stream(Message::user("Run risky operation"), &cfg, modes)).await?;
    assert!(paused, "the run pauses for review");
    println!("-- approving --");
    let resume = Command::resume(json!({"decisions": [{"type": "approve"}]}));
    show(agent.stream(resume, &cfg, modes)).await?;
    println!();
    Ok(())
}
