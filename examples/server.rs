//! The demo agent of `approval_cli`, served over LangGraph Server's HTTP API.
//!
//! Run with `cargo run -p hitl-examples --example server -- --port 2024`, then talk
//! to it with the official SDKs (`pip install langgraph-sdk`,
//! `npm install @langchain/langgraph-sdk`), Agent Chat UI or Agent Inbox, at
//! `http://127.0.0.1:2024`, graph (assistant) `agent`.
//!
//! A graph `payments` proposes one payment that only a reviewer with the role
//! `finance` may decide, within four hours (then it is rejected by the server).
//!
//! The reviewer inbox is at `http://127.0.0.1:2024/inbox`.
//!
//! A graph `approve` asks a human to approve an item in its one node (input
//! `{"item": ".."}`, resume `{"approved": true}`): the graph of the HTTP benchmark
//! (`bench/http/`).
//!
//! A graph `slow` sleeps in its one node (`--slow-secs`, default 30) and
//! records `{"done": true}`: something to cancel, or to be busy with while you try
//! the multitask strategies.
//!
//! Options: `--port <n>` (default 2024), `--host <ip>` (default 127.0.0.1), `--db
//! <file>` (threads, checkpoints and runs; default `hitl-server.db`), `--postgres
//! <url>` (instead of the file: checkpoints, records and the run queue on Postgres, so
//! several server processes can share the work and take over each other's runs), `--tokens
//! <file>` (require bearer tokens, listed in a JSON file: `{"tokens": [{"token":
//! "...", "id": "alice", "roles": ["reviewer"]}]}`).

use std::time::Duration;

use clap::Parser;
use hitl_runtime::{
    Checkpointer, CompiledGraph, END, Interrupt, NodeContext, PostgresSaver, START, SqliteSaver,
    State, StateGraph,
};
use hitl_server::{BearerTokens, Server, Store};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod demo_agent;
use demo_agent::{agent_with, payments_with, scripted_model};

#[derive(Debug, Parser)]
#[command(about = "Serve the demo agent over the LangGraph Server API")]
struct Args {
    /// The port to listen on.
    #[arg(long, default_value_t = 2024)]
    port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The SQLite file for threads, checkpoints and runs.
    #[arg(long, default_value = "hitl-server.db")]
    db: String,
    /// A Postgres database for threads, checkpoints and runs, shared by every server
    /// process started with it (instead of `--db`).
    #[arg(long)]
    postgres: Option<String>,
    /// A JSON file of bearer tokens; without it the server is open.
    #[arg(long)]
    tokens: Option<String>,
    /// How long the `slow` graph's node sleeps, in seconds.
    #[arg(long, default_value_t = 30)]
    slow_secs: u64,
}

/// The state of the `slow` graph.
#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Slow {
    #[serde(default)]
    done: bool,
}

/// The state of the `approve` graph.
#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Approve {
    #[serde(default)]
    item: String,
    #[serde(default)]
    approved: Option<bool>,
}

/// What the `approve` graph asks.
#[derive(Serialize, Deserialize, Interrupt)]
#[interrupt(resume = Approval)]
struct AskApproval {
    item: String,
}

/// The answer.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Approval {
    approved: bool,
}

fn approve_graph(
    saver: impl Checkpointer,
) -> Result<CompiledGraph<Approve>, Box<dyn std::error::Error>> {
    let mut g = StateGraph::<Approve>::new();
    let ask = g.add_node(
        "ask",
        |s: std::sync::Arc<Approve>, cx: NodeContext| async move {
            let answer = cx
                .interrupt(AskApproval {
                    item: s.item.clone(),
                })
                .await?;
            Ok(ApproveUpdate::default().approved(Some(answer.approved)))
        },
    );
    g.add_edge(START, ask);
    g.add_edge(ask, END);
    Ok(g.compile().checkpointer(saver).build()?)
}

fn slow_graph(
    secs: u64,
    saver: impl Checkpointer,
) -> Result<CompiledGraph<Slow>, Box<dyn std::error::Error>> {
    let mut g = StateGraph::<Slow>::new();
    let step = g.add_node("slow_step", move |_, _| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok(SlowUpdate::default().done(true))
    });
    g.add_edge(START, step);
    g.add_edge(step, END);
    Ok(g.compile().checkpointer(saver).build()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (agent, payments, slow, approve, store, place) = match &args.postgres {
        Some(url) => {
            let saver = PostgresSaver::connect(url).await?;
            (
                agent_with(scripted_model(), saver.clone())?,
                payments_with(saver.clone())?,
                slow_graph(args.slow_secs, saver.clone())?,
                approve_graph(saver)?,
                Store::postgres(url.as_str()).connect().await?,
                "Postgres".to_owned(),
            )
        }
        None => {
            let saver = SqliteSaver::open(&args.db).await?;
            (
                agent_with(scripted_model(), saver.clone())?,
                payments_with(saver.clone())?,
                slow_graph(args.slow_secs, saver.clone())?,
                approve_graph(saver)?,
                Store::sqlite(&args.db),
                args.db.clone(),
            )
        }
    };
    let mut builder = Server::builder()
        .graph("agent", agent)
        .graph("payments", payments)
        .graph("slow", slow)
        .graph("approve", approve)
        .store(store);
    if let Some(path) = &args.tokens {
        builder = builder.auth(BearerTokens::from_file(path)?);
    }
    let server = builder.build()?;
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "Serving graphs `agent`, `payments`, `approve` and `slow` at http://{} (threads in {}); reviewer inbox at http://{0}/inbox. Ctrl-C stops.",
        listener.local_addr()?,
        place
    );
    server
        .serve_with_shutdown(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
