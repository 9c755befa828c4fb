use std::sync::Arc;

use hitl_runtime::{NodeContext, NodeError, START, State, StateGraph};
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    step: u32,
}

async fn ask(_: Arc<Flow>, _: NodeContext) -> Result<FlowUpdate, NodeError> {
    Ok(FlowUpdate::default())
}

fn main() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("ask", ask);
    g.add_edge(START, a);
    // Edges take node handles: a name that may not exist cannot be written.
    g.add_edge(a, "post");
}
