use axum::http::{Method, StatusCode};
use hitl_server::{BearerTokens, Identity};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn tokens_are_required_roles_checked_and_identities_recorded() {
    let s = server_with(|b| {
        b.auth(
            BearerTokens::new()
                .token("alice-token", Identity::new("alice").role("reviewer"))
                .token("bob-token", Identity::new("bob"))
                .require_any_role(["reviewer"]),
        )
    });
    // Health probes stay open.
    assert_eq!(get(&s.router, "/ok").await.status, StatusCode::OK);
    assert_eq!(get(&s.router, "/info").await.status, StatusCode::OK);

    let r = post(&s.router, "/threads", json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.detail().contains("Authorization: Bearer"),
        "{}",
        r.detail()
    );
    let r = send(
        &s.router,
        request(
            Method::POST,
            "/threads",
            Some(json!({})),
            &[("authorization", "Bearer wrong")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &s.router,
        request(
            Method::POST,
            "/threads",
            Some(json!({})),
            &[("x-api-key", "bob-token")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.detail().contains("`bob`"), "{}", r.detail());

    let alice = [("authorization", "Bearer alice-token")];
    let r = send(
        &s.router,
        request(Method::POST, "/threads", Some(json!({})), &alice),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = r.json["thread_id"].as_str().unwrap().to_owned();
    let r = send(
        &s.router,
        request(
            Method::POST,
            &format!("/threads/{t}/runs/wait"),
            Some(json!({"assistant_id": "agent", "input": email_input()})),
            &[("x-api-key", "alice-token")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let runs = send(
        &s.router,
        request(Method::GET, &format!("/threads/{t}/runs"), None, &alice),
    )
    .await;
    assert_eq!(runs.json[0]["metadata"]["user_id"], json!("alice"));
    let st = send(
        &s.router,
        request(Method::GET, &format!("/threads/{t}/state"), None, &alice),
    )
    .await;
    assert_eq!(
        st.json["metadata"]["user_id"],
        json!("alice"),
        "checkpoints record who ran them"
    );
}
