use std::sync::Arc;

use hitl_runtime::{
    Command, END, InMemorySaver, NodeContext, NodeError, RunConfig, START, State, StateGraph,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    #[state(reducer = append)]
    log: Vec<String>,
    step: u32,
}

async fn ask(_: Arc<Flow>, cx: NodeContext) -> Result<FlowUpdate, NodeError> {
    let answer = cx.interrupt(json!({"question": "ok?"})).await?;
    Ok(FlowUpdate::default().log(vec![format!("ask:{answer}")]))
}

async fn post(s: Arc<Flow>, _: NodeContext) -> Result<FlowUpdate, NodeError> {
    Ok(FlowUpdate::default()
        .step(s.step + 1)
        .log(vec!["post".to_string()]))
}

#[tokio::test]
async fn interrupt_then_resume() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("ask", ask);
    let p = g.add_node("post", post);
    g.add_edge(START, a);
    g.add_edge(a, p);
    g.add_edge(p, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("t1");
    let out = app.invoke(Flow::default(), &cfg).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.interrupts.len(), 1);
    assert_eq!(out.next, ["ask"]);
    let out = app.invoke(Command::resume("yes"), &cfg).await.unwrap();
    assert!(out.is_done(), "{out:?}");
    assert_eq!(out.values.log, ["ask:\"yes\"", "post"]);
    assert_eq!(out.values.step, 1);
}
