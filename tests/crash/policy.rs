//! `hitl-crash-worker policy <v1|v2> <db> <thread> <raise|resume>`: one side of the
//! version-binding test. Two builds of the same tool, `pay`, differ in their policy:
//! a review raised by one process under v1 and answered by another process running v2
//! must be refused; answered under v1 it runs.

use hitl_runtime::agent::{Agent, HumanInTheLoop, create_agent};
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    Command, Message, ResumeError, Reviewer, RunConfig, RunError, SqliteSaver, ToolCall, tools,
};
use serde_json::json;

mod v1 {
    use hitl_runtime::{ToolError, tool};

    /// Pay someone.
    #[tool(interrupt(allowed = [approve, reject], description = "Pay {amount}", reviewers = ["finance"]))]
    pub(crate) async fn pay(amount: u64) -> Result<String, ToolError> {
        Ok(format!("v1 paid {amount}"))
    }
}

mod v2 {
    use hitl_runtime::{ToolError, tool};

    /// Pay someone (a later deployment: another reviewer role).
    #[tool(interrupt(allowed = [approve, reject], description = "Pay {amount}", reviewers = ["treasury"]))]
    pub(crate) async fn pay(amount: u64) -> Result<String, ToolError> {
        Ok(format!("v2 paid {amount}"))
    }
}

async fn agent(version: &str, db: &str) -> Agent {
    let model = ScriptedModel::turns(vec![
        Message::assistant_with_tools(
            "",
            vec![ToolCall::new("pay", json!({"amount": 40}), "call-pay")],
        ),
        Message::assistant("done"),
    ]);
    let tools = match version {
        "v1" => tools![v1::pay],
        _ => tools![v2::pay],
    };
    create_agent(model)
        .tools(tools)
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(SqliteSaver::open(db).await.expect("the database opens"))
        .build()
        .expect("a valid agent")
}

/// Prints what happened: `raised`, `ran: <tool result>`, `policy-changed <tool>`, or
/// the error.
pub(crate) async fn run(version: &str, db: &str, thread: &str, step: &str) {
    let app = agent(version, db).await;
    let cfg = RunConfig::thread(thread);
    let input = match step {
        "raise" => app.invoke(Message::user("pay"), &cfg).await,
        _ => {
            let who = Reviewer::new("alice").role("finance").role("treasury");
            app.invoke(
                Command::resume(json!({"decisions": [{"type": "approve"}]})).by(who),
                &cfg,
            )
            .await
        }
    };
    match input {
        Ok(out) if !out.interrupts.is_empty() => println!("raised"),
        Ok(out) => {
            let result = out
                .values
                .messages
                .iter()
                .filter_map(Message::as_tool)
                .map(|t| t.content.to_string())
                .collect::<Vec<_>>()
                .join("|");
            println!("ran: {result}");
        }
        Err(RunError::Resume(ResumeError::PolicyChanged { tool, .. })) => {
            println!("policy-changed {tool}");
        }
        Err(e) => println!("error: {e}"),
    }
}
