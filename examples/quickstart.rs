//! A graph that pauses for a human and resumes from its checkpoint.
//!
//! Run with `cargo run -p hitl-examples --example quickstart`.

use std::sync::Arc;

use hitl_runtime::{
    Command, END, InMemorySaver, Interrupt, NodeContext, NodeError, RunConfig, START, State,
    StateGraph,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Order {
    amount: u32,
    #[state(reducer = append)]
    log: Vec<String>,
}

/// What the reviewer answers.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Decision {
    approved: bool,
}

/// What the reviewer sees.
#[derive(Serialize, Interrupt)]
#[interrupt(resume = Decision)]
struct ApproveOrder {
    amount: u32,
}

async fn review(order: Arc<Order>, cx: NodeContext) -> Result<OrderUpdate, NodeError> {
    let decision = cx
        .interrupt(ApproveOrder {
            amount: order.amount,
        })
        .await?;
    let verdict = if decision.approved {
        "approved"
    } else {
        "rejected"
    };
    Ok(OrderUpdate::default().log(vec![format!("order of {} {verdict}", order.amount)]))
}

async fn ship(order: Arc<Order>, _: NodeContext) -> Result<OrderUpdate, NodeError> {
    Ok(OrderUpdate::default().log(vec![format!("shipped {}", order.amount)]))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = StateGraph::<Order>::new();
    let review = g.add_node("review", review);
    let ship = g.add_node("ship", ship);
    g.add_edge(START, review);
    g.add_edge(review, ship);
    g.add_edge(ship, END);
    let app = g.compile().checkpointer(InMemorySaver::new()).build()?;

    let cfg = RunConfig::thread("order-42");
    let out = app
        .invoke(OrderUpdate::default().amount(1200), &cfg)
        .await?;
    for interrupt in &out.interrupts {
        println!("paused at `{}`: {}", interrupt.node, interrupt.value);
        println!(
            "it accepts: {}",
            serde_json::to_string(interrupt.resume_schema.as_deref().unwrap())?
        );
    }

    // A wrong answer is rejected and changes nothing.
    let err = app
        .invoke(
            Command::resume(serde_json::json!({"approved": "sure"})),
            &cfg,
        )
        .await
        .unwrap_err();
    println!("rejected: {err}");

    let out = app
        .invoke(Command::resume(Decision { approved: true }), &cfg)
        .await?;
    println!("done: {:?}", out.values.log);
    Ok(())
}
