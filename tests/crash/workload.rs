//! The crash test's workload, shared by the worker binary and the test that checks
//! its results: an agent whose tools record every attempt in side tables and apply
//! their effect at most once per idempotency key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hitl_runtime::agent::{
    Agent, ChatModel, HumanInTheLoop, ModelError, ModelRequest, create_agent,
};
use hitl_runtime::message::AssistantMessage;
use hitl_runtime::testing::{ScriptedModel, ScriptedReviewer};
use hitl_runtime::{Checkpointer, Message, ToolCall, ToolContext, ToolError, tool, tools};
use serde_json::json;

/// Where tools record attempts and effects.
#[async_trait]
pub(crate) trait SideStore: Send + Sync + 'static {
    /// Records an attempt of `key`; `completed_before` says whether the runtime had
    /// already stored this call's result when it started it again.
    async fn attempt(&self, key: &str, tool: &str, completed_before: bool);
    /// Applies the effect of `key` at most once; returns whether this call applied it.
    async fn apply(&self, key: &str, tool: &str) -> bool;
}

/// Run context of the workload's tools.
#[derive(Clone)]
pub(crate) struct Side {
    pub(crate) store: Arc<dyn SideStore>,
    pub(crate) saver: Arc<dyn Checkpointer>,
    pub(crate) seed: u64,
}

/// A tiny xorshift, so the workload needs no random-number crate.
pub(crate) fn jitter(seed: &mut u64, max_ms: u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    Duration::from_millis(*seed % (max_ms + 1))
}

/// Whether the runtime had stored this task's result before starting it again.
async fn already_completed(cx: &ToolContext, side: &Side) -> bool {
    let Some(node) = cx.node_context() else {
        return false;
    };
    let Ok(Some(stored)) = side
        .saver
        .get(
            node.thread_id(),
            node.namespace(),
            Some(node.checkpoint_id()),
            None,
        )
        .await
    else {
        return false;
    };
    stored.writes.iter().any(|w| {
        w.task_id == node.task_id() && w.kind == hitl_runtime::checkpoint::WriteKind::Result
    })
}

/// The side store of a process whose runs carry no context (the crash test's servers:
/// runs come from HTTP requests).
pub(crate) static SIDE: std::sync::OnceLock<Side> = std::sync::OnceLock::new();

async fn effect(cx: &ToolContext, tool: &str) -> Result<String, ToolError> {
    let side = cx
        .context::<Side>()
        .or_else(|| SIDE.get())
        .expect("the worker passes its side store")
        .clone();
    let key = cx.idempotency_key();
    let completed = already_completed(cx, &side).await;
    side.store.attempt(&key, tool, completed).await;
    let mut seed = side.seed ^ key.len() as u64 ^ key.bytes().map(u64::from).sum::<u64>();
    tokio::time::sleep(jitter(&mut seed, 8)).await;
    side.store.apply(&key, tool).await;
    tokio::time::sleep(jitter(&mut seed, 4)).await;
    Ok(format!("{tool} done"))
}

/// Send an email (reviewed).
#[tool(interrupt(allowed = [approve, reject]))]
pub(crate) async fn send_email(cx: ToolContext, to: String) -> Result<String, ToolError> {
    let _ = to;
    effect(&cx, "send_email").await
}

/// Charge a card (reviewed).
#[tool(interrupt(allowed = [approve, reject]))]
pub(crate) async fn charge(cx: ToolContext, cents: u64) -> Result<String, ToolError> {
    let _ = cents;
    effect(&cx, "charge").await
}

/// Log an event (not reviewed).
#[tool]
pub(crate) async fn log_event(cx: ToolContext, event: String) -> Result<String, ToolError> {
    let _ = event;
    effect(&cx, "log_event").await
}

/// A scripted model that takes a few milliseconds, so kills land mid-run.
struct SlowModel(ScriptedModel);

#[async_trait]
impl ChatModel for SlowModel {
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        let mut seed = request.messages.len() as u64 * 7919 + 1;
        tokio::time::sleep(jitter(&mut seed, 6)).await;
        self.0.invoke(request).await
    }
}

/// The agent: one turn proposing three calls, then a final answer.
pub(crate) fn agent(saver: Arc<dyn Checkpointer>) -> Agent {
    let model = ScriptedModel::turns([
        Message::assistant_with_tools(
            "",
            vec![
                ToolCall::new("send_email", json!({"to": "ann@example.com"}), "c_email"),
                ToolCall::new("charge", json!({"cents": 4200}), "c_charge"),
                ToolCall::new("log_event", json!({"event": "checkout"}), "c_log"),
            ],
        ),
        Message::assistant("All done."),
    ]);
    create_agent(SlowModel(model))
        .tools(tools![send_email, charge, log_event])
        .middleware(HumanInTheLoop::from_tools())
        // A killed worker's lease expires quickly, so its restart can continue.
        .run_lease(Duration::from_millis(600))
        .checkpointer_arc(saver)
        .build()
        .expect("a valid agent")
}

/// The reviewer's decisions for thread `i`: every third thread's charge is rejected.
pub(crate) fn reviewer(i: usize) -> ScriptedReviewer {
    let r = ScriptedReviewer::new().approve::<send_email>();
    if i.is_multiple_of(3) {
        r.reject::<charge>("over budget")
    } else {
        r.approve::<charge>()
    }
}

/// Whether thread `i`'s charge is approved.
pub(crate) fn charge_approved(i: usize) -> bool {
    !i.is_multiple_of(3)
}

pub(crate) fn thread_name(i: usize) -> String {
    format!("order-{i}")
}

/// Where the lease race's tool leaves its marks (run context).
#[derive(Clone, Debug)]
pub(crate) struct RaceDir(pub(crate) std::path::PathBuf);

/// Send an email slowly (reviewed): records each run in `effects.log`, marks that it
/// started, then holds until the test creates `release`.
#[tool(interrupt(allowed = [approve, reject]))]
pub(crate) async fn slow_send(cx: ToolContext, to: String) -> Result<String, ToolError> {
    use std::io::Write;
    let dir = cx
        .context::<RaceDir>()
        .expect("the test passes its directory")
        .0
        .clone();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("effects.log"))
        .map_err(ToolError::msg)?;
    writeln!(log, "sent to {to} by process {}", std::process::id()).map_err(ToolError::msg)?;
    std::fs::write(dir.join("started"), b"").map_err(ToolError::msg)?;
    while !dir.join("release").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(format!("sent to {to}"))
}

/// The lease race's agent: one reviewed, slow call, then a final answer.
pub(crate) fn race_agent(saver: Arc<dyn Checkpointer>) -> Agent {
    create_agent(ScriptedModel::turns([
        Message::assistant_with_tools(
            "",
            vec![ToolCall::new("slow_send", json!({"to": "ann"}), "c1")],
        ),
        Message::assistant("Sent."),
    ]))
    .tools(tools![slow_send])
    .middleware(HumanInTheLoop::from_tools())
    .checkpointer_arc(saver)
    .build()
    .expect("a valid agent")
}
