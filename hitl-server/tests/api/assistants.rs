use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

const AGENT: &str = "fe096781-5601-53d2-b2f6-0d3403f7e9ca";

#[tokio::test]
async fn search_lists_one_assistant_per_graph_newest_first() {
    let s = server();
    let r = post(&s.router, "/assistants/search", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let graphs: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["graph_id"].as_str().unwrap())
        .collect();
    assert_eq!(graphs, ["slow", "parallel", "custom", "agent"]);
    assert_eq!(r.header("x-pagination-total"), Some("4"));
    assert_eq!(r.json[3]["assistant_id"], json!(AGENT));
    assert_eq!(r.json[3]["metadata"], json!({"created_by": "system"}));
    assert_eq!(r.json[3]["version"], json!(1));

    let r = post(
        &s.router,
        "/assistants/search",
        json!({"graph_id": "agent", "limit": 10, "offset": 0}),
    )
    .await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    let r = post(
        &s.router,
        "/assistants/search",
        json!({"limit": 2, "offset": 1}),
    )
    .await;
    assert_eq!(r.json.as_array().unwrap().len(), 2);
    assert_eq!(r.header("x-pagination-next"), Some("3"));
}

#[tokio::test]
async fn get_by_uuid_or_graph_name_and_errors() {
    let s = server();
    let by_id = get(&s.router, &format!("/assistants/{AGENT}")).await;
    assert_eq!(by_id.status, StatusCode::OK);
    assert_eq!(by_id.json["graph_id"], json!("agent"));
    let by_name = get(&s.router, "/assistants/agent").await;
    assert_eq!(by_name.json, by_id.json);

    let r = get(&s.router, "/assistants/nope").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.detail().starts_with("Invalid assistant: 'nope'"),
        "{}",
        r.detail()
    );
    assert!(r.detail().contains("agent, custom, parallel, slow"));
    let r = get(
        &s.router,
        "/assistants/00000000-0000-0000-0000-000000000000",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn schemas_are_explicit_nulls_for_compiled_graphs() {
    let s = server();
    let r = get(&s.router, "/assistants/agent/schemas").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json,
        json!({"graph_id": "agent", "input_schema": null, "output_schema": null,
               "state_schema": null, "config_schema": null, "context_schema": null})
    );
}
