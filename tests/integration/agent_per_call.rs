//! Per-call review mode (Part C 38-43) and the retry middleware.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use hitl_runtime::agent::{
    Backoff, ChatModel, HumanInTheLoop, ModelError, ModelRequest, ModelRetry, ToolRetry,
    create_agent,
};
use hitl_runtime::message::{AssistantMessage, ToolStatus};
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    Command, InMemorySaver, InterruptPolicy, Message, PolicyMap, ResumeError, RunConfig, RunError,
    ToolContext, ToolError, tool, tools,
};
use serde_json::{Value, json};

use crate::agent::{Ran, call, delete_file, read_file, send_email, turn};

fn per_call_agent(model: ScriptedModel) -> hitl_runtime::agent::Agent {
    let policies = PolicyMap::new().set::<delete_file>(Some(
        InterruptPolicy::allowing([
            hitl_runtime::DecisionType::Approve,
            hitl_runtime::DecisionType::Reject,
        ])
        .when(|args| Some(args.get("path")? != "tmp.txt")),
    ));
    create_agent(model)
        .tools(tools![send_email, delete_file, read_file])
        .middleware(HumanInTheLoop::new(policies).per_call())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

#[tokio::test]
async fn per_call_interrupts_publish_a_decision_schema_for_the_allowed_types() {
    let agent = per_call_agent(ScriptedModel::turns([
        turn(vec![call(
            "send_email",
            json!({"to": "alice", "body": "b"}),
            "call_email",
        )]),
        Message::assistant("ok"),
    ]));
    let cfg = RunConfig::thread("pc-schema").context(Ran::default());
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let pending = &out.interrupts[0];
    assert_eq!(pending.node, "tools");
    assert_eq!(pending.value["type"], "tool_approval");
    assert_eq!(pending.value["tool_call_id"], "call_email");
    assert_eq!(pending.value["name"], "send_email");
    assert_eq!(pending.value["args"], json!({"to": "alice", "body": "b"}));
    insta::assert_json_snapshot!(
        "per_call_resume_schema",
        pending.resume_schema.as_deref().unwrap()
    );
}

#[tokio::test]
async fn per_call_decisions_route_to_their_own_calls() {
    for (decision, ran, content, status) in [
        (
            json!({"type": "approve"}),
            vec!["send_email to=alice"],
            "sent to alice: b",
            ToolStatus::Success,
        ),
        (
            json!({"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "bob", "body": "b"}}}),
            vec!["send_email to=bob"],
            "sent to bob: b",
            ToolStatus::Success,
        ),
        (
            json!({"type": "reject", "message": "not now"}),
            vec![],
            "User rejected the tool call for `send_email` with reason: not now",
            ToolStatus::Error,
        ),
    ] {
        let agent = per_call_agent(ScriptedModel::turns([
            turn(vec![call(
                "send_email",
                json!({"to": "alice", "body": "b"}),
                "c1",
            )]),
            Message::assistant("ok"),
        ]));
        let log = Ran::default();
        let cfg = RunConfig::thread("pc").context(log.clone());
        let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
        let id = out.interrupts[0].id;
        let out = agent
            .invoke(Command::resume_by_id([(id, decision.clone())]), &cfg)
            .await
            .unwrap();
        assert!(out.is_done(), "{decision}");
        assert_eq!(log.list(), ran, "{decision}");
        let tool = out.values.messages[2].as_tool().unwrap();
        assert!(
            tool.content.text().ends_with(content),
            "{decision}: {}",
            tool.content.text()
        );
        assert_eq!(tool.status, status);
    }
}

#[tokio::test]
async fn per_call_partial_answers_leave_the_rest_pending_and_nothing_runs_twice() {
    let agent = per_call_agent(ScriptedModel::turns([
        turn(vec![
            call("send_email", json!({"to": "alice", "body": "b"}), "e"),
            call("delete_file", json!({"path": "x.txt"}), "d"),
            call("delete_file", json!({"path": "tmp.txt"}), "t"),
            call("read_file", json!({"path": "r"}), "r"),
        ]),
        Message::assistant("ok"),
    ]));
    let log = Ran::default();
    let cfg = RunConfig::thread("pc-partial").context(log.clone());
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    assert_eq!(out.interrupts.len(), 2);
    let (email, delete) = (out.interrupts[0].id, out.interrupts[1].id);
    assert_ne!(email, delete);
    let mut early = log.list();
    early.sort();
    assert_eq!(
        early,
        ["delete_file tmp.txt", "read_file r"],
        "ungated calls ran at once"
    );

    let err = agent
        .invoke(Command::resume(json!({"type": "approve"})), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Resume(ResumeError::Ambiguous { .. })),
        "{err}"
    );
    let err = agent
        .invoke(
            Command::resume_by_id([(delete, json!({"type": "respond", "message": "no"}))]),
            &cfg,
        )
        .await
        .unwrap_err();
    let RunError::Resume(ResumeError::InvalidValue { problems, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        problems,
        &[
            "the decision for `delete_file`: `respond` is not allowed for this tool; allowed: `approve`, `reject`"
        ]
    );
    let err = agent
        .invoke(
            Command::resume_by_id([(email, json!({"type": "edit"}))]),
            &cfg,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("an edit needs `edited_action`"),
        "{err}"
    );

    let out = agent
        .invoke(
            Command::resume_by_id([(
                email,
                json!({"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "bob", "body": "b"}}}),
            )]),
            &cfg,
        )
        .await
        .unwrap();
    assert_eq!(out.interrupts.len(), 1);
    assert_eq!(
        out.interrupts[0].id, delete,
        "the other interrupt keeps its id"
    );
    let out = agent
        .invoke(
            Command::resume_by_id([(delete, json!({"type": "approve"}))]),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done());
    let mut all = log.list();
    all.sort();
    assert_eq!(
        all,
        [
            "delete_file tmp.txt",
            "delete_file x.txt",
            "read_file r",
            "send_email to=bob"
        ]
    );
}

#[tokio::test]
async fn edited_args_with_an_undeclared_field_are_rejected() {
    let agent = per_call_agent(ScriptedModel::turns([
        turn(vec![call(
            "send_email",
            json!({"to": "alice", "body": "b"}),
            "e",
        )]),
        Message::assistant("ok"),
    ]));
    let cfg = RunConfig::thread("pc-extra").context(Ran::default());
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let err = agent
        .invoke(
            Command::resume_by_id([(
                out.interrupts[0].id,
                json!({"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "bob", "body": "b", "subject": "s"}}}),
            )]),
            &cfg,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("do not match the tool's schema"),
        "{err}"
    );
}

static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Fails on its first run, then works.
#[tool(interrupt(allowed = [approve, reject]))]
async fn flaky_upload(cx: ToolContext, file: String) -> Result<String, ToolError> {
    let _ = &cx;
    if FLAKY_RUNS.fetch_add(1, SeqCst) == 0 {
        return Err(ToolError::msg("network hiccup"));
    }
    Ok(format!("uploaded {file}"))
}

#[tokio::test(start_paused = true)]
async fn tool_retry_after_review_retries_without_asking_again() {
    let agent = create_agent(ScriptedModel::turns([
        turn(vec![call("flaky_upload", json!({"file": "a"}), "u")]),
        Message::assistant("ok"),
    ]))
    .tools(tools![flaky_upload])
    .middleware(HumanInTheLoop::from_tools().per_call())
    .middleware(
        ToolRetry::new(2)
            .backoff(Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(10)).unwrap()),
    )
    .checkpointer(InMemorySaver::new())
    .build()
    .unwrap();
    let cfg = RunConfig::thread("retry-tool");
    let out = agent.invoke(Message::user("upload"), &cfg).await.unwrap();
    assert_eq!(out.interrupts.len(), 1);
    let out = agent
        .invoke(
            Command::resume_by_id([(out.interrupts[0].id, json!({"type": "approve"}))]),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done(), "one review, no second interrupt");
    assert_eq!(FLAKY_RUNS.load(SeqCst), 2);
    assert_eq!(out.values.messages[2].text(), "uploaded a");
}

/// A model that fails with the given errors, then answers.
struct Flaky {
    failures: std::sync::Mutex<Vec<ModelError>>,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl ChatModel for Flaky {
    async fn invoke(&self, _: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        self.calls.fetch_add(1, SeqCst);
        match self.failures.lock().unwrap().pop() {
            Some(e) => Err(e),
            None => Ok(AssistantMessage {
                content: "fine".into(),
                ..Default::default()
            }),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn model_retry_retries_retryable_errors_only() {
    let calls = Arc::new(AtomicUsize::new(0));
    let model = Flaky {
        failures: std::sync::Mutex::new(vec![
            ModelError::Http {
                status: 503,
                body: "busy".into(),
            },
            ModelError::Timeout(Duration::from_secs(30)),
        ]),
        calls: calls.clone(),
    };
    let agent = create_agent(model)
        .middleware(ModelRetry::new(2))
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let out = agent
        .invoke(Message::user("hi"), &RunConfig::thread("mr"))
        .await
        .unwrap();
    assert_eq!(out.values.messages[1].text(), "fine");
    assert_eq!(calls.load(SeqCst), 3);

    let calls = Arc::new(AtomicUsize::new(0));
    let model = Flaky {
        failures: std::sync::Mutex::new(vec![ModelError::Http {
            status: 401,
            body: "bad key".into(),
        }]),
        calls: calls.clone(),
    };
    let agent = create_agent(model)
        .middleware(ModelRetry::new(5))
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let err = agent
        .invoke(Message::user("hi"), &RunConfig::thread("mr2"))
        .await
        .unwrap_err();
    assert_eq!(calls.load(SeqCst), 1, "401 is not retried");
    assert_eq!(
        err.to_string(),
        "node `model` failed: the model provider answered 401: bad key"
    );
    // The failure is stored; once the provider works, only the model runs again.
    let out = agent.invoke(None, &RunConfig::thread("mr2")).await.unwrap();
    assert_eq!(out.values.messages[1].text(), "fine");
}

#[tokio::test]
async fn tool_calls_without_ids_get_ids_and_route_per_call() {
    let agent = per_call_agent(ScriptedModel::turns([
        Message::assistant_with_tools(
            "",
            vec![
                hitl_runtime::ToolCall::new("send_email", json!({"to": "a", "body": "1"}), "e1"),
                hitl_runtime::ToolCall::new("send_email", json!({"to": "b", "body": "2"}), ""),
            ],
        ),
        Message::assistant("ok"),
    ]));
    let cfg = RunConfig::thread("ids").context(Ran::default());
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    assert_eq!(out.interrupts.len(), 2);
    let ai = out.values.messages[1].as_assistant().unwrap();
    let second_id = ai.tool_calls[1].id.clone().unwrap();
    assert!(second_id.starts_with("call_"), "{second_id}");
    let answers: Vec<(hitl_runtime::InterruptId, Value)> = vec![
        (out.interrupts[0].id, json!({"type": "approve"})),
        (out.interrupts[1].id, json!({"type": "reject"})),
    ];
    let out = agent
        .invoke(Command::resume_by_id(answers), &cfg)
        .await
        .unwrap();
    let rejected = out.values.messages[2..4]
        .iter()
        .filter_map(Message::as_tool)
        .find(|t| t.status == ToolStatus::Error)
        .unwrap();
    assert_eq!(rejected.tool_call_id, second_id);
}
