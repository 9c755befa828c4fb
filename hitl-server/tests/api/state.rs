use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn fresh_thread_state_and_history() {
    let s = server();
    let t = new_thread(&s.router).await;
    let r = get(&s.router, &format!("/threads/{t}/state")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json,
        json!({"values": {}, "next": [], "tasks": [], "metadata": null, "created_at": null,
               "checkpoint": null, "parent_checkpoint": null, "interrupts": [],
               "checkpoint_id": null, "parent_checkpoint_id": null})
    );
    let r = post(
        &s.router,
        &format!("/threads/{t}/history"),
        json!({"limit": 10}),
    )
    .await;
    assert_eq!(r.json, json!([]));
    let r = get(
        &s.router,
        "/threads/01a2323b-5826-774b-8d39-000104fd8ef0/state",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn interrupted_state_has_tasks_with_interrupts_and_history_newest_first() {
    let s = server();
    let t = new_thread(&s.router).await;
    let interrupt = agent_to_interrupt(&s.router, &t).await;
    let r = get(&s.router, &format!("/threads/{t}/state?subgraphs=false")).await;
    assert_eq!(r.status, StatusCode::OK);
    let st = &r.json;
    assert_eq!(st["next"], json!(["HumanInTheLoopMiddleware.after_model"]));
    let task = &st["tasks"][0];
    assert_eq!(task["name"], json!("HumanInTheLoopMiddleware.after_model"));
    assert_eq!(
        task["path"],
        json!(["__pregel_pull", "HumanInTheLoopMiddleware.after_model"])
    );
    assert_eq!(task["error"], Value::Null);
    assert_eq!(task["interrupts"][0]["id"], json!(interrupt));
    assert_eq!(st["interrupts"][0]["id"], json!(interrupt));
    assert_eq!(st["metadata"]["source"], json!("loop"));
    assert_eq!(st["metadata"]["graph_id"], json!("agent"));
    assert_eq!(st["metadata"]["user_id"], json!("anonymous"));
    assert!(st["metadata"]["run_id"].is_string());
    assert_eq!(st["checkpoint"]["thread_id"], json!(t));
    assert_eq!(st["checkpoint"]["checkpoint_ns"], json!(""));
    assert_eq!(st["checkpoint_id"], st["checkpoint"]["checkpoint_id"]);
    assert_eq!(
        st["parent_checkpoint_id"],
        st["parent_checkpoint"]["checkpoint_id"]
    );

    // At a checkpoint.
    let parent = st["parent_checkpoint_id"].as_str().unwrap();
    let r = get(&s.router, &format!("/threads/{t}/state/{parent}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["checkpoint_id"], json!(parent));
    assert_eq!(r.json["next"], json!(["model"]));
    let r = post(
        &s.router,
        &format!("/threads/{t}/state/checkpoint"),
        json!({"checkpoint": {"checkpoint_id": parent}}),
    )
    .await;
    assert_eq!(r.json["checkpoint_id"], json!(parent));
    let r = get(
        &s.router,
        &format!("/threads/{t}/state/01a2323b-5826-774b-8d39-000104fd8ef0"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&s.router, &format!("/threads/{t}/state/xyz")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // History: newest first; limit; before.
    let r = post(
        &s.router,
        &format!("/threads/{t}/history"),
        json!({"limit": 10}),
    )
    .await;
    let h = r.json.as_array().unwrap();
    assert_eq!(
        h.len(),
        2,
        "the input checkpoint and the one after the model"
    );
    assert_eq!(h[0]["checkpoint_id"], st["checkpoint_id"]);
    assert_eq!(h[0]["tasks"][0]["interrupts"][0]["id"], json!(interrupt));
    assert_eq!(h[1]["metadata"]["source"], json!("input"));
    assert_eq!(h[1]["metadata"]["step"], json!(-1));
    let r = post(
        &s.router,
        &format!("/threads/{t}/history"),
        json!({"limit": 1}),
    )
    .await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    let r = post(
        &s.router,
        &format!("/threads/{t}/history"),
        json!({"before": {"configurable": {}, "checkpoint_id": st["checkpoint_id"]}}),
    )
    .await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    let r = get(&s.router, &format!("/threads/{t}/history?limit=1")).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn update_state_as_node_resolves_a_pause_and_the_thread_continues() {
    let s = server();
    let t = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "custom", "input": {"topic": "cats"}}),
    )
    .await;
    assert_eq!(
        r.json["__interrupt__"][0]["value"],
        json!({"question": "What about cats?"})
    );

    let r = post(
        &s.router,
        &format!("/threads/{t}/state"),
        json!({"values": {"answer": "set by update"}, "as_node": "ask"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.json["checkpoint_id"].as_str().unwrap();
    assert_eq!(
        r.json["checkpoint"],
        json!({"thread_id": t, "checkpoint_ns": "", "checkpoint_id": id})
    );
    assert_eq!(r.json["configurable"], r.json["checkpoint"]);

    let st = get(&s.router, &format!("/threads/{t}/state")).await;
    assert_eq!(st.json["next"], json!(["finish"]));
    assert_eq!(st.json["interrupts"], json!([]));
    assert_eq!(st.json["metadata"]["source"], json!("update"));
    let th = get(&s.router, &format!("/threads/{t}")).await;
    assert_eq!(
        th.json["status"],
        json!("interrupted"),
        "paused before `finish`"
    );
    assert_eq!(th.json["interrupts"], json!({}));

    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "custom", "input": null}),
    )
    .await;
    assert_eq!(r.json["topic"], json!("cats (answered)"));
    assert_eq!(r.json["answer"], json!("set by update"));
    assert_eq!(
        get(&s.router, &format!("/threads/{t}")).await.json["status"],
        json!("idle")
    );

    // Errors: unknown node, a value that does not fit the state, a thread that never ran.
    let r = post(
        &s.router,
        &format!("/threads/{t}/state"),
        json!({"values": {}, "as_node": "nope"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.detail().contains("`nope`") && r.detail().contains("ask, finish"),
        "{}",
        r.detail()
    );
    let r = post(
        &s.router,
        &format!("/threads/{t}/state"),
        json!({"values": {"steps": "not a list"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.detail().contains("`steps`"), "{}", r.detail());
    let fresh = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{fresh}/state"),
        json!({"values": {}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn update_state_is_409_while_a_run_is_active() {
    let s = server();
    let t = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs"),
        json!({"assistant_id": "slow", "input": {"topic": "x"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    s.gate.wait_entered().await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/state"),
        json!({"values": {"topic": "y"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    s.gate.open_once();
    let r = get(&s.router, &format!("/threads/{t}/runs")).await;
    let rid = r.json[0]["run_id"].as_str().unwrap().to_owned();
    get(&s.router, &format!("/threads/{t}/runs/{rid}/join")).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/state"),
        json!({"values": {"topic": "y"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}
