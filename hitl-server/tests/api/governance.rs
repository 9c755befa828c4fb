//! Governed reviews over HTTP: the caller's identity decides (roles checked, 403
//! otherwise), and the server applies timeout answers itself.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use hitl_runtime::agent::{Agent, HumanInTheLoop, create_agent};
use hitl_runtime::checkpoint::{Checkpointer, RecordQuery};
use hitl_runtime::policy::{DecisionType, InterruptPolicy, PolicyMap};
use hitl_runtime::{DecidedBy, InMemorySaver};
use hitl_server::{BearerTokens, Identity, Server, Store};
use serde_json::json;

use crate::common::*;

/// The reference agent, its `send_email` decided by `finance` within `expires`.
fn governed_agent(saver: InMemorySaver, expires: Duration) -> Agent {
    let policy = InterruptPolicy::allowing([DecisionType::Approve, DecisionType::Reject])
        .reviewers(["finance"])
        .expires(expires);
    create_agent(reference_model())
        .tools(reference_tools())
        .middleware(HumanInTheLoop::new(
            PolicyMap::new().set_named("send_email", Some(policy)),
        ))
        .checkpointer(saver)
        .build()
        .unwrap()
}

fn server(saver: InMemorySaver, expires: Duration) -> axum::Router {
    Server::builder()
        .graph("governed", governed_agent(saver, expires))
        .store(Store::in_memory())
        .expire_every(Duration::from_millis(20))
        .auth(
            BearerTokens::new()
                .token("alice", Identity::new("alice").role("finance"))
                .token("eve", Identity::new("eve").role("sales")),
        )
        .build()
        .unwrap()
        .router()
}

async fn as_user(router: &axum::Router, token: &str, path: &str, body: serde_json::Value) -> Resp {
    let auth = format!("Bearer {token}");
    send(
        router,
        request(Method::POST, path, Some(body), &[("authorization", &auth)]),
    )
    .await
}

async fn to_review(router: &axum::Router, token: &str) -> String {
    let r = as_user(router, token, "/threads", json!({})).await;
    let thread = r.json["thread_id"].as_str().unwrap().to_owned();
    let r = as_user(
        router,
        token,
        &format!("/threads/{thread}/runs/wait"),
        json!({"assistant_id": "governed", "input": email_input()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let configs = &r.json["__interrupt__"][0]["value"]["review_configs"][0];
    assert_eq!(configs["reviewers"], json!(["finance"]));
    assert!(configs["expires_at"].is_u64(), "{configs}");
    thread
}

#[tokio::test]
async fn the_callers_roles_decide_and_their_identity_is_recorded() {
    let saver = InMemorySaver::new();
    let router = server(saver.clone(), Duration::from_secs(3600));
    let thread = to_review(&router, "eve").await;
    let resume = json!({"assistant_id": "governed", "command": {"resume": approve()}});
    let path = format!("/threads/{thread}/runs/wait");
    let r = as_user(&router, "eve", &path, resume.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.detail().contains("role finance"), "{}", r.detail());
    assert!(
        saver
            .decision_records(&RecordQuery::thread(&thread))
            .await
            .unwrap()
            .is_empty()
    );

    let r = as_user(&router, "alice", &path, resume).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let records = saver
        .decision_records(&RecordQuery::thread(&thread))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let record = records[0].record().unwrap();
    assert_eq!(record.reviewer_id(), Some("alice"));
    assert!(record.run_id.is_some(), "the server's run is named");

    let auth = [("authorization", "Bearer alice")];
    let r = send(
        &router,
        request(
            Method::GET,
            &format!("/threads/{thread}/decisions"),
            None,
            &auth,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["chain"]["verified"], true);
    assert_eq!(r.json["chain"]["records"], 1);
    assert_eq!(r.json["records"][0]["seq"], 1);
    assert_eq!(r.json["records"][0]["record"]["decided_by"]["id"], "alice");
    assert_eq!(
        r.json["records"][0]["record"]["tools"],
        json!(["send_email"])
    );
}

#[tokio::test]
async fn governed_interrupts_show_their_rules_and_approvals_on_the_wire() {
    let saver = InMemorySaver::new();
    let router = server(saver, Duration::from_secs(3600));
    let thread = to_review(&router, "alice").await;
    let auth = [("authorization", "Bearer alice")];
    let r = send(
        &router,
        request(Method::GET, &format!("/threads/{thread}"), None, &auth),
    )
    .await;
    let interrupts = r.json["interrupts"].as_object().unwrap();
    let first = &interrupts.values().next().unwrap()[0];
    let g = &first["governance"];
    assert_eq!(g["reviewers"], json!([["finance"]]));
    assert_eq!(g["tools"], json!(["send_email"]));
    assert_eq!(
        g["expires_at"].as_u64().unwrap() - g["raised_at"].as_u64().unwrap(),
        3_600_000
    );
    assert_eq!(g["on_timeout"]["decisions"][0]["type"], "reject");
    assert!(
        first.get("approved_by").is_none(),
        "no approvals asked: {first}"
    );
}

#[tokio::test]
async fn the_server_applies_timeout_answers_through_a_recorded_run() {
    let saver = InMemorySaver::new();
    let router = server(saver.clone(), Duration::from_millis(100));
    let thread = to_review(&router, "alice").await;
    let mut waited = Duration::ZERO;
    loop {
        let records = saver
            .decision_records(&RecordQuery::thread(&thread))
            .await
            .unwrap();
        if let Some(entry) = records.first() {
            let record = entry.record().unwrap();
            assert_eq!(record.decided_by, Some(DecidedBy::Timeout));
            break;
        }
        assert!(
            waited < Duration::from_secs(10),
            "the review never timed out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    // The timeout went through a run the server recorded; the thread settles idle.
    let mut status = String::new();
    for _ in 0..200 {
        let auth = [("authorization", "Bearer alice")];
        let r = send(
            &router,
            request(Method::GET, &format!("/threads/{thread}"), None, &auth),
        )
        .await;
        status = r.json["status"].as_str().unwrap_or_default().to_owned();
        if status == "idle" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "idle");
    let auth = [("authorization", "Bearer alice")];
    let runs = send(
        &router,
        request(Method::GET, &format!("/threads/{thread}/runs"), None, &auth),
    )
    .await;
    let runs = runs.json.as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "success"), "{runs:?}");
    let state = send(
        &router,
        request(
            Method::GET,
            &format!("/threads/{thread}/state"),
            None,
            &auth,
        ),
    )
    .await;
    assert!(
        state
            .text
            .contains("No reviewer decided before the review expired"),
        "{}",
        state.text
    );
}

#[tokio::test]
async fn the_inbox_lists_what_the_reviewer_may_answer() {
    let saver = InMemorySaver::new();
    let router = server(saver, Duration::from_secs(3600));
    // The page and its assets need no token; the data does.
    for path in ["/inbox", "/inbox/app.js", "/inbox/style.css"] {
        let r = get(&router, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    assert!(get(&router, "/inbox").await.text.contains("/inbox/app.js"));
    assert_eq!(
        get(&router, "/inbox/api/pending").await.status,
        StatusCode::UNAUTHORIZED
    );

    let thread = to_review(&router, "alice").await;
    let pending = |token: &'static str| {
        let router = router.clone();
        async move {
            let auth = format!("Bearer {token}");
            send(
                &router,
                request(
                    Method::GET,
                    "/inbox/api/pending",
                    None,
                    &[("authorization", &auth)],
                ),
            )
            .await
        }
    };
    let r = pending("alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["reviewer"]["id"], "alice");
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["thread_id"], thread.as_str());
    assert_eq!(items[0]["graph_id"], "governed");
    assert_eq!(items[0]["type"], "hitl.batched");
    assert!(items[0]["response_schema"].is_object());
    assert!(items[0]["governance"]["expires_at"].is_u64());
    // Eve has no `finance` role: the review is not hers to see.
    let r = pending("eve").await;
    assert_eq!(r.json["items"], json!([]));
}
