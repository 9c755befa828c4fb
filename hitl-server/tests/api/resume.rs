//! Resumes over HTTP, stricter than the reference: a malformed resume is 422 and
//! stores nothing; a thread that moved on is 409; two concurrent resumes, one wins.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

fn by_id(id: &str, answer: &str) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(id.to_owned(), json!(answer));
    Value::Object(m)
}

async fn runs_of(s: &TestServer, t: &str) -> Vec<Value> {
    get(&s.router, &format!("/threads/{t}/runs"))
        .await
        .json
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_malformed_resume_is_422_stores_nothing_and_a_correct_one_then_works() {
    let s = server();
    let t = new_thread(&s.router).await;
    let interrupt = agent_to_interrupt(&s.router, &t).await;
    let before = get(&s.router, &format!("/threads/{t}/state")).await.json;
    let runs_before = runs_of(&s, &t).await.len();

    // Two decisions for one action request (the reference stores it and the thread is stuck in `error`).
    let bad = json!({"decisions": [{"type": "approve"}, {"type": "approve"}]});
    for path in ["runs/stream", "runs/wait", "runs"] {
        let r = post(
            &s.router,
            &format!("/threads/{t}/{path}"),
            json!({"assistant_id": "agent", "command": {"resume": bad}}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            r.text
        );
        assert!(
            r.detail()
                .starts_with(&format!("invalid answer for interrupt {interrupt}")),
            "{}",
            r.detail()
        );
    }
    // An edit with arguments that do not fit the tool; a decision the tool does not allow.
    for bad in [
        json!({"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {"to": 5}}}]}),
        json!({"decisions": [{"type": "maybe"}]}),
        // A list of decisions instead of `{"decisions": [..]}` (Agent Inbox's
        // `HumanResponse` list, `accept`/`edit`/`response`/`ignore`, is accepted).
        json!([{"type": "approve"}]),
    ] {
        let r = post(
            &s.router,
            &format!("/threads/{t}/runs/wait"),
            json!({"assistant_id": "agent", "command": {"resume": bad}}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.text
        );
    }
    // Nothing stored: no run recorded, the same interrupt pending, the thread still interrupted.
    assert_eq!(runs_of(&s, &t).await.len(), runs_before);
    let after = get(&s.router, &format!("/threads/{t}/state")).await.json;
    assert_eq!(after, before);
    let th = get(&s.router, &format!("/threads/{t}")).await.json;
    assert_eq!(th["status"], json!("interrupted"));
    assert_eq!(th["error"], Value::Null);

    // A correct resume then works.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "command": {"resume": approve()}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json.get("__interrupt__").is_none());
    assert!(
        r.json["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("Done.")
    );
    assert_eq!(
        get(&s.router, &format!("/threads/{t}")).await.json["status"],
        json!("idle")
    );
}

#[tokio::test]
async fn resumes_on_threads_that_cannot_take_one() {
    let s = server();
    // Unknown thread: 404.
    let r = post(
        &s.router,
        "/threads/01a2323b-5826-774b-8d39-000104fd8ef0/runs/wait",
        json!({"assistant_id": "agent", "command": {"resume": approve()}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A thread that never ran: 409, nothing to resume.
    let t = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "command": {"resume": approve()}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(
        get(&s.router, &format!("/threads/{t}")).await.json["status"],
        json!("idle")
    );
    // A finished thread: 409, nothing pending.
    agent_to_interrupt(&s.router, &t).await;
    post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "command": {"resume": approve()}}),
    )
    .await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "command": {"resume": approve()}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.detail().contains("has no pending interrupt"),
        "{}",
        r.detail()
    );
    // input and command together; an empty command; goto to a node that does not exist.
    let t = new_thread(&s.router).await;
    agent_to_interrupt(&s.router, &t).await;
    for (body, needle) in [
        (
            json!({"assistant_id": "agent", "input": email_input(), "command": {"resume": approve()}}),
            "not both",
        ),
        (
            json!({"assistant_id": "agent", "command": {}}),
            "command is empty",
        ),
        (
            json!({"assistant_id": "agent", "command": {"goto": "nowhere"}}),
            "`nowhere`",
        ),
        (
            json!({"assistant_id": "agent", "command": {"resume": approve(), "oops": 1}}),
            "`oops`",
        ),
    ] {
        let r = post(&s.router, &format!("/threads/{t}/runs/stream"), body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.detail().contains(needle), "{}", r.detail());
    }
    // A resume at a checkpoint that is not the head (what a stale UI would send): 409.
    let st = get(&s.router, &format!("/threads/{t}/state")).await.json;
    let parent = st["parent_checkpoint_id"].clone();
    let r = post(&s.router, &format!("/threads/{t}/runs/wait"), json!({"assistant_id": "agent", "command": {"resume": approve()}, "checkpoint": {"checkpoint_id": parent}})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // ... and at the head it works, as JS useStream (Agent Chat UI) sends it: with an
    // empty `input` next to the command.
    let r = post(&s.router, &format!("/threads/{t}/runs/wait"), json!({"assistant_id": "agent", "input": {}, "command": {"resume": approve()}, "checkpoint": {"checkpoint_id": st["checkpoint_id"], "checkpoint_ns": "", "thread_id": t}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json.get("__interrupt__").is_none(), "{}", r.text);
}

#[tokio::test]
async fn resume_maps_answer_interrupts_by_id() {
    let s = server();
    let t = new_thread(&s.router).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "parallel", "input": {}}),
    )
    .await;
    let pending: Vec<String> = r.json["__interrupt__"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pending.len(), 2);
    let th = get(&s.router, &format!("/threads/{t}")).await.json;
    assert_eq!(
        th["interrupts"].as_object().unwrap().len(),
        2,
        "one entry per task"
    );

    // A scalar with two pending: 422 naming them; nothing stored.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "parallel", "command": {"resume": "x"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.detail().contains(&pending[0]) && r.detail().contains(&pending[1]),
        "{}",
        r.detail()
    );
    // An id that is not pending: 422 (the reference ignores it).
    let r = post(&s.router, &format!("/threads/{t}/runs/wait"), json!({"assistant_id": "parallel", "command": {"resume": {"0123456789abcdef0123456789abcdef": 1}}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.detail().contains("is not pending"), "{}", r.detail());

    // One of the two: the other stays pending with its id.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "parallel", "command": {"resume": by_id(&pending[0], "L")}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let left: Vec<&str> = r.json["__interrupt__"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [pending[1].as_str()]);
    let th = get(&s.router, &format!("/threads/{t}")).await.json;
    assert_eq!(th["status"], json!("interrupted"));
    assert_eq!(th["interrupts"].as_object().unwrap().len(), 1);
    // The answered one again: 409, someone answered it.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "parallel", "command": {"resume": by_id(&pending[0], "again")}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // The other one finishes the graph.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "parallel", "command": {"resume": by_id(&pending[1], "R")}}),
    )
    .await;
    assert_eq!(r.json["steps"], json!(["left:\"L\"", "right:\"R\""]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_resumes_exactly_one_runs() {
    for _ in 0..5 {
        let s = server();
        let t = new_thread(&s.router).await;
        agent_to_interrupt(&s.router, &t).await;
        let body = json!({"assistant_id": "agent", "command": {"resume": approve()}});
        let path = format!("/threads/{t}/runs/wait");
        let (a, b) = tokio::join!(
            send(
                &s.router,
                request(Method::POST, &path, Some(body.clone()), &[])
            ),
            send(
                &s.router,
                request(Method::POST, &path, Some(body.clone()), &[])
            ),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{} / {}",
            a.text,
            b.text
        );
        let runs = runs_of(&s, &t).await;
        assert_eq!(runs.len(), 2, "the first run and one resume");
        let th = get(&s.router, &format!("/threads/{t}")).await.json;
        assert_eq!(th["status"], json!("idle"));
        let tools = th["values"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == json!("tool"))
            .count();
        assert_eq!(tools, 2, "each tool ran once");
    }
}

/// Agent Chat UI's "Mark as Resolved" sends `command: {"goto": "__end__"}`: as on the
/// reference server (measured with langgraph 1.x: the write to `branch:to:__end__` is
/// ignored), it is accepted and changes nothing; the review stays pending.
#[tokio::test]
async fn a_goto_to_the_end_is_accepted_and_leaves_the_review_pending() {
    let s = server();
    let t = new_thread(&s.router).await;
    let interrupt = agent_to_interrupt(&s.router, &t).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "command": {"goto": "__end__"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["__interrupt__"][0]["id"], json!(interrupt));
    let th = get(&s.router, &format!("/threads/{t}")).await.json;
    assert_eq!(th["status"], json!("interrupted"));
    let tools = th["values"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == json!("tool"))
        .count();
    assert_eq!(tools, 0, "nothing ran");
}

/// Agent Inbox's "Ignore" writes the state `as_node: "__end__"`: as on the reference
/// server, the thread ends where it is; the review is dropped and nothing it reviews
/// runs.
#[tokio::test]
async fn updating_the_state_as_the_end_ends_the_thread() {
    let s = server();
    let t = new_thread(&s.router).await;
    agent_to_interrupt(&s.router, &t).await;
    let r = post(
        &s.router,
        &format!("/threads/{t}/state"),
        json!({"values": null, "as_node": "__end__"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let th = get(&s.router, &format!("/threads/{t}")).await.json;
    assert_eq!(th["status"], json!("idle"));
    assert_eq!(th["interrupts"], json!({}));
    let state = get(&s.router, &format!("/threads/{t}/state")).await.json;
    assert_eq!(state["next"], json!([]));
    // Nothing is pending: a resume now is refused, and nothing ran.
    let r = post(
        &s.router,
        &format!("/threads/{t}/runs/wait"),
        json!({"assistant_id": "agent", "command": {"resume": approve()}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let messages = state["values"]["messages"].as_array().unwrap();
    assert!(messages.iter().all(|m| m["type"] != json!("tool")));
}
