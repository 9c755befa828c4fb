//! A server on files: threads, runs and checkpoints outlive the server.

use axum::http::StatusCode;
use hitl_runtime::SqliteSaver;
use hitl_runtime::agent::{HumanInTheLoop, create_agent};
use hitl_server::{Server, Store};
use serde_json::json;

use crate::common::*;

async fn server_on(dir: &std::path::Path) -> axum::Router {
    let saver = SqliteSaver::open(dir.join("checkpoints.db")).await.unwrap();
    let agent = create_agent(reference_model())
        .tools(reference_tools())
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(saver)
        .build()
        .unwrap();
    let server = Server::builder()
        .graph("agent", agent)
        .store(Store::sqlite(dir.join("server.db")))
        .build()
        .unwrap();
    server.recover().await.unwrap();
    server.router()
}

#[tokio::test]
async fn threads_and_runs_survive_a_restart_and_resume_there() {
    let dir = tempfile::tempdir().unwrap();
    let first = server_on(dir.path()).await;
    let r = post(&first, "/threads", json!({"metadata": {"owner": "ops"}})).await;
    let t = r.json["thread_id"].as_str().unwrap().to_owned();
    let interrupt = agent_to_interrupt(&first, &t).await;
    drop(first);

    let second = server_on(dir.path()).await;
    let th = get(&second, &format!("/threads/{t}")).await;
    assert_eq!(th.status, StatusCode::OK);
    assert_eq!(th.json["status"], json!("interrupted"));
    assert_eq!(th.json["metadata"]["owner"], json!("ops"));
    let pending: Vec<&serde_json::Value> = th.json["interrupts"]
        .as_object()
        .unwrap()
        .values()
        .collect();
    assert_eq!(pending[0][0]["id"], json!(interrupt));
    assert_eq!(
        get(&second, &format!("/threads/{t}/runs"))
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let found = post(
        &second,
        "/threads/search",
        json!({"metadata": {"owner": "ops"}, "status": "interrupted"}),
    )
    .await;
    assert_eq!(found.json.as_array().unwrap().len(), 1);

    let r = post(
        &second,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "command": {"resume": approve()}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.json["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("Done.")
    );
    assert_eq!(
        get(&second, &format!("/threads/{t}")).await.json["status"],
        json!("idle")
    );
}

#[tokio::test]
async fn building_a_server_checks_its_graphs() {
    use hitl_server::BuildError;
    let e = Server::builder()
        .store(Store::in_memory())
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::NoGraphs));
    let e = Server::builder()
        .graph("agent", reference_agent())
        .graph("agent", reference_agent())
        .store(Store::in_memory())
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "two graphs are registered as `agent`; graph ids must be unique"
    );
    let e = Server::builder()
        .graph("a/b", reference_agent())
        .store(Store::in_memory())
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::InvalidGraphId { .. }));
    let no_saver = create_agent(reference_model())
        .tools(reference_tools())
        .middleware(HumanInTheLoop::from_tools())
        .build()
        .unwrap();
    let e = Server::builder()
        .graph("agent", no_saver)
        .store(Store::in_memory())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("has no checkpointer"), "{e}");
}
