//! Replays a scenario and prints the run's transcript as JSON, to compare hitl's
//! behaviour with the reference implementation on the same scenario.
//!
//! Run with `cargo run -p hitl-examples --example replay -- examples/scenarios/review.json`.
//!
//! # Scenario format
//!
//! ```json
//! {
//!   "input": "Mail the report to Alice",          // a user message, or a list of messages
//!   "mode": "batched",                             // or "per_call" (default "batched")
//!   "tools": [{
//!     "name": "send_email",
//!     "description": "Send an email.",
//!     "parameters": {"type": "object", ...},       // JSON schema of the arguments
//!     "interrupt": {"allowed": ["approve", "edit", "reject"],
//!                   "description": "Email {to}?"}, // optional; absent or null: not reviewed
//!     "result": "sent to {to}"                     // what the tool returns ({arg} filled in)
//!   }],
//!   "model": [ {"type": "ai", "content": "", "tool_calls": [...]},
//!              {"type": "ai", "content": "Done."} ],   // the answer of each model turn
//!   "resumes": [ {"decisions": [{"type": "approve"}]} ] // one per attempt, in order
//! }
//! ```
//!
//! Messages use LangChain's message dict format. A resume that is a JSON array answers
//! the pending interrupts in order, by id (per-call mode); anything else answers the
//! one pending interrupt. A rejected resume is recorded and the next one is tried on
//! the same pending interrupt.
//!
//! The output: `{"messages": [..final messages..], "interrupts": [..every interrupt
//! value..], "resume_errors": [..], "status": "done" | "interrupted" | "error: .."}`.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hitl_runtime::agent::{HumanInTheLoop, ReviewMode, create_agent};
use hitl_runtime::policy::render_template;
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    Command, DecisionSet, DecisionType, DynTool, InMemorySaver, Input, InterruptId,
    InterruptPolicy, Message, RunConfig, RunError, ToolContext, ToolError, ToolSet, ToolSpec,
    validate_json,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Scenario {
    input: InputSpec,
    #[serde(default)]
    mode: Option<String>,
    tools: Vec<ToolDef>,
    model: Vec<Message>,
    #[serde(default)]
    resumes: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InputSpec {
    Text(String),
    Messages(Vec<Message>),
}

#[derive(Deserialize, Clone)]
struct ToolDef {
    name: String,
    description: String,
    parameters: Value,
    #[serde(default)]
    interrupt: Option<InterruptDef>,
    result: String,
}

#[derive(Deserialize, Clone)]
struct InterruptDef {
    allowed: Vec<DecisionType>,
    #[serde(default)]
    description: Option<String>,
}

/// A tool defined by the scenario: checks its arguments against its schema and
/// returns its result template.
struct ScenarioTool {
    def: ToolDef,
    schema: Arc<Value>,
}

impl DynTool for ScenarioTool {
    fn name(&self) -> &str {
        &self.def.name
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.def.name.clone(),
            description: self.def.description.clone(),
            parameters: self.def.parameters.clone(),
        }
    }

    fn args_schema(&self) -> Arc<Value> {
        self.schema.clone()
    }

    fn policy(&self) -> Option<InterruptPolicy> {
        let def = self.def.interrupt.as_ref()?;
        let allowed = def
            .allowed
            .iter()
            .fold(DecisionSet::NONE, |s, d| s.with(*d));
        let policy = InterruptPolicy::allowing(allowed);
        Some(match &def.description {
            Some(d) => policy.description(d.as_str()),
            None => policy,
        })
    }

    fn call(&self, args: Value, _cx: ToolContext) -> BoxFuture<'static, Result<Value, ToolError>> {
        let result = match validate_json(&self.schema, &args) {
            Ok(()) => Ok(Value::String(render_template(&self.def.result, &args))),
            Err(problems) => Err(ToolError::InvalidArgs {
                tool: self.def.name.clone(),
                message: problems.join("; "),
            }),
        };
        async move { result }.boxed()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/review.json").into());
    let scenario: Scenario = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut tools = ToolSet::new();
    for def in &scenario.tools {
        tools = tools.with_dyn(Arc::new(ScenarioTool {
            schema: Arc::new(def.parameters.clone()),
            def: def.clone(),
        }));
    }
    let mode = match scenario.mode.as_deref() {
        Some("per_call") => ReviewMode::PerCall,
        None | Some("batched") => ReviewMode::Batched,
        Some(other) => {
            return Err(format!("unknown mode `{other}`: use `batched` or `per_call`").into());
        }
    };
    let agent = create_agent(ScriptedModel::turns(scenario.model))
        .tools(tools)
        .middleware(HumanInTheLoop::from_tools().mode(mode))
        .checkpointer(InMemorySaver::new())
        .build()?;
    let cfg = RunConfig::thread("replay");
    let input: Input<hitl_runtime::AgentState> = match scenario.input {
        InputSpec::Text(t) => Message::user(t).into(),
        InputSpec::Messages(m) => m.into(),
    };

    let mut interrupts = Vec::new();
    let mut errors = Vec::new();
    let mut resumes = scenario.resumes.into_iter();
    let mut result = agent.invoke(input, &cfg).await;
    let status = loop {
        let out = match result {
            Ok(out) => out,
            Err(e) => break format!("error: {e}"),
        };
        if !out.is_interrupted() {
            break "done".to_owned();
        }
        if interrupts.last()
            != Some(&json!(
                out.interrupts.iter().map(|i| &i.value).collect::<Vec<_>>()
            ))
        {
            interrupts.push(json!(
                out.interrupts.iter().map(|i| &i.value).collect::<Vec<_>>()
            ));
        }
        let Some(resume) = resumes.next() else {
            break "interrupted".to_owned();
        };
        let command = match resume {
            Value::Array(list) => {
                let ids: Vec<InterruptId> = out.interrupts.iter().map(|i| i.id).collect();
                Command::resume_by_id(ids.into_iter().zip(list))
            }
            single => Command::resume(single),
        };
        result = match agent.invoke(command, &cfg).await {
            Err(RunError::Resume(e)) => {
                errors.push(e.to_string());
                Ok(out)
            }
            other => other,
        };
    };
    let state = agent.get_state(&cfg).await?;
    let transcript = json!({
        "status": status,
        "messages": state.values.messages,
        "interrupts": interrupts.into_iter().flat_map(|v| v.as_array().cloned().unwrap_or_default()).collect::<Vec<_>>(),
        "resume_errors": errors,
    });
    println!("{}", serde_json::to_string_pretty(&transcript)?);
    Ok(())
}
