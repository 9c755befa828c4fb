use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn ok_and_info_answer_like_the_reference() {
    let s = server();
    let r = get(&s.router, "/ok").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({"ok": true, "services": {}}));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = get(&s.router, "/info").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["flags"]["assistants"], json!(true));
    assert_eq!(r.json["host"]["kind"], json!("self-hosted"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let s = server();
    let r = get(&s.router, "/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.detail(), "Not Found");
    let r = call(&s.router, Method::PUT, "/threads", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.detail(), "Method Not Allowed");
}

#[tokio::test]
async fn malformed_bodies_are_422_with_the_path_of_the_problem() {
    let s = server();
    let r = send(&s.router, request(Method::POST, "/threads", None, &[])).await;
    assert_eq!(r.status, StatusCode::OK, "an empty body reads as {{}}");
    let r = post(&s.router, "/threads", json!({"metadata": [1]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.detail().contains("`metadata`"), "{}", r.detail());
    let t = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs"),
        json!({"input": {}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.detail().contains("assistant_id"), "{}", r.detail());
}
