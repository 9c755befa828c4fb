//! Background runs, join, join streams, cancel, multitask strategies.

use axum::http::{Method, StatusCode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::*;

const AGENT: &str = "fe096781-5601-53d2-b2f6-0d3403f7e9ca";

fn slow_input() -> Value {
    json!({"assistant_id": "slow", "input": {"topic": "x"}})
}

async fn start_slow(s: &TestServer, t: &str, extra: Value) -> String {
    let mut body = slow_input();
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let r = post(&s.router, &format!("/threads/{t}/runs"), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["run_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn background_run_get_list_join() {
    let s = server();
    let t = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs"),
        json!({"assistant_id": "agent", "input": email_input(), "metadata": {"who": "test"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let run = r.json.clone();
    let rid = run["run_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(rid).unwrap().get_version_num(), 7);
    assert_eq!(
        r.header("content-location"),
        Some(format!("/threads/{t}/runs/{rid}").as_str())
    );
    assert_eq!(
        run["assistant_id"],
        json!(AGENT),
        "a graph name resolves to its assistant's UUID"
    );
    assert_eq!(run["multitask_strategy"], json!("enqueue"));
    assert_eq!(run["metadata"]["who"], json!("test"));
    assert_eq!(run["metadata"]["graph_id"], json!("agent"));
    assert_eq!(run["kwargs"]["stream_mode"], json!(["values"]));
    assert_eq!(run["kwargs"]["input"], email_input());
    assert!(["pending", "running", "success"].contains(&run["status"].as_str().unwrap()));

    // Joined while it may still run: the wait body, with `__interrupt__`.
    let j = get(&s.router, &format!("/threads/{t}/runs/{rid}/join")).await;
    assert_eq!(j.status, StatusCode::OK);
    assert_eq!(
        j.header("location"),
        Some(format!("/threads/{t}/runs/{rid}/join").as_str())
    );
    assert!(j.json["messages"].is_array());
    assert!(j.json["__interrupt__"][0]["id"].is_string());
    // A run that paused at an interrupt is `success`; its thread is `interrupted`.
    let got = get(&s.router, &format!("/threads/{t}/runs/{rid}")).await;
    assert_eq!(got.json["status"], json!("success"));
    assert_eq!(
        get(&s.router, &format!("/threads/{t}")).await.json["status"],
        json!("interrupted")
    );

    let r2 = post(
        &s.router,
        &format!("/threads/{t}/runs"),
        json!({"assistant_id": AGENT, "command": {"resume": approve()}}),
    )
    .await;
    let rid2 = r2.json["run_id"].as_str().unwrap();
    get(&s.router, &format!("/threads/{t}/runs/{rid2}/join")).await;
    let list = get(&s.router, &format!("/threads/{t}/runs?limit=10&offset=0")).await;
    let ids: Vec<&str> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [rid2, rid], "newest first");
    let list = get(&s.router, &format!("/threads/{t}/runs?limit=1&offset=1")).await;
    assert_eq!(list.json.as_array().unwrap().len(), 1);
    assert_eq!(list.json[0]["run_id"], json!(rid));
    let list = get(&s.router, &format!("/threads/{t}/runs?status=error")).await;
    assert_eq!(list.json, json!([]));

    // Unknown and malformed run ids.
    let r = get(
        &s.router,
        &format!("/threads/{t}/runs/cc6e2bee-ab47-452a-a3df-af9f3e1c5177"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&s.router, &format!("/threads/{t}/runs/nope")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.detail(), "Invalid run ID: must be a UUID");
}

#[tokio::test]
async fn unknown_threads_assistants_and_if_not_exists() {
    let s = server();
    let missing = "3f830daf-e748-47fb-9d4f-f91fcb53e133";
    for path in ["runs", "runs/stream", "runs/wait"] {
        let r = post(
            &s.router,
            &format!("/threads/{missing}/{path}"),
            json!({"assistant_id": "agent", "input": email_input()}),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.detail(), format!("Thread with ID {missing} not found"));
    }
    let t = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/stream"),
        json!({"assistant_id": "nope", "input": {}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/stream"),
        json!({"assistant_id": "00000000-0000-0000-0000-000000000000", "input": {}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let (r, events) = stream(
        &s.router,
        missing,
        json!({"assistant_id": "agent", "input": email_input(), "if_not_exists": "create"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(events[0].event, "metadata");
    let th = get(&s.router, &format!("/threads/{missing}")).await;
    assert_eq!(th.json["status"], json!("interrupted"));
    assert_eq!(th.json["metadata"]["graph_id"], json!("agent"));

    // A thread holds one graph's state.
    let r = post(
        &s.router,
        &format!("/threads/{missing}/runs/wait"),
        json!({"assistant_id": "custom", "input": {"topic": "x"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Continuing a thread that never ran.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "input": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_busy_thread_rejects_or_queues() {
    let s = server();
    let t = new_thread(&s.router).await;
    let first = start_slow(&s, &t, json!({})).await;
    s.gate.wait_entered().await;
    let th = get(&s.router, &format!("/threads/{t}")).await;
    assert_eq!(th.json["status"], json!("busy"));
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{first}"))
            .await
            .json["status"],
        json!("running")
    );

    let mut reject = slow_input();
    reject["multitask_strategy"] = json!("reject");
    for path in ["runs", "runs/stream", "runs/wait"] {
        let r = post(&s.router, &format!("/threads/{t}/{path}"), reject.clone()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{path}");
        assert_eq!(
            r.detail(),
            "Thread is already running a task. Wait for it to finish or choose a different multitask strategy."
        );
    }
    // enqueue (the default): pending, then runs after the first.
    let second = start_slow(&s, &t, json!({})).await;
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{second}"))
            .await
            .json["status"],
        json!("pending")
    );
    let list = get(&s.router, &format!("/threads/{t}/runs")).await;
    let statuses: Vec<&str> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "running"]);
    s.gate.open_once();
    let j = get(&s.router, &format!("/threads/{t}/runs/{first}/join")).await;
    assert_eq!(j.json["steps"], json!(["done"]));
    s.gate.wait_entered().await;
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{second}"))
            .await
            .json["status"],
        json!("running")
    );
    s.gate.open_once();
    let j = get(&s.router, &format!("/threads/{t}/runs/{second}/join")).await;
    assert_eq!(j.json["steps"], json!(["done", "done"]));
    assert_eq!(
        get(&s.router, &format!("/threads/{t}")).await.json["status"],
        json!("idle")
    );

    // A resume cannot wait in the queue (it answers what is pending now): 409.
    let busy = start_slow(&s, &t, json!({})).await;
    s.gate.wait_entered().await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "slow", "command": {"resume": "x"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.detail().contains(&format!("busy with run {busy}")),
        "{}",
        r.detail()
    );
    s.gate.open_once();
    get(&s.router, &format!("/threads/{t}/runs/{busy}/join")).await;
}

#[tokio::test]
async fn cancel_interrupt_keeps_the_thread_resumable() {
    let s = server();
    let t = new_thread(&s.router).await;
    let rid = start_slow(&s, &t, json!({})).await;
    s.gate.wait_entered().await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/{rid}/cancel?wait=0&action=interrupt"),
        json!(null),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.text.is_empty());
    get(&s.router, &format!("/threads/{t}/runs/{rid}/join")).await;
    let run = get(&s.router, &format!("/threads/{t}/runs/{rid}")).await;
    assert_eq!(
        run.json["status"],
        json!("interrupted"),
        "a cancelled run, not a pause"
    );
    let th = get(&s.router, &format!("/threads/{t}")).await.json;
    assert_eq!(th["status"], json!("interrupted"));
    assert_eq!(th["error"]["error"], json!("UserInterrupt"));
    assert_eq!(th["interrupts"], json!({}));
    let st = get(&s.router, &format!("/threads/{t}/state")).await.json;
    assert_eq!(st["next"], json!(["slow_step"]));
    // Cancelling an ended run: 404.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/{rid}/cancel"),
        json!(null),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.detail().starts_with("No matching runs to cancel"));
    // input null continues it.
    s.gate.open_once();
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "slow", "input": null}),
    )
    .await;
    assert_eq!(r.json["steps"], json!(["done"]));
    let th = get(&s.router, &format!("/threads/{t}")).await.json;
    assert_eq!(th["status"], json!("idle"));
    assert_eq!(th["error"], Value::Null);
}

#[tokio::test]
async fn cancel_rollback_deletes_the_run_and_its_checkpoints() {
    let s = server();
    let t = new_thread(&s.router).await;
    let rid = start_slow(&s, &t, json!({})).await;
    s.gate.wait_entered().await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/{rid}/cancel?wait=true&action=rollback"),
        json!(null),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({}));
    assert_eq!(
        r.header("location"),
        Some(format!("/threads/{t}/runs/{rid}/join").as_str())
    );
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{rid}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs")).await.json,
        json!([])
    );
    let st = get(&s.router, &format!("/threads/{t}/state")).await.json;
    assert_eq!(
        st["checkpoint"],
        Value::Null,
        "a first run leaves no checkpoint"
    );
    assert_eq!(
        get(&s.router, &format!("/threads/{t}")).await.json["status"],
        json!("idle"),
        "not stuck `busy`"
    );

    // Rolling back a later run returns the thread to where it was.
    s.gate.open_once();
    post(&s.router, &format!("/threads/{t}/runs/wait"), slow_input()).await;
    let before = get(&s.router, &format!("/threads/{t}/state")).await.json;
    let rid = start_slow(&s, &t, json!({})).await;
    s.gate.wait_entered().await;
    post(
        &s.router,
        &format!("/threads/{t}/runs/{rid}/cancel?wait=1&action=rollback"),
        json!(null),
    )
    .await;
    let after = get(&s.router, &format!("/threads/{t}/state")).await.json;
    assert_eq!(after["values"], before["values"]);
    assert_eq!(after["next"], json!([]));
    let history = post(
        &s.router,
        &format!("/threads/{t}/history"),
        json!({"limit": 100}),
    )
    .await
    .json;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["values"]["topic"] == json!("x") && h["metadata"]["run_id"] != json!(rid))
    );
}

#[tokio::test]
async fn multitask_interrupt_and_rollback_cancel_the_running_run() {
    let s = server();
    let t = new_thread(&s.router).await;
    let first = start_slow(&s, &t, json!({})).await;
    s.gate.wait_entered().await;
    let queued = start_slow(&s, &t, json!({})).await;
    let second = start_slow(&s, &t, json!({"multitask_strategy": "interrupt"})).await;
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{first}"))
            .await
            .json["status"],
        json!("interrupted")
    );
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{queued}"))
            .await
            .json["status"],
        json!("interrupted")
    );
    s.gate.wait_entered().await;
    let third = start_slow(&s, &t, json!({"multitask_strategy": "rollback"})).await;
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{second}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    s.gate.wait_entered().await;
    s.gate.open_once();
    let j = get(&s.router, &format!("/threads/{t}/runs/{third}/join")).await;
    assert_eq!(j.json["steps"], json!(["done"]));
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs"),
        json!({"assistant_id": "slow", "input": {}, "multitask_strategy": "sometimes"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn join_stream_live_after_the_end_and_with_last_event_id() {
    let s = server();
    let t = new_thread(&s.router).await;
    let rid = start_slow(
        &s,
        &t,
        json!({"stream_mode": ["values", "updates"], "stream_resumable": true}),
    )
    .await;
    s.gate.wait_entered().await;
    // Live: everything from the start, with ids.
    let join = tokio::spawn({
        let router = s.router.clone();
        let path = format!("/threads/{t}/runs/{rid}/stream");
        async move {
            send(
                &router,
                request(Method::GET, &path, None, &[("accept", "text/event-stream")]),
            )
            .await
        }
    });
    tokio::task::yield_now().await;
    s.gate.open_once();
    let live = join.await.unwrap();
    assert_eq!(
        live.header("location"),
        Some(format!("/threads/{t}/runs/{rid}/stream").as_str())
    );
    let events = parse_sse(&live.text);
    assert_eq!(names(&events), ["metadata", "values", "updates", "values"]);
    assert!(events.iter().all(|e| e.id.is_some()));

    // After the end: empty without Last-Event-ID; a replay after it; -1 replays all.
    let path = format!("/threads/{t}/runs/{rid}/stream?stream_mode=&cancel_on_disconnect=false");
    let r = get(&s.router, &path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.is_empty());
    let first_id = events[0].id.clone().unwrap();
    let r = send(
        &s.router,
        request(Method::GET, &path, None, &[("last-event-id", &first_id)]),
    )
    .await;
    assert_eq!(names(&parse_sse(&r.text)), ["values", "updates", "values"]);
    let r = send(
        &s.router,
        request(Method::GET, &path, None, &[("last-event-id", "-1")]),
    )
    .await;
    assert_eq!(
        names(&parse_sse(&r.text)),
        ["metadata", "values", "updates", "values"]
    );

    // Not resumable: no ids, and nothing to replay after the end.
    let rid = start_slow(&s, &t, json!({})).await;
    s.gate.wait_entered().await;
    s.gate.open_once();
    get(&s.router, &format!("/threads/{t}/runs/{rid}/join")).await;
    let r = send(
        &s.router,
        request(
            Method::GET,
            &format!("/threads/{t}/runs/{rid}/stream"),
            None,
            &[("last-event-id", "-1")],
        ),
    )
    .await;
    assert!(r.text.is_empty());
}

#[tokio::test]
async fn join_after_the_end_answers_from_the_thread() {
    let s = server();
    let t = new_thread(&s.router).await;
    agent_to_interrupt(&s.router, &t).await;
    let rid = get(&s.router, &format!("/threads/{t}/runs")).await.json[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let j = get(&s.router, &format!("/threads/{t}/runs/{rid}/join")).await;
    assert!(j.json["__interrupt__"][0]["id"].is_string());
}

#[tokio::test]
async fn a_stream_with_on_disconnect_cancel_cancels_its_run_when_dropped() {
    let s = server();
    let t = new_thread(&s.router).await;
    let req = request(
        Method::POST,
        &format!("/threads/{t}/runs/stream"),
        Some(json!({"assistant_id": "slow", "input": {"topic": "x"}, "on_disconnect": "cancel"})),
        &[],
    );
    let res = s.router.clone().oneshot(req).await.unwrap();
    let rid = res.headers()["content-location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let mut body = res.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: metadata"));
    s.gate.wait_entered().await;
    drop(body);
    let j = get(&s.router, &format!("/threads/{t}/runs/{rid}/join")).await;
    assert_eq!(j.json["__error__"]["error"], json!("UserInterrupt"));
    assert_eq!(
        get(&s.router, &format!("/threads/{t}/runs/{rid}"))
            .await
            .json["status"],
        json!("interrupted")
    );

    // The default (continue) keeps running.
    let req = request(
        Method::POST,
        &format!("/threads/{t}/runs/stream"),
        Some(json!({"assistant_id": "slow", "input": null})),
        &[],
    );
    let res = s.router.clone().oneshot(req).await.unwrap();
    let rid = res.headers()["content-location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    s.gate.wait_entered().await;
    drop(res);
    s.gate.open_once();
    let j = get(&s.router, &format!("/threads/{t}/runs/{rid}/join")).await;
    assert_eq!(j.json["steps"], json!(["done"]));
}
