use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn create_get_patch_delete() {
    let s = server();
    let r = post(
        &s.router,
        "/threads",
        json!({"metadata": {"mode": "values"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "created threads are 200, not 201");
    let t = r.json["thread_id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&t).unwrap().get_version_num(), 7);
    // A fresh thread: 8 keys, no `interrupts` and no `error`.
    assert_eq!(
        keys(&r.json),
        [
            "config",
            "created_at",
            "metadata",
            "state_updated_at",
            "status",
            "thread_id",
            "updated_at",
            "values"
        ]
    );
    assert_eq!(r.json["status"], json!("idle"));
    assert_eq!(r.json["values"], Value::Null);
    assert!(r.json["created_at"].as_str().unwrap().ends_with("+00:00"));

    let got = get(&s.router, &format!("/threads/{t}")).await;
    assert_eq!(got.json, r.json);

    // Ids given by the client; duplicates.
    let id = "fa343267-cf3f-4220-bc0f-5118197bee06";
    let r = post(
        &s.router,
        "/threads",
        json!({"thread_id": id, "metadata": {"n": 1}}),
    )
    .await;
    assert_eq!(r.json["thread_id"], json!(id));
    let r = post(
        &s.router,
        "/threads",
        json!({"thread_id": id, "metadata": {"n": 2}, "if_exists": "do_nothing"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json["metadata"],
        json!({"n": 1}),
        "the existing thread, unchanged"
    );
    for body in [
        json!({"thread_id": id}),
        json!({"thread_id": id, "if_exists": "raise"}),
    ] {
        let r = post(&s.router, "/threads", body).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(
            r.detail()
                .starts_with(&format!("Thread with ID {id} already exists")),
            "{}",
            r.detail()
        );
    }
    let r = post(&s.router, "/threads", json!({"thread_id": "not-a-uuid"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // PATCH merges metadata.
    let r = call(
        &s.router,
        Method::PATCH,
        &format!("/threads/{t}"),
        Some(json!({"metadata": {"extra": true}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["metadata"], json!({"mode": "values", "extra": true}));
    assert_ne!(r.json["updated_at"], r.json["state_updated_at"]);

    // Unknown and malformed ids.
    let r = get(&s.router, "/threads/01a2323b-5826-774b-8d39-000104fd8ef0").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.detail(),
        "Thread with ID 01a2323b-5826-774b-8d39-000104fd8ef0 not found"
    );
    let r = get(&s.router, "/threads/nope").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.detail(), "Invalid thread ID: must be a UUID");

    // DELETE: 204, then 404, and 404 again.
    agent_to_interrupt(&s.router, &t).await;
    let r = call(&s.router, Method::DELETE, &format!("/threads/{t}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.text.is_empty());
    assert_eq!(
        get(&s.router, &format!("/threads/{t}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/state")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = call(&s.router, Method::DELETE, &format!("/threads/{t}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The checkpoints went too: the same id starts over.
    let r = post(&s.router, "/threads", json!({"thread_id": t})).await;
    assert_eq!(r.status, StatusCode::OK);
    let st = get(&s.router, &format!("/threads/{t}/state")).await;
    assert_eq!(st.json["checkpoint"], Value::Null);
}

#[tokio::test]
async fn interrupted_threads_carry_graph_ids_values_and_interrupts_by_task() {
    let s = server();
    let r = post(&s.router, "/threads", json!({"metadata": {"mode": "x"}})).await;
    let t = r.json["thread_id"].as_str().unwrap().to_owned();
    let interrupt = agent_to_interrupt(&s.router, &t).await;
    let r = get(&s.router, &format!("/threads/{t}")).await;
    assert_eq!(r.json["status"], json!("interrupted"));
    assert_eq!(
        r.json["metadata"],
        json!({"mode": "x", "graph_id": "agent", "assistant_id": "fe096781-5601-53d2-b2f6-0d3403f7e9ca"})
    );
    assert_eq!(r.json["error"], Value::Null);
    assert_eq!(r.json["config"], json!({"configurable": {}}));
    assert_eq!(r.json["values"]["messages"].as_array().unwrap().len(), 2);
    let by_task = r.json["interrupts"].as_object().unwrap();
    assert_eq!(by_task.len(), 1);
    let (task, list) = by_task.iter().next().unwrap();
    assert_eq!(task.len(), 32);
    assert_eq!(list[0]["id"], json!(interrupt));
    assert_eq!(keys(&list[0]), ["id", "value"]);
    assert_eq!(
        list[0]["value"]["action_requests"][0]["name"],
        json!("send_email")
    );
    assert_eq!(
        list[0]["value"]["review_configs"][0]["allowed_decisions"],
        json!(["approve", "edit", "reject", "respond"])
    );
}

#[tokio::test]
async fn search_filters_by_metadata_status_and_pages() {
    let s = server();
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = post(
            &s.router,
            "/threads",
            json!({"metadata": {"i": i, "team": {"name": "a", "tags": ["x", "y"]}}}),
        )
        .await;
        ids.push(r.json["thread_id"].as_str().unwrap().to_owned());
    }
    agent_to_interrupt(&s.router, &ids[1]).await;

    let r = post(
        &s.router,
        "/threads/search",
        json!({"limit": 10, "offset": 0}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let found: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thread_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [&ids[3], &ids[2], &ids[1], &ids[0]], "newest first");
    assert_eq!(r.header("x-pagination-total"), Some("4"));

    let r = post(
        &s.router,
        "/threads/search",
        json!({"status": "interrupted"}),
    )
    .await;
    let list = r.json.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["thread_id"], json!(ids[1]));
    assert_eq!(
        list[0]["interrupts"].as_object().unwrap().len(),
        1,
        "results carry interrupts"
    );
    assert!(
        list[0]["values"]["messages"].is_array(),
        "results carry values"
    );

    let r = post(
        &s.router,
        "/threads/search",
        json!({"metadata": {"graph_id": "agent"}}),
    )
    .await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    let r = post(&s.router, "/threads/search", json!({"metadata": {"team": {"tags": ["y"]}}, "limit": 2, "offset": 1, "sort_order": "asc"})).await;
    let found: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thread_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [&ids[1], &ids[2]]);
    assert_eq!(r.header("x-pagination-next"), Some("3"));
    let r = post(
        &s.router,
        "/threads/search",
        json!({"status": "idle", "metadata": {"i": 0}}),
    )
    .await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);

    let r = post(&s.router, "/threads/search", json!({"status": "sleepy"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.detail().contains("idle, busy, interrupted, error"),
        "{}",
        r.detail()
    );
}
