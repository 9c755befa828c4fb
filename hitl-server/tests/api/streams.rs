//! SSE: framing, headers, and the event sequence of each stream mode against the
//! reference server's recordings of the same flows (`reference/NNN-*.txt`).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn recording(name: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/api/reference/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    reference_names(&std::fs::read_to_string(&path).unwrap())
}

/// Streams the agent to its review and through an approve, in `modes`.
async fn agent_flow(modes: Value) -> (Vec<Event>, Vec<Event>) {
    let s = server();
    let t = new_thread(&s.router).await;
    let (r, to) = stream(
        &s.router,
        &t,
        json!({"assistant_id": "agent", "input": email_input(), "stream_mode": modes}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (_, resume) = stream(
        &s.router,
        &t,
        json!({"assistant_id": "agent", "command": {"resume": approve()}, "stream_mode": modes}),
    )
    .await;
    (to, resume)
}

#[tokio::test]
async fn stream_headers_and_framing_match_the_reference() {
    let s = server();
    let t = new_thread(&s.router).await;
    let (r, events) = stream(
        &s.router,
        &t,
        json!({"assistant_id": "agent", "input": email_input()}),
    )
    .await;
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-accel-buffering"), Some("no"));
    let run_id = events[0].data["run_id"].as_str().unwrap();
    assert_eq!(
        r.header("content-location"),
        Some(format!("/threads/{t}/runs/{run_id}").as_str())
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/threads/{t}/runs/{run_id}/stream").as_str())
    );
    // CRLF line ends, one data line per event, no `end` event, no ids unless resumable.
    assert!(r.text.starts_with("event: metadata\r\ndata: {"));
    assert!(r.text.ends_with("\r\n\r\n"));
    assert!(!r.text.contains("\nid: "));
    assert_eq!(events[0].data, json!({"run_id": run_id, "attempt": 1}));
    assert!(events.iter().all(|e| e.event != "end"));
    // When the stream has closed, the run is already recorded as ended.
    let run = get(&s.router, &format!("/threads/{t}/runs/{run_id}")).await;
    assert_eq!(run.json["status"], json!("success"));
}

#[tokio::test]
async fn values_mode_matches_the_reference_sequence() {
    let (to, resume) = agent_flow(json!("values")).await;
    assert_eq!(names(&to), recording("029-mode-values-to-interrupt"));
    assert_eq!(names(&resume), recording("039-mode-values-resume-approve"));
    // The input first; at the pause the state plus `__interrupt__` as {value, id, ..}.
    assert_eq!(to[1].data["messages"][0]["type"], json!("human"));
    let last = &to[3].data;
    assert_eq!(last["messages"].as_array().unwrap().len(), 2);
    let i = &last["__interrupt__"][0];
    assert_eq!(i["id"].as_str().unwrap().len(), 32);
    assert_eq!(
        i["value"]["action_requests"][0]["args"],
        json!({"to": "alice@example.com", "subject": "Report"})
    );
    assert!(i.get("response_schema").is_some());
    assert!(resume[1].data.get("__interrupt__").is_none());
    let final_messages = resume.last().unwrap().data["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(final_messages.last().unwrap()["type"], json!("ai"));
    // No stream_mode at all: values.
    let (to, _) = agent_flow(Value::Null).await;
    assert_eq!(names(&to), recording("070-mode-default-to-interrupt"));
}

#[tokio::test]
async fn updates_mode_matches_the_reference_sequence() {
    let (to, resume) = agent_flow(json!("updates")).await;
    assert_eq!(names(&to), recording("046-mode-updates-to-interrupt"));
    assert_eq!(names(&resume), recording("047-mode-updates-resume-approve"));
    assert!(to[1].data["model"]["messages"].is_array());
    assert_eq!(
        to[2].data["__interrupt__"][0]["value"]["review_configs"][0]["action_name"],
        json!("send_email")
    );
    let nodes: Vec<&str> = resume[1..]
        .iter()
        .map(|e| e.data.as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    assert_eq!(
        nodes,
        [
            "HumanInTheLoopMiddleware.after_model",
            "tools",
            "tools",
            "model",
            "HumanInTheLoopMiddleware.after_model"
        ]
    );
    assert_eq!(
        resume[5].data,
        json!({"HumanInTheLoopMiddleware.after_model": null})
    );
}

#[tokio::test]
async fn values_and_updates_interleave_like_the_reference() {
    let (to, resume) = agent_flow(json!(["values", "updates"])).await;
    assert_eq!(
        names(&to),
        recording("067-mode-values+updates-to-interrupt")
    );
    assert_eq!(
        names(&resume),
        recording("068-mode-values+updates-resume-approve")
    );
    // At the pause: updates{__interrupt__} first, then values{.., __interrupt__}.
    assert!(to[4].data.get("__interrupt__").is_some() && to[4].event == "updates");
    assert!(to[5].data.get("__interrupt__").is_some() && to[5].event == "values");
}

#[tokio::test]
async fn tasks_mode_matches_the_reference_sequence() {
    let (to, resume) = agent_flow(json!("tasks")).await;
    assert_eq!(names(&to), recording("058-mode-tasks-to-interrupt"));
    assert_eq!(names(&resume), recording("059-mode-tasks-resume-approve"));
    assert_eq!(to[1].data["name"], json!("model"));
    assert!(
        to[1].data.get("triggers").is_some(),
        "a start has id, name, input, triggers, metadata"
    );
    assert_eq!(to[2].data["error"], Value::Null);
    let paused = &to[4].data;
    assert_eq!(
        paused["name"],
        json!("HumanInTheLoopMiddleware.after_model")
    );
    assert_eq!(paused["result"], json!({}));
    assert_eq!(
        paused["interrupts"][0]["value"]["action_requests"][0]["name"],
        json!("send_email")
    );
}

#[tokio::test]
async fn custom_graph_sequences_match_the_reference() {
    let s = server();
    let t = new_thread(&s.router).await;
    let modes = json!(["values", "updates", "custom"]);
    let (_, to) = stream(
        &s.router,
        &t,
        json!({"assistant_id": "custom", "input": {"topic": "cats"}, "stream_mode": modes}),
    )
    .await;
    assert_eq!(names(&to), recording("159-custom-scalar-to-interrupt"));
    assert_eq!(to[2].data, json!({"stage": "asking"}));
    assert_eq!(
        to[3].data["__interrupt__"][0]["value"],
        json!({"question": "What about cats?"})
    );
    let (_, resume) = stream(&s.router, &t, json!({"assistant_id": "custom", "command": {"resume": "purr"}, "stream_mode": ["values", "updates"]})).await;
    assert_eq!(names(&resume), recording("162-custom-resume-scalar"));
    assert_eq!(resume.last().unwrap().data["answer"], json!("purr"));
    // The agent writes no custom events before its review: only `metadata`, as in the reference.
    let (to, _) = agent_flow(json!("custom")).await;
    assert_eq!(names(&to), recording("055-mode-custom-to-interrupt"));
}

#[tokio::test]
async fn checkpoints_and_debug_have_the_reference_shapes() {
    // The reference has one more checkpoint per run (its `__start__` step, before the
    // input is applied); hitl writes the input checkpoint with the input applied.
    let (to, _) = agent_flow(json!("checkpoints")).await;
    let reference = recording("061-mode-checkpoints-to-interrupt");
    assert_eq!(names(&to).len(), reference.len() - 1);
    assert!(names(&to)[1..].iter().all(|n| n == "checkpoints"));
    let c = &to[1].data;
    for key in [
        "config",
        "parent_config",
        "values",
        "metadata",
        "next",
        "tasks",
    ] {
        assert!(
            c.get(key).is_some(),
            "checkpoints event without `{key}`: {c}"
        );
    }
    assert_eq!(c["metadata"]["source"], json!("input"));
    assert_eq!(c["parent_config"], Value::Null);
    assert!(c["config"]["configurable"]["checkpoint_id"].is_string());
    assert_eq!(
        to[2].data["next"],
        json!(["HumanInTheLoopMiddleware.after_model"])
    );

    let (to, _) = agent_flow(json!("debug")).await;
    let reference = recording("064-mode-debug-to-interrupt");
    assert_eq!(names(&to).len(), reference.len() - 1);
    let types: Vec<&str> = to[1..]
        .iter()
        .map(|e| e.data["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "checkpoint",
            "task",
            "task_result",
            "checkpoint",
            "task",
            "task_result"
        ]
    );
    assert!(to[1].data["payload"]["checkpoint"]["checkpoint_id"].is_string());
    assert!(to[6].data["payload"]["interrupts"][0]["id"].is_string());
}

#[tokio::test]
async fn messages_tuple_streams_chunks_with_metadata() {
    let (to, _) = agent_flow(json!("messages-tuple")).await;
    assert_eq!(
        recording("049-mode-messages-tuple-to-interrupt")[1],
        "messages"
    );
    assert!(to.len() > 1);
    for e in &to[1..] {
        assert_eq!(e.event, "messages");
        let [chunk, meta] = e.data.as_array().unwrap().as_slice() else {
            panic!("{}", e.data)
        };
        assert_eq!(chunk["type"], json!("AIMessageChunk"));
        assert_eq!(meta["langgraph_node"], json!("model"));
        assert_eq!(meta["graph_id"], json!("agent"));
    }
    let tool_chunks: Vec<&Value> = to[1..]
        .iter()
        .flat_map(|e| e.data[0]["tool_call_chunks"].as_array().unwrap())
        .collect();
    assert!(tool_chunks.iter().any(|c| c["name"] == json!("send_email")));
}

#[tokio::test]
async fn unsupported_stream_modes_are_422() {
    let s = server();
    let t = new_thread(&s.router).await;
    for mode in ["messages", "events", "nope"] {
        let (r, _) = stream(
            &s.router,
            &t,
            json!({"assistant_id": "agent", "input": email_input(), "stream_mode": mode}),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{mode}");
        assert!(r.detail().contains("messages-tuple"), "{}", r.detail());
    }
}

#[tokio::test]
async fn a_failing_run_streams_an_error_event_and_records_it() {
    let s = server();
    let t = new_thread(&s.router).await;
    // `topic` is a string: the input does not fit the state (422 before anything runs).
    let (r, _) = stream(
        &s.router,
        &t,
        json!({"assistant_id": "custom", "input": {"topic": 5}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.detail().contains("`topic`"), "{}", r.detail());
    // A recursion limit fails inside the run: HTTP 200, an `error` event, run and thread `error`.
    let (r, events) = stream(
        &s.router,
        &t,
        json!({"assistant_id": "agent", "input": email_input(), "config": {"recursion_limit": 1}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["error"], json!("GraphRecursionError"));
    let run_id = events[0].data["run_id"].as_str().unwrap();
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{run_id}"))
            .await
            .json["status"],
        json!("error")
    );
    let th = get(&s.router, &format!("/threads/{t}")).await;
    assert_eq!(th.json["status"], json!("error"));
    assert_eq!(th.json["error"]["error"], json!("GraphRecursionError"));
    // wait gives `__error__` with HTTP 200.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "input": email_input(), "config": {"recursion_limit": 1}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["__error__"]["error"], json!("GraphRecursionError"));
}
